#if canImport(Glibc)
import Glibc
#endif

// A trainer's configuration, read from the JSON object documented in Include/prge.h (trainer
// section), plus members only the command line uses. Every key is optional; a missing one takes
// the default from Recipe.swift (then the recipe's per-task override, then the user's value).
// Unknown keys and wrong types are errors naming the JSON path, e.g. `config.json: $.lr: ...`.
//
//   task          "sst2" (a folder of ../shared/data) | {"template", "labels", "text_fields",
//                 "label_field", "label_values", "name"} | "prompt_response"  (default: Recipe.task)
//   estimator     "prge" | "rge" | "mezo"           q, batch, eps, lr      numbers
//   schedule      "constant" | "linear" | "cosine": lr · (lr_min + (1 − lr_min) · factor(t)),
//                 t = step / steps (linear 1 − t, cosine ½(1 + cos πt)); without "steps", t is the
//                 fraction of the run's step or time budget used, which a resumed run cannot
//                 reproduce; with "lr_horizon": H, t is at least step / H (the decay is over
//                 by step H however long the run: a fast machine's 20 minutes must not hold a
//                 high lr for more steps than the recipe was measured with)
//   lr_min        the schedule's floor, a fraction of lr in [0, 1]   lr_horizon  steps, or null
//   loss          "full" | "candidates"             (classification; causal LM is always full)
//   steps         total steps of the training (what `prge train` runs, counting resumed ones)
//   minutes       time budget of one run          eval_every, eval_limit (null: whole dev set)
//   seed          perturbations and minibatch order   threads (0: all cores)
//   numeric_mode  "fp32" | "bf16" | "int8"          adapter {rank, alpha, targets, layers, seed, a_scale}
//   checkpoint    path: written at every evaluation and at the end of a run
//   log           path of the JSONL training log    step_log  path of the binary step log
//   guide         {"lr_ratio", "eps"} | null: after P-RGE's 2q copies, one ± pair along the
//                 direct-path guide (ZO/Guide.swift), stepped lr_ratio × the step's lr; prge
//                 estimator, classification, candidates loss. A guided run has no step log (its
//                 directions come from activations, which a log cannot replay).
// Command line members (the C ABI ignores them): model, train, dev, out (the best adapter),
//   max_length (prompt tokens), dev_split: N = the first N rows of "dev" are the dev set and the
//   rest of that file is the training set (for tasks with only a dev file, e.g. boolq).

public enum Schedule: String, Sendable, CaseIterable {
    case constant, linear, cosine

    /// The lr multiplier at fraction t ∈ [0, 1] of the planned training.
    public func factor(_ t: Double) -> Double {
        let t = min(max(t, 0), 1)
        switch self {
        case .constant: return 1
        case .linear: return 1 - t
        case .cosine: return 0.5 * (1 + cos(Double.pi * t))
        }
    }
}

public struct TrainConfig: Sendable {
    public var task: Task
    /// The "task" member as given (a name or an object), kept to write the config back out.
    public var taskSpec: JSONValue
    public var estimator = Recipe.estimator
    public var q = Recipe.q
    public var batch = Recipe.batch
    public var eps = Recipe.eps
    public var lr = Recipe.lr
    public var schedule = Recipe.schedule
    public var lrMin = Recipe.lrMin
    public var lrHorizon: Int? = Recipe.lrHorizon
    public var loss = Recipe.loss
    public var steps: Int?
    public var minutes: Double?
    public var evalEvery = Recipe.evalEvery
    public var evalLimit = Recipe.evalLimit
    public var seed = Recipe.seed
    public var numericMode = Recipe.numericMode
    public var threads = 0
    public var adapter = Recipe.adapter
    public var checkpoint: String?
    public var log: String?
    public var stepLog: String?
    public var guide: GuideOptions? = Recipe.guide
    /// Whether a config named "guide" itself. The recipe's guide steps aside (`settled`) where
    /// it cannot apply; a guide the user asked for is an error there instead.
    var guideGiven = false
    public var model: String?
    public var train: String?
    public var dev: String?
    public var out: String?
    public var maxLength = Recipe.maxLength
    public var devSplit: Int?

    public static let keys = ["task", "estimator", "q", "batch", "eps", "lr", "schedule", "lr_min", "lr_horizon", "loss", "steps", "minutes",
                              "eval_every", "eval_limit", "seed", "numeric_mode", "threads", "adapter", "checkpoint",
                              "log", "step_log", "guide", "model", "train", "dev", "out", "max_length", "dev_split"]

    /// The recipe's defaults for the task `node` names or defines (its per-task override applied).
    public init(task node: JSONNode = JSONNode(.string(Recipe.task), path: "$.task")) throws {
        taskSpec = node.value
        do { task = try Task.from(json: node) } catch let e as PRGEError where e.code != .format { throw node.error(e.message) }
        if let extra = Recipe.taskOverrides[task.name] {
            try apply(JSONNode(.object(extra), source: "Recipe.taskOverrides[\"\(task.name)\"]"))
        }
    }

    /// A config from JSON text (`source` names it in errors).
    public static func parse(_ text: String, source: String = "config") throws -> TrainConfig {
        try parse(JSONNode(try JSONValue.parse(text, source: source), source: source))
    }

    public static func parse(_ node: JSONNode) throws -> TrainConfig {
        try node.checkKeys(keys)
        var c = try node.field("task").map { try TrainConfig(task: $0) } ?? TrainConfig()
        try c.apply(node)
        return c.settled
    }

    /// The recipe's guide only where it applies: the prge estimator on a classification task
    /// with the candidates loss, and no step log (which cannot replay a guided run).
    var settled: TrainConfig {
        var c = self
        let applies = estimator == .prge && task.kind == .classification && loss == .candidates && stepLog == nil
        if !guideGiven && !applies { c.guide = nil }
        return c
    }

    /// Sets the members present in `node` (an object of config keys; "task" is read by init).
    mutating func apply(_ node: JSONNode) throws {
        try node.checkKeys(Self.keys)
        func choice<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) throws -> T? where T.RawValue == String {
            guard let v = try node.field(key) else { return nil }
            let s = try v.string()
            guard let x = T(rawValue: s) else {
                throw v.error("unknown value '\(s)' (known: \(T.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return x
        }
        func positive(_ key: String) throws -> Float? {
            guard let v = try node.field(key) else { return nil }
            let x = try v.float()
            guard x > 0 else { throw v.error("must be > 0, got \(x)") }
            return x
        }
        func path(_ key: String) throws -> String? {
            guard let v = try node.field(key) else { return nil }
            let s = try v.string()
            guard !s.isEmpty else { throw v.error("empty path") }
            return s
        }
        if let v = try choice("estimator", Estimator.self) { estimator = v }
        let qNode = try node.field("q")
        if let v = qNode { q = try v.int(in: 1...256) }
        if estimator == .mezo {
            if let v = qNode, q != 1 { throw v.error("MeZO uses one direction: q must be 1, got \(q)") }
            q = 1
        }
        if let v = try node.field("batch") { batch = try v.int(in: 1...4096) }
        if let v = try positive("eps") { eps = v }
        if let v = try node.field("lr") {
            lr = try v.float()
            guard lr >= 0 else { throw v.error("must be >= 0, got \(lr)") }
        }
        if let v = try choice("schedule", Schedule.self) { schedule = v }
        if let v = try node.field("lr_min") {
            lrMin = try v.float()
            guard (0...1).contains(lrMin) else { throw v.error("must be in [0, 1], got \(lrMin)") }
        }
        if try node.isNull("lr_horizon") { lrHorizon = nil }
        else if let v = try node.field("lr_horizon") { lrHorizon = try v.int(in: 1...(1 << 40)) }
        if let v = try choice("loss", LossKind.self) { loss = v }
        if let v = try node.field("steps") { steps = try v.int(in: 1...(1 << 40)) }
        if let v = try node.field("minutes") {
            let m = try v.double()
            guard m > 0 else { throw v.error("must be > 0, got \(m)") }
            minutes = m
        }
        if let v = try node.field("eval_every") { evalEvery = try v.int(in: 0...(1 << 40)) }
        if try node.isNull("eval_limit") { evalLimit = nil }
        else if let v = try node.field("eval_limit") { evalLimit = try v.int(in: 1...(1 << 40)) }
        if let v = try node.field("seed") { seed = try v.uint64() }
        if let v = try choice("numeric_mode", NumericMode.self) { numericMode = v }
        if let v = try node.field("threads") { threads = try v.int(in: 0...1024) }
        if let v = try node.field("adapter") { try adapter.apply(options: v) }
        if let v = try path("checkpoint") { checkpoint = v }
        if let v = try path("log") { log = v }
        if let v = try path("step_log") { stepLog = v }
        if try node.isNull("guide") { guide = nil; guideGiven = true }
        else if let v = try node.field("guide") {
            guideGiven = true
            try v.checkKeys(["lr_ratio", "eps"])
            var g = guide ?? GuideOptions(lrRatio: 50, eps: eps)
            if let r = try v.field("lr_ratio") {
                g.lrRatio = try r.float()
                guard g.lrRatio >= 0, g.lrRatio.isFinite else { throw r.error("must be >= 0, got \(g.lrRatio)") }
            }
            if let e = try v.field("eps") {
                g.eps = try e.float()
                guard g.eps > 0, g.eps.isFinite else { throw e.error("must be > 0, got \(g.eps)") }
            }
            guide = g
        }
        if let v = try path("model") { model = v }
        if let v = try path("train") { train = v }
        if let v = try path("dev") { dev = v }
        if let v = try path("out") { out = v }
        if let v = try node.field("max_length") { maxLength = try v.int(in: 2...(1 << 20)) }
        if let v = try node.field("dev_split") { devSplit = try v.int(in: 1...(1 << 40)) }
    }

    /// The whole config as JSON (every key; null where unset), parseable by `parse`.
    public var json: JSONValue {
        func opt<T>(_ x: T?, _ f: (T) -> JSONValue) -> JSONValue { x.map(f) ?? .null }
        let s: (String?) -> JSONValue = { opt($0) { .string($0) } }
        return .object([
            ("task", taskSpec), ("estimator", .string(estimator.rawValue)), ("q", .number(Double(q))),
            ("batch", .number(Double(batch))), ("eps", .float(eps)), ("lr", .float(lr)),
            ("schedule", .string(schedule.rawValue)), ("lr_min", .float(lrMin)),
            ("lr_horizon", opt(lrHorizon) { .number(Double($0)) }), ("loss", .string(loss.rawValue)),
            ("steps", opt(steps) { .number(Double($0)) }), ("minutes", opt(minutes) { .number($0) }),
            ("eval_every", .number(Double(evalEvery))), ("eval_limit", opt(evalLimit) { .number(Double($0)) }),
            ("seed", .number(Double(seed))), ("numeric_mode", .string(numericMode.rawValue)),
            ("threads", .number(Double(threads))), ("adapter", adapter.json),
            ("checkpoint", s(checkpoint)), ("log", s(log)), ("step_log", s(stepLog)),
            ("guide", opt(guide) { .object([("lr_ratio", .float($0.lrRatio)), ("eps", .float($0.eps))]) }), ("model", s(model)),
            ("train", s(train)), ("dev", s(dev)), ("out", s(out)), ("max_length", .number(Double(maxLength))),
            ("dev_split", opt(devSplit) { .number(Double($0)) }),
        ])
    }

    /// The members that decide the trajectory of B: two configs that agree on these (and train
    /// on the same data from the same adapter) produce the same adapters bit for bit, whatever
    /// the thread count, budgets, evaluation or file paths. ("adapter" is not among them: the
    /// adapter itself is compared, as a trainer may have been given one.)
    var trajectoryJSON: JSONValue {
        var keys = ["task", "estimator", "q", "batch", "eps", "lr", "schedule", "loss", "seed", "numeric_mode", "max_length", "guide"]
        if schedule != .constant { keys += ["steps", "lr_min", "lr_horizon"] }
        guard case .object(let all) = json else { return json }
        return .object(all.filter { keys.contains($0.0) })
    }
}

extension LoRAConfig {
    /// Sets the adapter options present in `node`: {"rank", "alpha", "targets", "layers",
    /// "seed", "a_scale"} as prge.h documents them for prge_adapter_create; null keeps the
    /// current value, except "layers": null, which means all layers. "a_scale" replaces the
    /// whole map ({} = every A at its plain init).
    public mutating func apply(options node: JSONNode) throws {
        try node.checkKeys(["rank", "alpha", "targets", "layers", "seed", "a_scale"])
        if try node.isNull("layers") { layers = nil }
        if let v = try node.field("rank") { rank = try v.int(in: 1...LoRAConfig.maxRank) }
        if let v = try node.field("alpha") {
            let a = try v.float()
            guard a > 0 else { throw v.error("alpha must be > 0, got \(a)") }
            alpha = a
        }
        if let v = try node.field("targets") {
            let items = try v.array()
            guard !items.isEmpty else { throw v.error("empty target list") }
            var seen = Set<Projection>()
            targets = try items.map { item in
                let name = try item.string()
                guard let p = Projection(name: name) else {
                    throw item.error("unknown target '\(name)' (known: \(Projection.allCases.map(\.shortName).joined(separator: ", ")))")
                }
                guard seen.insert(p).inserted else { throw item.error("target '\(name)' repeats") }
                return p
            }
        }
        if let v = try node.field("layers") {
            let items = try v.array()
            guard !items.isEmpty else { throw v.error("empty layer list (leave it out or null for all layers)") }
            var seen = Set<Int>()
            layers = try items.map { item in
                let l = try item.int(in: -4096...4095)   // negative: from the top (-1 = the last layer)
                guard seen.insert(l).inserted else { throw item.error("layer \(l) repeats") }
                return l
            }
        }
        if let v = try node.field("seed") { seed = try v.uint64() }
        if let v = try node.field("a_scale") {
            var scales: [Projection: Float] = [:]
            for (name, item) in try v.object() {
                guard let p = Projection(name: name) else { throw item.error("unknown target '\(name)'") }
                let s = try item.float()
                guard s > 0 else { throw item.error("a_scale must be > 0, got \(s)") }
                guard scales.updateValue(s, forKey: p) == nil else { throw item.error("target '\(name)' repeats") }
            }
            aScale = scales
        }
    }

    /// The options as JSON, in the form `apply(options:)` reads.
    public var json: JSONValue {
        .object([("rank", .number(Double(rank))), ("alpha", .float(alpha)),
                 ("targets", .array(targets.map { .string($0.shortName) })),
                 ("layers", layers.map { .array($0.map { .number(Double($0)) }) } ?? .null),
                 ("seed", .number(Double(seed))),
                 ("a_scale", .object(Projection.allCases.compactMap { p in aScale[p].map { (p.shortName, .float($0)) } }))])
    }
}
