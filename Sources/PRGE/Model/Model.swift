/// A loaded Llama-family model: the memory-mapped GGUF file, its hyper-parameters, tokenizer
/// and weight views. Immutable after load, so any number of contexts may share it.
public final class Model: @unchecked Sendable {
    public let path: String
    public let gguf: GGUFFile
    public let config: LlamaConfig
    public let tokenizer: Tokenizer
    public let layers: [LayerWeights]
    public let tokenEmbedding: QMatrix    // [n_vocab, d]
    public let outputNorm: [Float]        // [d]
    public let output: QMatrix            // [n_vocab, d]; the embedding itself when tied
    let rope: Rope

    public init(path: String) throws {
        let f = try GGUFFile(path: path)
        let c = try LlamaConfig(gguf: f)
        self.path = path
        gguf = f
        config = c
        tokenizer = try Tokenizer(gguf: f)
        guard tokenizer.count == c.nVocab else {
            throw PRGEError.format("\(path): tokenizer has \(tokenizer.count) tokens but the model \(c.nVocab)")
        }
        layers = try (0..<c.nLayer).map { try LayerWeights(f, c, layer: $0) }
        tokenEmbedding = try QMatrix(f, "token_embd.weight", rows: c.nVocab, cols: c.nEmbd)
        outputNorm = try loadVector(f, "output_norm.weight", count: c.nEmbd)
        output = f.tensor("output.weight") == nil ? tokenEmbedding
            : try QMatrix(f, "output.weight", rows: c.nVocab, cols: c.nEmbd)
        var freqFactors: [Float]? = nil
        if f.tensor("rope_freqs.weight") != nil {   // Llama 3.1+: one divisor per frequency
            let ff = try loadVector(f, "rope_freqs.weight", count: c.ropeDim / 2)
            guard ff.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw PRGEError.format("\(path): rope_freqs.weight must be positive and finite")
            }
            freqFactors = ff
        }
        rope = Rope(ropeDim: c.ropeDim, base: c.ropeBase, positionScale: c.ropePositionScale, freqFactors: freqFactors)
    }

    /// Input and output width of projection `p` (LoRA shapes).
    public func shape(_ p: Projection) -> (dIn: Int, dOut: Int) {
        let m = layers[0].matrix(p)
        return (m.cols, m.rows)
    }
}
