import PRGE
import PRGEKernels
#if canImport(Glibc)
import Glibc
#endif

// What `prge bench` reports about the machine it ran on, and peak memory measured in child
// processes: peak RSS is process-wide and never goes down, so one process that runs both an
// inference and a training workload cannot tell their peaks apart.

enum BenchMachine {
    /// "model name (family F model M)" of the first CPU in /proc/cpuinfo: a VM may show only
    /// "AMD EPYC", and family 25 model 17 is what says Zen 4.
    static func cpuModel() -> String {
        guard let text = try? procText("/proc/cpuinfo") else { return "unknown" }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmedSpaces
            if fields[key] == nil { fields[key] = line[line.index(after: colon)...].trimmedSpaces }
        }
        return "\(fields["model name"] ?? "unknown") (family \(fields["cpu family"] ?? "?") model \(fields["model"] ?? "?"))"
    }

    /// The 1-minute load average: on the shared build machine it says how much the timings are
    /// disturbed by other work (2.0 on 2 cores = another job on every core).
    static func loadAverage() -> Double {
        guard let text = try? procText("/proc/loadavg"), let first = text.split(separator: " ").first else { return .nan }
        return Double(first) ?? .nan
    }

    /// Kernel path of the matmul ("avx512-bf16", "avx512" or "generic").
    static var matmulPath: String { String(cString: prge_matmul_path()) }

    /// Measured fp32 FMA, bf16 dot and int8 dot peaks on `threads` threads, GFLOP/s (GOP/s for
    /// int8; 0 where the CPU lacks the instruction).
    static func peaks(threads: Int) -> (fp32: Double, bf16: Double, int8: Double) {
        (prge_bench_fma_peak_gflops(Int32(threads)), prge_bench_bf16_peak_gflops(Int32(threads)),
         prge_bench_int8_peak_gops(Int32(threads)))
    }

    /// Runs this executable with `args` and returns the child's peak RSS in MiB (ru_maxrss of
    /// wait4, which on Linux is at least the caller's own peak when it spawned the child: call
    /// this before growing). The child inherits stdout/stderr, so its errors are seen.
    static func childPeakRSS(_ args: [String]) throws -> Double {
        let exe = "/proc/self/exe"
        var argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, nil, nil, &argv, environ)
        guard rc == 0 else { throw PRGEError.io("cannot start a child prge: \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw PRGEError.io("wait4: \(String(cString: strerror(errno)))") }
        }
        // WIFEXITED && WEXITSTATUS == 0, spelled out: the Glibc macros do not import into Swift.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw PRGEError(.internal, "child `prge \(args.joined(separator: " "))` failed (wait status \(status))")
        }
        return Double(usage.ru_maxrss) / 1024
    }

    private static func procText(_ path: String) throws -> String {
        String(decoding: try Common.readFile(path), as: UTF8.self)
    }
}

/// Seconds on a monotonic clock, and the median of a sample.
enum BenchClock {
    static func time(_ body: () throws -> Void) rethrows -> Double {
        let t0 = Common.now()
        try body()
        return Common.now() - t0
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}

extension StringProtocol {
    fileprivate var trimmedSpaces: String {
        guard let a = firstIndex(where: { $0 != " " && $0 != "\t" }),
              let b = lastIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        return String(self[a...b])
    }
}
