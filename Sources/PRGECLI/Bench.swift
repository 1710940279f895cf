import PRGE

// prge bench: issue 4's benchmarks on one model — the standard P-RGE step in the default mode,
// in fp32 and as sequential RGE, the batched forward, GFLOP/s against this CPU's measured peaks
// and peak RSS of inference vs training, all in one invocation so every ratio compares
// numbers taken under the same machine load. See benchmarks/README.md and BENCHMARKS.md.

enum Bench {
    /// The mode `step_seconds` is measured in: bf16, the intended training default (issue 4's
    /// first target needs it). TrainConfig still defaults to fp32; once the recipe has a
    /// numeric-mode member, read it here instead.
    static let defaultMode = Recipe.numericMode   // the library's default numeric mode

    static let mode = Option("--mode", value: "fp32|bf16|int8", help: "mode of step_seconds and the forward (default \(defaultMode.rawValue))")
    static let steps = Option("--steps", value: "N", help: "timed steps and forwards, median reported (default 5)")
    static let warmup = Option("--warmup", value: "N", help: "untimed runs before (default 1)")
    static let data = Option("--data", value: "FILE", help: "SST-2 train JSONL (default ../shared/data/sst2/train.jsonl)")
    static let tokens = Option("--tokens-out", value: "FILE", help: "write the benchmark's token ids as JSON (for the comparison scripts)")
    static let only = Option("--only", value: "WHAT", help: "load|inference|training: run just that and exit (peak-RSS children)")
}

let benchCommand = Command(
    name: "bench",
    summary: "Time the P-RGE step and the batched forward; GFLOP/s vs measured peaks; peak RSS.",
    options: [Common.model, Common.json, Common.threads, Bench.mode, Bench.steps, Bench.warmup, Bench.data, Bench.tokens, Bench.only],
    positionals: [],
    details: """
        The standard step: q = 4, b = 4, LoRA-FA r = 16, alpha = 32 on all seven projections of all
        layers, on the first 4 SST-2 train rows whose prompt has 24 to 32 tokens. Step variants run
        interleaved (one step of each per round); medians of --steps after --warmup. Peak RSS is
        measured in child processes (`--only`), one per workload.
        """,
    run: { a in try Bench.run(BenchSettings(a)) })

extension Bench {
    static func run(_ s: BenchSettings) throws -> Int32 {
        if let what = s.only { try BenchOnly.run(what, s); return 0 }
        var r = BenchResult(settings: s)
        r.loadBefore = BenchMachine.loadAverage()
        // Children first: on Linux a spawned child's ru_maxrss starts from the spawning process's
        // peak at exec time, so the parent must not have mapped the model yet.
        for what in BenchOnly.workloads { r.rss[what] = try BenchMachine.childPeakRSS(s.childArgs(only: what)) }
        r.peaks = BenchMachine.peaks(threads: s.threads)
        var loaded: Model?
        r.loadSeconds = try BenchClock.time { loaded = try Model(path: s.model) }
        let ctx = try Context(model: loaded!, threads: s.threads, mode: s.mode)
        let work = try BenchWorkload(model: ctx.model, dataPath: s.data)
        if let path = s.tokensOut { try BenchResult.writeTokens(work, to: path) }
        r.work = work
        r.config = ctx.model.config

        let top = Array(ctx.model.config.nLayer / 2 ..< ctx.model.config.nLayer)
        r.variants = [StepVariant(key: "step_seconds", mode: s.mode, estimator: .prge, layers: nil),
                      StepVariant(key: "step_seconds_fp32", mode: .fp32, estimator: .prge, layers: nil),
                      StepVariant(key: "step_seconds_rge", mode: s.mode, estimator: .rge, layers: nil),
                      StepVariant(key: "step_seconds_top_half", mode: s.mode, estimator: .prge, layers: top)]
        r.stepTimes = try BenchRuns.steps(ctx, work, r.variants, steps: s.steps, warmup: s.warmup)
        for m in s.modes {
            r.forward[m] = try BenchRuns.forward(ctx, work.forward, mode: m, reps: s.steps, warmup: s.warmup)
            r.long[m] = try BenchRuns.forward(ctx, [work.long], mode: m, reps: s.steps, warmup: s.warmup)
        }
        // A peak measured while another job holds a core reads low; the better of two counts.
        let after = BenchMachine.peaks(threads: s.threads)
        r.peaks = (max(r.peaks.fp32, after.fp32), max(r.peaks.bf16, after.bf16), max(r.peaks.int8, after.int8))
        r.loadAfter = BenchMachine.loadAverage()
        Common.out(s.json ? r.json.serialized + "\n" : r.table)
        return 0
    }
}

/// The parsed command line.
struct BenchSettings {
    let model: String, data: String
    let threads: Int, steps: Int, warmup: Int
    let mode: NumericMode
    let json: Bool
    let tokensOut: String?, only: String?

    init(_ a: Arguments) throws {
        model = a.required(Common.model.name)
        data = a.string(Bench.data.name) ?? "../shared/data/sst2/train.jsonl"
        threads = try a.int(Common.threads.name, default: ThreadPool.defaultThreads, in: 1...512)
        steps = try a.int(Bench.steps.name, default: 5, in: 1...1000)
        warmup = try a.int(Bench.warmup.name, default: 1, in: 0...1000)
        mode = try a.choice(Bench.mode.name, default: Bench.defaultMode)
        json = a.flag(Common.json.name)
        tokensOut = a.string(Bench.tokens.name)
        only = a.string(Bench.only.name)
        if let w = only, !BenchOnly.workloads.contains(w) {
            throw UsageError("--only must be one of \(BenchOnly.workloads.joined(separator: ", ")), got '\(w)'")
        }
    }

    /// The default mode first, then fp32 (the reference) when it differs.
    var modes: [NumericMode] { mode == .fp32 ? [.fp32] : [mode, .fp32] }

    /// A child's command line: same model, data, threads and mode; one warm-up and one timed run
    /// reach the steady-state peak (buffers are grown once, then reused).
    func childArgs(only what: String) -> [String] {
        ["bench", "--model", model, "--data", data, "--threads", String(threads), "--mode", mode.rawValue,
         "--steps", "1", "--warmup", "1", "--only", what]
    }
}

/// `--only WHAT`: one workload, nothing printed; the parent reads the peak RSS from wait4.
enum BenchOnly {
    static let workloads = ["load", "inference", "training"]

    static func run(_ what: String, _ s: BenchSettings) throws {
        let ctx = try Context(model: Model(path: s.model), threads: s.threads, mode: s.mode)
        let work = try BenchWorkload(model: ctx.model, dataPath: s.data)
        switch what {
        case "inference":
            _ = try BenchRuns.forward(ctx, BenchRuns.inferenceBatch(work), mode: s.mode, reps: s.steps, warmup: s.warmup)
        case "training":
            let v = StepVariant(key: "step_seconds", mode: s.mode, estimator: .prge, layers: nil)
            _ = try BenchRuns.steps(ctx, work, [v], steps: s.steps, warmup: s.warmup)
        default:
            break
        }
    }
}
