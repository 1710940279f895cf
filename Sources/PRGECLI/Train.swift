import PRGE
#if canImport(Glibc)
import Glibc
#endif

// prge train: P-RGE fine-tuning with the library's recipe (Sources/PRGE/Train/Recipe.swift),
// a JSON config file on top of it, and flags on top of that.
let trainCommand = Command(
    name: "train",
    summary: "Fine-tune a LoRA-FA adapter by P-RGE; write the best adapter by dev loss.",
    options: [Option("--model", "-m", value: "FILE", help: "GGUF model file"),
              Option("--task", value: "NAME", help: "task: a folder name of shared/data (sst2, mr, ...) or prompt_response"),
              Option("--train", value: "FILE", help: "training examples (JSONL)"),
              Option("--dev", value: "FILE", help: "dev examples (JSONL), evaluated as training goes"),
              Option("--dev-split", value: "N", help: "use the first N rows of --dev as dev and the rest as training data"),
              Option("--out", "-o", value: "FILE", help: "where to write the best adapter (GGUF)"),
              Option("--minutes", value: "N", help: "time budget of this run"),
              Option("--steps", value: "N", help: "total steps (a resumed run does the rest)"),
              Option("--seed", value: "S", help: "seed of perturbations and minibatch order"),
              Option("--config", "-c", value: "FILE", help: "JSON config (keys as in prge.h); flags override it"),
              Option("--checkpoint", value: "FILE", help: "checkpoint written at every evaluation"),
              Option("--resume", help: "continue from --checkpoint if that file exists"),
              Option("--log", value: "FILE", help: "JSONL training log (one line per step and per evaluation)"),
              Option("--step-log", value: "FILE", help: "binary step log, for `prge replay`"),
              Common.threads, Common.json],
    positionals: [],
    details: """
        Defaults are the library's recipe; --config sets any trainer key of prge.h (plus "model",
        "train", "dev", "out", "max_length", "dev_split", "step_log"), and flags replace the
        config's values. At least --minutes or --steps is needed (both: whichever ends first).
        Progress goes to stderr: a bar with ETA on a terminal, else a line per evaluation.
        --json prints a JSON line per evaluation and a final summary object on stdout.
        """,
    run: { a in try TrainCLI.run(a) })

enum TrainCLI {
    static func run(_ a: Arguments) throws -> Int32 {
        let config = try configuration(a)
        guard let modelPath = config.model else { throw UsageError("missing --model (or \"model\" in --config)") }
        guard let out = config.out else { throw UsageError("missing --out (or \"out\" in --config)") }
        guard config.steps != nil || config.minutes != nil else { throw UsageError("give --steps or --minutes (or either in --config)") }
        guard config.train != nil || config.devSplit != nil else { throw UsageError("missing --train (or --dev with --dev-split)") }
        let json = a.flag(Common.json.name)

        let trainer = try Trainer(model: Model(path: modelPath), config: config)
        try trainer.loadConfiguredData()
        if a.flag("--resume") {
            guard let ck = config.checkpoint else { throw UsageError("--resume needs --checkpoint") }
            if access(ck, F_OK) == 0 {
                try trainer.resume(from: ck)
                Common.err("resumed from \(ck) at step \(trainer.steps)\n")
            }
        }
        let maxSteps = config.steps.map { UInt64($0) > trainer.steps ? UInt64($0) - trainer.steps : 0 }
        let bar = !json && isatty(STDERR_FILENO) == 1
        if maxSteps != 0 {
            try trainer.run(maxSteps: maxSteps, maxSeconds: config.minutes.map { $0 * 60 }) { p in
                if json, let e = p.eval {
                    Common.out(JSONValue.object([("step", .number(Double(p.step))), ("elapsed", .number(p.elapsed)),
                                                 ("dev", e.json), ("best", p.best?.json ?? .null)]).serialized + "\n")
                } else if bar {
                    Common.err("\r" + progressLine(p) + "\u{1B}[K")
                } else if p.eval != nil {
                    Common.err(progressLine(p) + "\n")
                }
                return true
            }
            if bar { Common.err("\n") }
        }
        let best = try trainer.bestAdapter()
        try AdapterFile.save(best, to: out, architecture: try trainer.architecture)
        if json {
            Common.out(JSONValue.object([
                ("out", .string(out)), ("steps", .number(Double(trainer.steps))), ("seconds", .number(trainer.seconds)),
                ("best_step", trainer.best.map { .number(Double($0.step)) } ?? .null),
                ("best", trainer.best?.eval.json ?? .null), ("config", config.json),
            ]).serialized + "\n")
        } else {
            let b = trainer.best.map { " (dev \(describe($0.eval)) at step \($0.step))" } ?? ""
            Common.out("wrote \(out): \(trainer.steps) steps in \(clock(trainer.seconds))\(b)\n")
        }
        return 0
    }

    /// The recipe, then --config, then the flags.
    static func configuration(_ a: Arguments) throws -> TrainConfig {
        var members: [(String, JSONValue)] = []
        let source = a.string("--config") ?? "command line"
        if let path = a.string("--config") {
            var bytes = try Common.readFile(path)
            guard case .object(let m) = try JSONValue.parse(bytes: &bytes, source: path) else {
                throw PRGEError.format("\(path): the config must be a JSON object")
            }
            members = m
        }
        func set(_ key: String, _ v: JSONValue?) {
            guard let v else { return }
            members.removeAll { $0.0 == key }
            members.append((key, v))
        }
        let str: (String) -> JSONValue? = { a.string($0).map(JSONValue.string) }
        set("model", str("--model"))
        set("task", str("--task"))
        set("train", str("--train"))
        set("dev", str("--dev"))
        set("out", str("--out"))
        set("checkpoint", str("--checkpoint"))
        set("log", str("--log"))
        set("step_log", str("--step-log"))
        if a.string("--dev-split") != nil { set("dev_split", .number(Double(try a.int("--dev-split", default: 0, in: 1...(1 << 40))))) }
        if a.string("--steps") != nil { set("steps", .number(Double(try a.int("--steps", default: 0, in: 1...(1 << 40))))) }
        if a.string("--minutes") != nil { set("minutes", .number(Double(try a.float("--minutes", default: 0, in: 1e-3...1e6)))) }
        if a.string("--seed") != nil { set("seed", .number(Double(try a.int("--seed", default: 0, in: 0...(1 << 53))))) }
        if a.string(Common.threads.name) != nil { set("threads", .number(Double(try a.int(Common.threads.name, default: 0, in: 0...1024)))) }
        return try TrainConfig.parse(JSONNode(.object(members), source: source))
    }

    /// "[#####-----] 120/500 2:03 ETA 6:10 loss 0.6931 dev acc 71.0% loss 0.58 best 74.0%"
    static func progressLine(_ p: TrainProgress) -> String {
        var s = ""
        let frac = p.totalSteps > 0 ? Double(p.step) / Double(p.totalSteps) : (p.eta >= 0 ? p.elapsed / (p.elapsed + p.eta) : 0)
        let filled = Int((frac * 20).rounded(.down))
        s += "[" + String(repeating: "#", count: min(filled, 20)) + String(repeating: "-", count: max(20 - filled, 0)) + "] "
        s += p.totalSteps > 0 ? "\(p.step)/\(p.totalSteps)" : "step \(p.step)"
        s += " " + clock(p.elapsed) + (p.eta >= 0 ? " ETA " + clock(p.eta) : "")
        s += " loss " + fixed(Double(p.trainLoss), 4)
        if let e = p.eval { s += " dev " + describe(e) }
        if let b = p.best { s += " best " + (b.accuracy.isNaN ? "loss " + fixed(Double(b.loss), 4) : percent(b.accuracy)) }
        return s
    }

    static func describe(_ e: EvalResult) -> String {
        (e.accuracy.isNaN ? "" : "acc \(percent(e.accuracy)) ") + "loss \(fixed(Double(e.loss), 4))"
    }

    static func percent(_ x: Float) -> String { fixed(Double(x) * 100, 1) + "%" }

    static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return "\(x)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let v = (abs(x) * scale).rounded()
        let whole = Int(v / scale), frac = Int(v.truncatingRemainder(dividingBy: scale))
        let f = String(frac)
        return (x < 0 && v > 0 ? "-" : "") + "\(whole)" + (digits > 0 ? "." + String(repeating: "0", count: digits - f.count) + f : "")
    }

    /// Seconds as m:ss or h:mm:ss.
    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        let (h, m, sec) = (t / 3600, t / 60 % 60, t % 60)
        let ss = sec < 10 ? "0\(sec)" : "\(sec)"
        if h > 0 { return "\(h):" + (m < 10 ? "0\(m)" : "\(m)") + ":" + ss }
        return "\(m):" + ss
    }
}
