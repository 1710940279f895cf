// Checkpoints: one GGUF file, written atomically (GGUFWriter.write: temp file, fsync, rename,
// fsync of the directory), holding everything a trainer needs to continue bit for bit:
//
//   general.type = "prge.checkpoint", general.architecture = the model's
//   prge.checkpoint.version u32 (1), .step u64, .seconds f64 (training time so far)
//   prge.checkpoint.config string      the whole config (JSON), for people and tools
//   prge.checkpoint.trajectory string  the config members that decide B's path (TrainConfig)
//   prge.checkpoint.train_examples u64, .train_crc32 u32   which training set it was
//   prge.rng_version u32
//   prge.checkpoint.best_step u64, .best_loss f32, .best_accuracy f32, .best_n u64 (if a best)
//   blk.<L>.<proj>.weight.lora_a / .lora_b / .lora_b_best   f32, the adapter's layout
//
// Nothing else is needed: minibatches and perturbations are pure functions of (seed, step)
// (see Trainer.swift). Resuming checks that the trainer has the same trajectory members, the
// same training set and the same adapter A, and refuses otherwise: those would silently give
// a different adapter. The step log and JSONL log are synced before the checkpoint is written,
// so the checkpoint is never ahead of them.

extension Trainer {
    static let checkpointType = "prge.checkpoint"
    static let checkpointVersion = 1

    /// Writes a checkpoint of the trainer's state to `path` (atomically).
    public func saveCheckpoint(to path: String) throws {
        try syncLogs()
        var w = GGUFWriter()
        w.add("general.architecture", .string(try architecture))
        w.add("general.type", .string(Self.checkpointType))
        w.add("prge.checkpoint.version", .uint32(UInt32(Self.checkpointVersion)))
        w.add("prge.checkpoint.step", .uint64(steps))
        w.add("prge.checkpoint.seconds", .float64(seconds))
        w.add("prge.checkpoint.config", .string(config.json.serialized))
        w.add("prge.checkpoint.trajectory", .string(config.trajectoryJSON.serialized))
        w.add("prge.checkpoint.train_examples", .uint64(UInt64(trainSet.count)))
        w.add("prge.checkpoint.train_crc32", .uint32(trainFingerprint))
        w.add("prge.rng_version", .uint32(rngVersion))
        if let b = best {
            w.add("prge.checkpoint.best_step", .uint64(b.step))
            w.add("prge.checkpoint.best_loss", .float32(b.eval.loss))
            w.add("prge.checkpoint.best_accuracy", .float32(b.eval.accuracy))
            w.add("prge.checkpoint.best_n", .uint64(UInt64(b.eval.n)))
        }
        for s in adapter.slots {
            let base = AdapterFile.tensorName(s.layer, s.proj)
            try w.addTensor(name: base + ".lora_a", dims: [s.dIn, s.rank], floats: s.a)
            try w.addTensor(name: base + ".lora_b", dims: [s.rank, s.dOut], floats: s.b)
            if let b = best { try w.addTensor(name: base + ".lora_b_best", dims: [s.rank, s.dOut], floats: b.b[s.index]) }
        }
        try w.write(to: path)
    }

    /// Restores the state saved by `saveCheckpoint`: B, the best B, the step count and the
    /// training time. The trainer must have the same trajectory config, training set and
    /// adapter A as the one that wrote it; otherwise nothing changes and the error says what
    /// differs. The logs continue from the checkpoint's step.
    public func resume(from path: String) throws {
        let f = try GGUFFile(path: path)
        func bad(_ m: String) -> PRGEError { PRGEError.format("\(path): \(m)") }
        func refuse(_ m: String) -> PRGEError { PRGEError(.state, "\(path): cannot resume: \(m)") }
        guard f["general.type"]?.string == Self.checkpointType else { throw bad("not a prge checkpoint (general.type is not \"\(Self.checkpointType)\")") }
        guard let version = f["prge.checkpoint.version"]?.int, version == Self.checkpointVersion else {
            throw PRGEError.unsupported("\(path): checkpoint version \(f["prge.checkpoint.version"].map { "\($0)" } ?? "missing"); this build reads \(Self.checkpointVersion)")
        }
        guard case .uint64(let step)? = f["prge.checkpoint.step"], let secs = f["prge.checkpoint.seconds"]?.double,
              let trajectory = f["prge.checkpoint.trajectory"]?.string,
              case .uint64(let nTrain)? = f["prge.checkpoint.train_examples"], case .uint32(let crc)? = f["prge.checkpoint.train_crc32"],
              case .uint32(let rng)? = f["prge.rng_version"] else {
            throw bad("missing or mistyped prge.checkpoint.* metadata")
        }
        guard rng == rngVersion else { throw refuse("it was made with RNG version \(rng); this build has \(rngVersion)") }
        if let diff = try Self.difference(JSONValue.parse(trajectory, source: "\(path): prge.checkpoint.trajectory"), config.trajectoryJSON) {
            throw refuse("the config differs: \(diff)")
        }
        guard nTrain == UInt64(trainSet.count), crc == trainFingerprint else {
            throw refuse("the training set differs (checkpoint: \(nTrain) examples, CRC-32 \(crc); trainer: \(trainSet.count), \(trainFingerprint)); add the same examples in the same order before resuming")
        }
        var bestB: [[Float]]?
        var best: BestAdapter?
        if case .uint64(let bs)? = f["prge.checkpoint.best_step"] {
            guard let loss = f["prge.checkpoint.best_loss"]?.double, let acc = f["prge.checkpoint.best_accuracy"]?.double,
                  case .uint64(let n)? = f["prge.checkpoint.best_n"] else { throw bad("incomplete prge.checkpoint.best_* metadata") }
            best = BestAdapter(step: bs, eval: EvalResult(accuracy: Float(acc), loss: Float(loss), n: Int(n)), b: [])
            bestB = []
        }
        guard f.tensors.count == adapter.slots.count * (best == nil ? 2 : 3) else {
            throw refuse("it holds \(f.tensors.count) tensors; this trainer's adapter has \(adapter.slots.count) slots")
        }
        var bs: [[Float]] = []
        for s in adapter.slots {
            let base = AdapterFile.tensorName(s.layer, s.proj)
            let a = try Self.floats(f, base + ".lora_a", dims: [s.dIn, s.rank], bad)
            guard a.elementsEqual(s.a, by: { $0.bitPattern == $1.bitPattern }) else {
                throw refuse("\(base): A differs from this trainer's adapter (made from another adapter seed or file)")
            }
            bs.append(try Self.floats(f, base + ".lora_b", dims: [s.rank, s.dOut], bad))
            if bestB != nil { bestB!.append(try Self.floats(f, base + ".lora_b_best", dims: [s.rank, s.dOut], bad)) }
        }
        // Everything checked: commit.
        for (s, b) in zip(adapter.slots, bs) { s.b = b }
        if let b = bestB { best!.b = b }
        self.best = best
        steps = step
        seconds = secs
        closeLogs()
        resumed = true
    }

    /// CRC-32 of the training samples (tokens and targets, in order): tells a resumed trainer
    /// that it samples minibatches from the same set.
    var trainFingerprint: UInt32 {
        var bytes: [UInt8] = []
        for s in trainSet {
            bytes.le(UInt32(s.tokens.count))
            for t in s.tokens { bytes.le(t) }
            switch s.target {
            case .label(let y): bytes.le(UInt32(0)); bytes.le(Int64(y))
            case .response(let start): bytes.le(UInt32(1)); bytes.le(Int64(start))
            }
        }
        return crc32(bytes)
    }

    /// The first member that differs between two trajectory objects, described.
    static func difference(_ saved: JSONValue, _ current: JSONValue) -> String? {
        guard case .object(let a) = saved, case .object(let b) = current else { return "malformed trajectory" }
        for key in (a.map(\.0) + b.map(\.0)) where saved[key] != current[key] {
            return "\(key) is \(saved[key]?.serialized ?? "absent") in the checkpoint, \(current[key]?.serialized ?? "absent") here"
        }
        return nil
    }

    /// An f32 tensor of the expected shape, bit for bit.
    static func floats(_ f: GGUFFile, _ name: String, dims: [Int], _ bad: (String) -> PRGEError) throws -> [Float] {
        guard let t = f.tensor(name) else { throw bad("tensor '\(name)' is missing") }
        guard t.type == .f32, t.dims == dims else { throw bad("tensor '\(name)' is \(t.type.name) \(t.dims), expected f32 \(dims)") }
        let raw = f.data(t)
        return (0..<t.elementCount).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
}
