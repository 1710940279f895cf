import PRGE

// The token sets `prge bench` runs, all from SST-2 train rows in file order so that every tool
// compared against (PyTorch, llama.cpp) can be fed exactly the same tokens:
//   step     the first 4 examples whose prompt "<sentence> It was" has 24...32 tokens
//            (issue 4's standard step; the anchors' PRGE_STANDARD_BATCH picks the same rows)
//   forward  the first 32 such examples: a training-shaped inference batch
//   long     one 512-token sequence: the prompts of consecutive rows joined, cut at 512
struct BenchWorkload {
    static let promptTokens = 24...32
    static let stepExamples = 4
    static let forwardExamples = 32
    static let longTokens = 512

    let objective: Objective
    let step: [Sample]
    let forward: [[Int32]]
    let long: [Int32]

    init(model: Model, dataPath: String) throws {
        objective = try Objective(task: Task.named("sst2"), loss: Recipe.loss, tokenizer: model.tokenizer)
        var fit: [Sample] = [], joined: [Int32] = []
        // Rows are parsed only until enough are found: the whole 67k-row file as JSON would
        // dominate the peak RSS that the child processes measure.
        var lineNo = 0
        for line in try Common.readFile(dataPath).split(separator: 0x0A) {
            if fit.count == Self.forwardExamples && joined.count >= Self.longTokens { break }
            lineNo += 1
            var bytes = Array(line)
            let row = JSONNode(try JSONValue.parse(bytes: &bytes, source: "\(dataPath):\(lineNo)"), source: "\(dataPath):\(lineNo)")
            for e in try objective.task.examples(from: row) {
                let s = try objective.sample(e, maxLength: Recipe.maxLength)
                if Self.promptTokens.contains(s.tokens.count) && fit.count < Self.forwardExamples { fit.append(s) }
                if joined.count < Self.longTokens { joined += s.tokens }
            }
        }
        guard fit.count == Self.forwardExamples, joined.count >= Self.longTokens else {
            throw PRGEError.invalid("\(dataPath): fewer than \(Self.forwardExamples) prompts of \(Self.promptTokens) tokens")
        }
        step = Array(fit.prefix(Self.stepExamples))
        forward = fit.map(\.tokens)
        long = Array(joined.prefix(Self.longTokens))
    }
}

/// Floating-point operations of one forward, counted as 2·rows·N·K per matrix product (a
/// multiply-add is two), causal attention as the (query, key) pairs it scores and mixes, and
/// nothing for norms, RoPE, SwiGLU and softmax (elementwise, < 1% here). Layers below the first
/// adapted one run once for all copies (the engine shares them), so they count once.
struct FlopCount {
    var linear = 0.0, lora = 0.0, attention = 0.0, output = 0.0
    var total: Double { linear + lora + attention + output }

    /// `lens`: tokens of each sequence of one copy; `outputs` rows of `width` logits per copy.
    init(_ c: LlamaConfig, lens: [Int], copies: Int, adapter: LoRAConfig?, outputs: Int, width: Int) {
        let d = Double(c.nEmbd), qd = Double(c.qDim), kvd = Double(c.kvDim), ff = Double(c.nFF)
        let tokens = Double(lens.reduce(0, +))
        let pairs = Double(lens.reduce(0) { $0 + $1 * ($1 + 1) / 2 })
        let shapes: [Projection: (Double, Double)] = [.q: (d, qd), .k: (d, kvd), .v: (d, kvd), .o: (qd, d),
                                                      .gate: (d, ff), .up: (d, ff), .down: (ff, d)]
        let perTokenLinear = shapes.values.reduce(0) { $0 + 2 * $1.0 * $1.1 }
        let adaptedLayers = adapter.map { Set($0.layers ?? Array(0..<c.nLayer)) } ?? []
        let firstAdapted = adaptedLayers.min() ?? c.nLayer
        for l in 0..<c.nLayer {
            let n = l >= firstAdapted ? Double(copies) : 1
            linear += n * tokens * perTokenLinear
            attention += n * Double(c.nHead) * pairs * 4 * Double(c.headDim)
            if let a = adapter, adaptedLayers.contains(l) {
                for p in a.targets { lora += n * tokens * 2 * Double(a.rank) * (shapes[p]!.0 + shapes[p]!.1) }
            }
        }
        output = Double(copies * outputs) * Double(width) * d * 2
    }
}
