import Testing
import PRGEKernels

/// prge_pool: every task runs exactly once per run, the caller participates, back-to-back runs
/// (the forward pass does ~300 per pass) and idle gaps (workers asleep) both work.
@Suite struct PoolTests {
    /// ctx points at an array of Int64 counters, one per task; each task bumps its own.
    static let bump: prge_task_fn = { ctx, task in
        let c = ctx!.assumingMemoryBound(to: Int64.self)
        c[Int(task)] += 1
    }

    static func runCounting(_ pool: OpaquePointer?, tasks: Int, runs: Int) -> [Int64] {
        var counts = [Int64](repeating: 0, count: max(tasks, 1))
        counts.withUnsafeMutableBufferPointer { cp in
            for _ in 0..<runs { prge_pool_run(pool, Self.bump, cp.baseAddress, Int64(tasks)) }
        }
        return counts
    }

    @Test(arguments: [1, 2, 3, 5])
    func everyTaskOncePerRun(_ threads: Int32) throws {
        let pool = try #require(prge_pool_create(threads))
        defer { prge_pool_free(pool) }
        #expect(prge_pool_threads(pool) == threads)
        for tasks in [0, 1, 2, 3, 7, 64, 1000] {
            let c = Self.runCounting(pool, tasks: tasks, runs: 50)
            if tasks > 0 { #expect(c.allSatisfy { $0 == 50 }, "threads \(threads) tasks \(tasks)") }
            else { #expect(c == [0]) }
        }
    }

    @Test func manyBackToBackRunsAndIdleGaps() throws {
        let pool = try #require(prge_pool_create(2))
        defer { prge_pool_free(pool) }
        let c = Self.runCounting(pool, tasks: 4, runs: 20000)
        #expect(c.allSatisfy { $0 == 20000 })
        // Let the workers fall asleep, then run again.
        usleep(50_000)
        let d = Self.runCounting(pool, tasks: 9, runs: 3)
        #expect(d.allSatisfy { $0 == 3 })
    }

    @Test func createAndFreeRepeatedly() throws {
        for i in 0..<50 {
            let pool = try #require(prge_pool_create(Int32(1 + i % 4)))
            if i % 2 == 0 { _ = Self.runCounting(pool, tasks: 5, runs: 2) }
            prge_pool_free(pool)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
