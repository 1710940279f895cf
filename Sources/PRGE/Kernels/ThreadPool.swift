import PRGEKernels

/// The one layer of parallelism: a fixed set of threads (the caller's included) that runs
/// `parallelFor` bodies. Owned by whoever runs forwards; not shared across concurrent calls.
public final class ThreadPool: @unchecked Sendable {
    let raw: OpaquePointer
    public let threads: Int

    public init(threads: Int) throws {
        guard threads >= 1, threads <= 512 else { throw PRGEError.invalid("thread count \(threads) must be in 1...512") }
        guard let p = prge_pool_create(Int32(threads)) else { throw PRGEError(.outOfMemory, "cannot start \(threads) threads") }
        raw = p
        self.threads = threads
    }
    deinit { prge_pool_free(raw) }

    /// Runs body(i) for i in 0..<n across the pool; returns when all are done.
    public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
        if n <= 0 { return }
        if n == 1 || threads == 1 { for i in 0..<n { body(i) }; return }
        withoutActuallyEscaping(body) { b in
            var fn = b
            withUnsafeMutablePointer(to: &fn) { ctx in
                prge_pool_run(raw, { ctx, i in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
                }, ctx, Int64(n))
            }
        }
    }

    /// Machine cores available to this process (the default thread count).
    public static var defaultThreads: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

#if canImport(Glibc)
import Glibc
#endif
