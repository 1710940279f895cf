// The trainer: a model, an adapter and a config turned into P-RGE training with evaluation,
// best-adapter keeping, logs and checkpoints (Checkpoint.swift).
//
// Determinism: the adapter after step s depends only on (initial adapter, config trajectory
// members, training set, s). Step s's minibatch comes from the Sampler (a pure function of
// seed, s and the training set), its perturbations from the counter RNG keyed by (seed, s), and
// its learning rate from the schedule at s. So a checkpoint needs no RNG or sampler state, and
// a run stopped at step k and resumed reaches the same adapter bit for bit.
//
// Every step is written to the step log BEFORE B is updated, so the log is never behind the
// adapter: a failed write leaves the trainer as it was.

public enum DataSplit: Int32, Sendable {
    case train = 0, dev = 1
}

/// What the progress callback sees after each step of `run`.
public struct TrainProgress: Sendable {
    /// Steps done so far (all runs of this trainer, resumed ones included).
    public var step: UInt64
    /// The planned total, 0 when the run is bounded by time only.
    public var totalSteps: UInt64
    /// Seconds since this run started, and the estimate of seconds left (< 0: unknown).
    public var elapsed: Double
    public var eta: Double
    /// Mean of the step's 2q losses.
    public var trainLoss: Float
    /// The dev evaluation that ran after this step, if one did.
    public var eval: EvalResult?
    /// The best evaluation so far, if any.
    public var best: EvalResult?
}

public struct RunResult: Sendable {
    public var steps: UInt64
    public var seconds: Double
    /// True when the progress callback asked to stop.
    public var cancelled: Bool
}

/// The best adapter seen by dev evaluation: its B matrices (A is shared with the current one).
public struct BestAdapter {
    public var step: UInt64
    public var eval: EvalResult
    var b: [[Float]]
}

public final class Trainer {
    public let model: Model
    public let config: TrainConfig
    public let context: Context
    public let objective: Objective
    public let stepper: ZOStepper
    public let sampler: Sampler
    /// The adapter being trained (the trainer's own copy).
    public var adapter: LoRAAdapter { stepper.adapter }
    /// Steps done: also the index of the next step (its RNG and sampler key).
    public internal(set) var steps: UInt64 = 0
    public private(set) var trainSet: [Sample] = []
    public private(set) var devSet: [Sample] = []
    public internal(set) var best: BestAdapter?
    /// Seconds spent in steps and evaluations, over all runs (carried by checkpoints).
    public internal(set) var seconds: Double = 0

    // Logs open at the first step, so that a resume before it decides how they continue.
    var stepLog: StepLogWriter?
    var log: TrainLog?
    var logsOpen = false
    var resumed = false
    /// The current run's budget: the schedule's horizon when the config has no "steps".
    private var budget: (startStep: UInt64, maxSteps: UInt64?, start: ContinuousClock.Instant, maxSeconds: Double?)?

    /// A trainer for `model` with `config`. `adapter` (copied) must fit the model; nil creates
    /// a fresh one from `config.adapter` (whose options are ignored when an adapter is given).
    public init(model: Model, config: TrainConfig, adapter: LoRAAdapter? = nil) throws {
        guard config.maxLength <= model.config.nCtxTrain else {
            throw PRGEError.invalid("max_length \(config.maxLength) exceeds the model's context of \(model.config.nCtxTrain) tokens")
        }
        self.model = model
        self.config = config
        context = try Context(model: model, threads: config.threads == 0 ? ThreadPool.defaultThreads : config.threads,
                              mode: config.numericMode)
        objective = try Objective(task: config.task, loss: config.loss, tokenizer: model.tokenizer)
        let own: LoRAAdapter
        if let a = adapter {
            try Self.check(a, fits: model)
            own = try a.copied()
        } else {
            own = try LoRAAdapter(config: config.adapter, nLayer: model.config.nLayer, shape: model.shape)
        }
        // An adapter trained before continues its step count: new steps get new perturbations,
        // and its step log lines up with it for replay.
        steps = StepLog.trainedSteps(own) ?? 0
        stepper = try ZOStepper(context: context, adapter: own, objective: objective, estimator: config.estimator,
                                q: config.q, eps: config.eps, seed: config.seed, guide: config.guide)
        sampler = Sampler(seed: config.seed, batch: config.batch)
    }

    static func check(_ a: LoRAAdapter, fits model: Model) throws {
        guard a.nLayer == model.config.nLayer else {
            throw PRGEError.invalid("the adapter is for a model with \(a.nLayer) layers; this model has \(model.config.nLayer)")
        }
        for s in a.slots {
            let (dIn, dOut) = model.shape(s.proj)
            guard s.dIn == dIn, s.dOut == dOut else {
                throw PRGEError.invalid("adapter slot blk.\(s.layer).\(s.proj.ggufName) is \(s.dOut)x\(s.dIn); the model's weight is \(dOut)x\(dIn)")
            }
        }
    }

    // ---- data ------------------------------------------------------------------------------

    /// Tokenizes `examples` and appends them to `split` (all or nothing).
    @discardableResult
    public func add(_ examples: [Example], to split: DataSplit) throws -> Int {
        let s = try examples.enumerated().map { i, e in
            do { return try objective.sample(e, maxLength: config.maxLength) } catch let err as PRGEError {
                throw PRGEError(err.code, "example \(i): \(err.message)")
            }
        }
        append(s, to: split)
        return s.count
    }

    /// Appends the examples of JSONL text (one row per line; `source` names it in errors, as
    /// "source:line"). All or nothing.
    @discardableResult
    public func addJSONL(_ text: String, source: String = "jsonl", to split: DataSplit) throws -> Int {
        let s = try samples(jsonl: text, source: source)
        append(s, to: split)
        return s.count
    }

    /// Appends the examples of a JSONL file. All or nothing.
    @discardableResult
    public func addJSONL(path: String, to split: DataSplit) throws -> Int {
        let s = try samples(rows: try Dataset.readJSONL(path: path))
        append(s, to: split)
        return s.count
    }

    /// Loads the files the config names: "train" and "dev", or with "dev_split": N the first N
    /// rows of "dev" as the dev set and the rest of it as the training set.
    public func loadConfiguredData() throws {
        if let n = config.devSplit {
            guard let dev = config.dev else { throw PRGEError.invalid("$.dev_split needs $.dev, the file to split") }
            guard config.train == nil else { throw PRGEError.invalid("$.dev_split splits the dev file into train and dev: leave $.train out") }
            let rows = try Dataset.readJSONL(path: dev)
            guard n < rows.count else { throw PRGEError.invalid("$.dev_split: \(n) dev rows leave none of the \(rows.count) rows of '\(dev)' to train on") }
            let d = try samples(rows: Array(rows[..<n])), t = try samples(rows: Array(rows[n...]))
            append(d, to: .dev)
            append(t, to: .train)
            return
        }
        if let p = config.train { try addJSONL(path: p, to: .train) }
        if let p = config.dev { try addJSONL(path: p, to: .dev) }
    }

    func samples(rows: [JSONNode]) throws -> [Sample] {
        try Evaluation.samples(rows: rows, objective: objective, maxLength: config.maxLength)
    }

    /// The examples of JSONL text as samples (not added to any set); errors name "source:line".
    public func samples(jsonl text: String, source: String = "jsonl") throws -> [Sample] {
        try samples(rows: try Dataset.parseJSONL(Array(text.utf8), source: source))
    }

    private func append(_ s: [Sample], to split: DataSplit) {
        switch split {
        case .train: trainSet += s
        case .dev: devSet += s
        }
    }

    // ---- steps -----------------------------------------------------------------------------

    /// The learning rate of step `s`: lr · (lr_min + (1 − lr_min) · factor(t)) at t = s / steps,
    /// or, without "steps", the fraction of the current run's budget used (0 outside a run); t is
    /// at least s / lr_horizon.
    public func learningRate(at s: UInt64) -> Float {
        guard config.schedule != .constant else { return config.lr }
        var t = 0.0
        if let total = config.steps {
            t = Double(s) / Double(total)
        } else if let b = budget {
            if let m = b.maxSteps { t = Double(s - b.startStep) / Double(max(m, 1)) }
            if let sec = b.maxSeconds { t = max(t, seconds(since: b.start) / sec) }
        }
        if let h = config.lrHorizon { t = max(t, Double(s) / Double(h)) }
        let floor = Double(config.lrMin)
        return Float(Double(config.lr) * (floor + (1 - floor) * config.schedule.factor(t)))
    }

    /// One P-RGE (or configured estimator) step on `samples`: 2q perturbed copies, the losses,
    /// the update of B. Logged like every step. Returns the losses and the record.
    @discardableResult
    public func step(samples: [Sample]) throws -> StepResult {
        try openLogs()
        let t0 = ContinuousClock.now
        let lr = learningRate(at: steps)
        let result = try stepper.estimate(samples, step: steps, lr: lr)
        let record = result.record
        try stepLog?.append(record)            // logged before B changes
        stepper.apply(result)
        steps += 1
        let dt = seconds(since: t0)
        seconds += dt
        try log?.write(.object([
            ("type", .string("step")), ("step", .number(Double(record.step))), ("loss", .float(result.loss)),
            ("loss_plus", .array(result.lossPlus.map(JSONValue.float))), ("loss_minus", .array(result.lossMinus.map(JSONValue.float))),
            ("g", .array(record.g.map(JSONValue.float))), ("lr", .float(lr)), ("eps", .float(config.eps)),
            ("time", .number(seconds)), ("step_seconds", .number(dt)),
        ] + (result.guide.map { [("guide_g", JSONValue.float($0.g)), ("guide_lr", .float($0.lr))] } ?? [])))
        return result
    }

    /// A step on examples (tokenized here, not added to any set).
    @discardableResult
    public func step(examples: [Example]) throws -> StepResult {
        try step(samples: examples.enumerated().map { i, e in
            do { return try objective.sample(e, maxLength: config.maxLength) } catch let err as PRGEError {
                throw PRGEError(err.code, "example \(i): \(err.message)")
            }
        })
    }

    /// A step on the examples of JSONL text.
    @discardableResult
    public func step(jsonl text: String, source: String = "jsonl") throws -> StepResult {
        try step(samples: try samples(jsonl: text, source: source))
    }

    // ---- runs ------------------------------------------------------------------------------

    /// Trains on the training set for `maxSteps` more steps and/or `maxSeconds` (at least one),
    /// evaluating before a fresh trainer's first step, every eval_every steps and after the
    /// run's last step, keeping the best adapter, and writing a checkpoint after each
    /// evaluation when the config names one. `progress` runs after every step; returning false
    /// stops the run after that step. (An evaluation at a stop that is not an eval_every step
    /// is one an uninterrupted run would not make: it can only change which adapter is best,
    /// never the current adapter.)
    @discardableResult
    public func run(maxSteps: UInt64? = nil, maxSeconds: Double? = nil,
                    progress: ((TrainProgress) -> Bool)? = nil) throws -> RunResult {
        guard maxSteps != nil || maxSeconds != nil else { throw PRGEError.invalid("a run needs a step limit or a time limit") }
        if let s = maxSeconds, !(s > 0 && s.isFinite) { throw PRGEError.invalid("time limit \(s) s must be a positive number") }
        guard !trainSet.isEmpty else { throw PRGEError(.state, "the training set is empty: add examples first") }
        let start = ContinuousClock.now, startStep = steps
        budget = (startStep, maxSteps, start, maxSeconds)
        defer { budget = nil }
        var cancelled = false
        var lastEval: UInt64?, savedAt: UInt64?
        // The untrained adapter competes too: if training never beats it, it is the best.
        if steps == 0, best == nil, config.evalEvery > 0, !devSet.isEmpty {
            try openLogs()
            _ = try evaluateAndKeepBest()
            lastEval = 0
        }
        func exhausted() -> Bool {
            maxSteps.map { steps - startStep >= $0 } ?? false || maxSeconds.map { seconds(since: start) >= $0 } ?? false
        }
        while !exhausted() {
            let batch = sampler.indices(step: steps, n: trainSet.count).map { trainSet[$0] }
            let r = try step(samples: batch)
            // Evaluate every eval_every steps and after the run's last step (so the callback
            // sees the final numbers).
            var eval: EvalResult?
            if !devSet.isEmpty, exhausted() || (config.evalEvery > 0 && steps % UInt64(config.evalEvery) == 0) {
                eval = try evaluateAndKeepBest()
                lastEval = steps
                if let p = config.checkpoint { try saveCheckpoint(to: p); savedAt = steps }
            }
            if let progress {
                let elapsed = seconds(since: start), done = Double(steps - startStep)
                var eta = -1.0
                if let m = maxSteps { eta = elapsed / done * (Double(m) - done) }
                if let s = maxSeconds { eta = eta < 0 ? max(0, s - elapsed) : min(eta, max(0, s - elapsed)) }
                let p = TrainProgress(step: steps, totalSteps: maxSteps.map { startStep + $0 } ?? 0, elapsed: elapsed, eta: eta,
                                      trainLoss: r.loss, eval: eval, best: best?.eval)
                if !progress(p) { cancelled = true; break }
            }
        }
        if steps > startStep, lastEval != steps, !devSet.isEmpty {   // a cancelled run: its final numbers
            _ = try evaluateAndKeepBest()
            savedAt = nil
        }
        if let p = config.checkpoint, savedAt != steps { try saveCheckpoint(to: p) } else { try syncLogs() }
        return RunResult(steps: steps - startStep, seconds: seconds(since: start), cancelled: cancelled)
    }

    // ---- evaluation ------------------------------------------------------------------------

    /// Accuracy and loss of the current adapter on `split` (its first `limit` examples).
    public func evaluate(split: DataSplit, limit: Int? = nil) throws -> EvalResult {
        let set = split == .dev ? devSet : trainSet
        return try Evaluation.run(Self.spread(set, limit: limit), objective: objective, context: context, adapter: adapter)
    }

    /// Up to `limit` examples spread over `set`: the first `limit` positions of a fixed
    /// permutation (Sampler's, seed 0, whatever the run's seed), kept in file order. Dev files are
    /// often sorted by label (MR's first 250 rows are all negative): a prefix could hold a single
    /// class, and the "best adapter" would be whichever predicts that class.
    static func spread(_ set: [Sample], limit: Int?) -> [Sample] {
        guard let k = limit, k < set.count else { return set }
        return Sampler(seed: 0, batch: 1).order(epoch: 0, n: set.count).prefix(k).sorted().map { set[$0] }
    }

    /// Evaluates on up to eval_limit dev examples, logs it, and keeps B if it is the best yet:
    /// the lowest dev loss, for classification too. On the recipe's 200 dev examples accuracy
    /// moves in steps of 0.5 points with a standard error of ~2.4, so the highest reading is
    /// mostly the luckiest one (docs/RECIPE.md, 2026-12-07); the loss is a smoother estimate of
    /// the same thing.
    func evaluateAndKeepBest() throws -> EvalResult {
        let t0 = ContinuousClock.now
        let e = try evaluate(split: .dev, limit: config.evalLimit)
        seconds += seconds(since: t0)
        let better = best.map { e.loss < $0.eval.loss } ?? true
        if better { best = BestAdapter(step: steps, eval: e, b: adapter.slots.map(\.b)) }
        try log?.write(.object([
            ("type", .string("eval")), ("step", .number(Double(steps))), ("split", .string("dev")),
            ("n", .number(Double(e.n))), ("loss", .float(e.loss)), ("accuracy", e.accuracy.isNaN ? .null : .float(e.accuracy)),
            ("best", .bool(better)), ("time", .number(seconds)),
        ]))
        return e
    }

    // ---- adapters --------------------------------------------------------------------------

    /// A copy of the current adapter, with training metadata for its file.
    public func currentAdapter() throws -> LoRAAdapter {
        try exported(b: nil, step: steps, eval: nil)
    }

    /// A copy of the best adapter by dev loss (the current one if no evaluation ran).
    public func bestAdapter() throws -> LoRAAdapter {
        guard let b = best else { return try currentAdapter() }
        return try exported(b: b.b, step: b.step, eval: b.eval)
    }

    private func exported(b: [[Float]]?, step: UInt64, eval: EvalResult?) throws -> LoRAAdapter {
        let a = try adapter.copied()
        if let b { for (s, v) in zip(a.slots, b) { s.b = v } }
        var meta: [(String, GGUFValue)] = [(StepLog.stepKey, .uint64(step)), ("prge.train.config", .string(config.json.serialized))]
        if let e = eval {
            meta.append(("prge.train.dev_loss", .float32(e.loss)))
            if !e.accuracy.isNaN { meta.append(("prge.train.dev_accuracy", .float32(e.accuracy))) }
        }
        a.metadata = a.metadata.filter { !$0.0.hasPrefix("prge.train.") } + meta
        return a
    }

    /// The model's architecture name, for adapter files.
    public var architecture: String {
        get throws { try model.gguf.string("general.architecture") }
    }

    // ---- logs ------------------------------------------------------------------------------

    func openLogs() throws {
        guard !logsOpen else { return }
        if let p = config.stepLog {
            guard config.guide == nil else {
                throw PRGEError.invalid("step_log \(p): a guided run cannot be replayed from a step log (its guide directions come from activations); unset step_log or guide")
            }
            let header = StepLogHeader(adapter: adapter, modelSHA256: try fileSHA256(path: model.path))
            stepLog = try StepLogWriter(path: p, header: header, step: steps)
        }
        if let p = config.log {
            let l = try TrainLog(path: p, append: resumed)
            try l.write(.object([("type", .string("start")), ("step", .number(Double(steps))), ("resumed", .bool(resumed)),
                                 ("config", config.json)]))
            log = l
        }
        logsOpen = true
    }

    /// Makes the logs durable (before a checkpoint, at the end of a run).
    func syncLogs() throws {
        try stepLog?.sync()
        try log?.sync()
    }

    func closeLogs() {
        stepLog = nil
        log = nil
        logsOpen = false
    }

    private func seconds(since t: ContinuousClock.Instant) -> Double {
        let d = (ContinuousClock.now - t).components
        return Double(d.seconds) + Double(d.attoseconds) * 1e-18
    }
}

extension LoRAAdapter {
    /// A deep copy (slots are classes).
    public func copied() throws -> LoRAAdapter {
        let s = slots.map { LoRASlot(layer: $0.layer, proj: $0.proj, dIn: $0.dIn, dOut: $0.dOut, rank: $0.rank, index: $0.index, a: $0.a, b: $0.b) }
        let c = try LoRAAdapter(config: config, nLayer: nLayer, slots: s)
        c.metadata = metadata
        return c
    }
}
