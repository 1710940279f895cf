// prge_trainer: P-RGE fine-tuning of a copy of an adapter (Sources/PRGE/Train/Trainer.swift),
// configured by JSON (TrainConfig). Thin: validate, call the trainer, copy out.
//
// Threads: a trainer owns its own Context (thread pool and scratch), so training does not hold
// the model's lock: prge_forward / classify / generate on the same model run meanwhile, also
// from the progress callback. A trainer runs one call at a time; a call that finds it busy
// (another thread is in prge_trainer_train, or the progress callback calls back into the same
// trainer) fails with PRGE_ERR_STATE rather than waiting or deadlocking. prge_trainer_n_steps
// reads a copy of the step count and never waits.
import PRGE
#if canImport(Glibc)
import Glibc
#endif

final class TrainerHandle {
    let trainer: Trainer
    private let busy: UnsafeMutablePointer<pthread_mutex_t>
    private let countLock: UnsafeMutablePointer<pthread_mutex_t>
    private var stepsCopy: UInt64 = 0

    init(trainer: Trainer) {
        self.trainer = trainer
        busy = .allocate(capacity: 1)
        pthread_mutex_init(busy, nil)
        countLock = .allocate(capacity: 1)
        pthread_mutex_init(countLock, nil)
        stepsCopy = trainer.steps
    }

    deinit {
        pthread_mutex_destroy(busy)
        busy.deallocate()
        pthread_mutex_destroy(countLock)
        countLock.deallocate()
    }

    /// Runs `body` as the trainer's only call, or fails at once if another is running.
    func exclusive<R>(_ name: String, _ body: (Trainer) throws -> R) throws -> R {
        guard pthread_mutex_trylock(busy) == 0 else {
            throw PRGEError(.state, "\(name): the trainer is busy with another call (prge_trainer_train on another thread, or a call from its progress callback)")
        }
        defer {
            publishSteps()
            pthread_mutex_unlock(busy)
        }
        return try body(trainer)
    }

    /// Copies the trainer's step count for prge_trainer_n_steps (only the busy holder calls it).
    func publishSteps() {
        let s = trainer.steps
        pthread_mutex_lock(countLock)
        stepsCopy = s
        pthread_mutex_unlock(countLock)
    }

    var steps: UInt64 {
        pthread_mutex_lock(countLock)
        defer { pthread_mutex_unlock(countLock) }
        return stepsCopy
    }
}

private func trainer(_ h: OpaquePointer?) throws -> TrainerHandle {
    try registry.get(h, .trainer, as: TrainerHandle.self)
}

/// PRGE_SPLIT_* values.
private func split(_ s: Int32) throws -> DataSplit {
    guard let d = DataSplit(rawValue: s) else {
        throw PRGEError.invalid("split \(s) is neither PRGE_SPLIT_TRAIN (0) nor PRGE_SPLIT_DEV (1)")
    }
    return d
}

/// Refuses a forward over the `perForward` longest of `samples`, in `copies` copies, whose
/// scratch would not fit in memory: the worst minibatch any step or evaluation can draw.
private func checkMemory(_ t: Trainer, _ samples: [Sample], perForward: Int, copies: Int) throws {
    let worst = samples.sorted { $0.tokens.count > $1.tokens.count }.prefix(perForward)
    guard let longest = worst.first?.tokens.count else { return }
    var tokens = 0, outputs = 0
    for s in worst {
        tokens += s.tokens.count
        switch s.target {
        case .label: outputs += 1
        case .response(let start): outputs += s.tokens.count - start
        }
    }
    try checkForwardMemory(t.model, sequences: worst.count, tokens: tokens, longest: longest, outputs: outputs,
                           copies: copies, rank: t.adapter.config.rank)
}

/// Copies of the batch in one forward of a step.
private func stepCopies(_ t: Trainer) -> Int { t.config.estimator == .prge ? 2 * t.config.q : 1 }

@_cdecl("prge_trainer_create")
public func prge_trainer_create(_ m: OpaquePointer?, _ a: OpaquePointer?, _ config: UnsafePointer<CChar>?,
                                _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi {
        let out = try required(out, "out")
        out.pointee = nil
        let mh = try model(m)
        let adapter = try optionalAdapter(a, for: mh.model)
        let text = config == nil ? "" : try utf8CString(config, "json_config")
        var c = text.isEmpty ? try TrainConfig() : try TrainConfig.parse(text, source: "json_config")
        if c.threads == 0 { c.threads = mh.threads }      // the model's n_threads, unless the config says
        let t = try Trainer(model: mh.model, config: c, adapter: adapter)
        out.pointee = registry.insert(TrainerHandle(trainer: t), .trainer)
    }
}

@_cdecl("prge_trainer_free")
public func prge_trainer_free(_ h: OpaquePointer?) -> Int32 {
    capi { if h != nil { try registry.remove(h, .trainer) } }
}

@_cdecl("prge_trainer_add_jsonl")
public func prge_trainer_add_jsonl(_ h: OpaquePointer?, _ splitValue: Int32, _ jsonl: UnsafePointer<CChar>?, _ len: Int,
                                   _ nAdded: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let th = try trainer(h)
        let s = try split(splitValue)
        let text = try utf8Text(jsonl, length: len, "jsonl")
        let n = try optional(nAdded, "n_added")
        let added = try th.exclusive("prge_trainer_add_jsonl") { try $0.addJSONL(text, source: "jsonl", to: s) }
        n?.pointee = added
    }
}

/// The examples of JSONL text as samples; parsed before the step so that the step's memory
/// can be checked first.
private func samples(_ t: Trainer, jsonl text: String) throws -> [Sample] {
    let out = try t.samples(jsonl: text)
    guard !out.isEmpty else { throw PRGEError.invalid("jsonl has no examples: a step needs at least one") }
    return out
}

@_cdecl("prge_trainer_step")
public func prge_trainer_step(_ h: OpaquePointer?, _ jsonl: UnsafePointer<CChar>?, _ len: Int,
                              _ losses: UnsafeMutablePointer<Float>?, _ cap: Int, _ nLosses: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let th = try trainer(h)
        let text = try utf8Text(jsonl, length: len, "jsonl")
        let out = try output(losses, count: cap, "losses")
        let n = try optional(nLosses, "n_losses")
        try th.exclusive("prge_trainer_step") { t in
            let count = 2 * t.config.q
            guard out.count == 0 || out.count >= count else {
                n?.pointee = count
                throw PRGEError(.bufferTooSmall, "losses has room for \(out.count) floats; the step gives 2q = \(count) (pass NULL, 0 to skip them)")
            }
            let batch = try samples(t, jsonl: text)
            try checkMemory(t, batch, perForward: batch.count, copies: stepCopies(t))
            let r = try t.step(samples: batch)
            let all = r.lossPlus + r.lossMinus
            if out.count > 0 { _ = UnsafeMutableBufferPointer(rebasing: out[0..<all.count]).initialize(from: all) }
            n?.pointee = out.count > 0 ? all.count : 0
        }
    }
}

// prge_progress as laid out in prge.h (test_capi.c checks the offsets):
//   u64 step @0, u64 total_steps @8, double elapsed_s @16, double eta_s @24, float train_loss @32,
//   i32 evaluated @36, float dev_loss @40, float dev_accuracy @44, float best_dev_accuracy @48; 56 bytes.
private func store(_ p: TrainProgress, into raw: UnsafeMutableRawPointer) {
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: 56)
    raw.storeBytes(of: p.step, toByteOffset: 0, as: UInt64.self)
    raw.storeBytes(of: p.totalSteps, toByteOffset: 8, as: UInt64.self)
    raw.storeBytes(of: p.elapsed, toByteOffset: 16, as: Double.self)
    raw.storeBytes(of: p.eta, toByteOffset: 24, as: Double.self)
    raw.storeBytes(of: p.trainLoss, toByteOffset: 32, as: Float.self)
    raw.storeBytes(of: p.eval == nil ? 0 : 1, toByteOffset: 36, as: Int32.self)
    raw.storeBytes(of: p.eval?.loss ?? .nan, toByteOffset: 40, as: Float.self)
    raw.storeBytes(of: p.eval?.accuracy ?? .nan, toByteOffset: 44, as: Float.self)
    raw.storeBytes(of: p.best?.accuracy ?? .nan, toByteOffset: 48, as: Float.self)
}

/// The most steps one run may ask for (the config's "steps" has the same bound); keeps step
/// arithmetic in the trainer far from overflow.
private let maxRunSteps: UInt64 = 1 << 40

public typealias ProgressFunction = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32

@_cdecl("prge_trainer_train")
public func prge_trainer_train(_ h: OpaquePointer?, _ maxSteps: UInt64, _ maxSeconds: Double,
                               _ callback: ProgressFunction?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    capi {
        let th = try trainer(h)
        guard maxSeconds.isFinite, maxSeconds >= 0 else {
            throw PRGEError.invalid("max_seconds \(maxSeconds) must be a finite number >= 0 (0: no time limit)")
        }
        guard maxSteps > 0 || maxSeconds > 0 else { throw PRGEError.invalid("max_steps and max_seconds are both 0: set a limit") }
        guard maxSteps <= maxRunSteps else {
            throw PRGEError.invalid("max_steps \(maxSteps) is over the limit of \(maxRunSteps) (use 0 for no step limit)")
        }
        let result = try th.exclusive("prge_trainer_train") { t -> RunResult in
            try checkMemory(t, t.trainSet, perForward: t.config.batch, copies: stepCopies(t))
            try checkMemory(t, t.devSet, perForward: Evaluation.sequencesPerForward, copies: 1)
            // The callback runs on this (the calling) thread, after each step.
            var progress: ((TrainProgress) -> Bool)?
            if let fn = callback {
                progress = { p in
                    th.publishSteps()
                    let raw = UnsafeMutableRawPointer.allocate(byteCount: 56, alignment: 8)
                    defer { raw.deallocate() }
                    store(p, into: raw)
                    return fn(UnsafeRawPointer(raw), userData) == 0
                }
            }
            return try t.run(maxSteps: maxSteps > 0 ? maxSteps : nil, maxSeconds: maxSeconds > 0 ? maxSeconds : nil,
                             progress: progress)
        }
        if result.cancelled {
            throw PRGEError(.cancelled, "the progress callback stopped training after \(result.steps) step(s) of this run (step \(th.steps) in all)")
        }
    }
}

@_cdecl("prge_trainer_evaluate")
public func prge_trainer_evaluate(_ h: OpaquePointer?, _ splitValue: Int32, _ accuracy: UnsafeMutablePointer<Float>?,
                                  _ loss: UnsafeMutablePointer<Float>?, _ n: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let th = try trainer(h)
        let s = try split(splitValue)
        let acc = try optional(accuracy, "accuracy"), l = try optional(loss, "loss"), count = try optional(n, "n")
        let r = try th.exclusive("prge_trainer_evaluate") { t in
            try checkMemory(t, s == .dev ? t.devSet : t.trainSet, perForward: Evaluation.sequencesPerForward, copies: 1)
            return try t.evaluate(split: s)
        }
        acc?.pointee = r.accuracy
        l?.pointee = r.loss
        count?.pointee = r.n
    }
}

@_cdecl("prge_trainer_get_adapter")
public func prge_trainer_get_adapter(_ h: OpaquePointer?, _ which: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi {
        let out = try required(out, "out")
        out.pointee = nil
        let th = try trainer(h)
        guard which == 0 || which == 1 else {
            throw PRGEError.invalid("which \(which) is neither PRGE_ADAPTER_CURRENT (0) nor PRGE_ADAPTER_BEST (1)")
        }
        let a = try th.exclusive("prge_trainer_get_adapter") { t in
            which == 0 ? try t.currentAdapter() : try t.bestAdapter()
        }
        out.pointee = registry.insert(AdapterHandle(adapter: a, model: th.trainer.model), .adapter)
    }
}

@_cdecl("prge_trainer_save_checkpoint")
public func prge_trainer_save_checkpoint(_ h: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    capi {
        let th = try trainer(h)
        let path = try utf8CString(path, "path")
        guard !path.isEmpty else { throw PRGEError.invalid("path is empty") }
        try th.exclusive("prge_trainer_save_checkpoint") { try $0.saveCheckpoint(to: path) }
    }
}

@_cdecl("prge_trainer_load_checkpoint")
public func prge_trainer_load_checkpoint(_ h: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    capi {
        let th = try trainer(h)
        let path = try utf8CString(path, "path")
        try th.exclusive("prge_trainer_load_checkpoint") { try $0.resume(from: path) }
    }
}

@_cdecl("prge_trainer_n_steps")
public func prge_trainer_n_steps(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    capi {
        let th = try trainer(h)
        try required(out, "out").pointee = th.steps
    }
}
