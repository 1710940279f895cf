// Hyper-parameters of a Llama-family model, read from GGUF metadata (`<arch>.*` keys).
// The architecture is a small description; the forward reads nothing else from the file.
public struct LlamaConfig: Sendable, Equatable {
    public var arch: String
    public var nLayer: Int
    public var nEmbd: Int          // d_model
    public var nFF: Int            // SwiGLU hidden size
    public var nHead: Int
    public var nHeadKV: Int        // < nHead: grouped-query attention
    public var headDim: Int
    public var ropeDim: Int        // leading dims of each head that RoPE rotates
    public var ropeBase: Float
    public var ropePositionScale: Float   // 1 / rope.scaling.factor for linear scaling, else 1
    public var rmsEps: Float
    public var nVocab: Int
    public var nCtxTrain: Int

    public var qDim: Int { nHead * headDim }
    public var kvDim: Int { nHeadKV * headDim }

    /// Architectures whose blocks are Llama blocks (RMSNorm, RoPE, GQA, SwiGLU).
    public static let supported = ["llama"]
    /// RoPE scalings the forward computes as llama.cpp does (YaRN and the others would give a
    /// different model, so they are refused). Llama 3.1+'s per-frequency factors are the
    /// `rope_freqs.weight` tensor (Model).
    public static let ropeScalings = ["none", "linear"]

    public init(gguf f: GGUFFile) throws {
        arch = try f.string("general.architecture")
        guard Self.supported.contains(arch) else {
            throw PRGEError.unsupported("\(f.path): architecture '\(arch)' is not supported (supported: \(Self.supported.joined(separator: ", ")))")
        }
        let p = arch + "."
        nLayer = try f.int(p + "block_count")
        nEmbd = try f.int(p + "embedding_length")
        nFF = try f.int(p + "feed_forward_length")
        nHead = try f.int(p + "attention.head_count")
        nHeadKV = f[p + "attention.head_count_kv"] == nil ? nHead : try f.int(p + "attention.head_count_kv")
        nCtxTrain = try f.int(p + "context_length")
        rmsEps = Float(try f.double(p + "attention.layer_norm_rms_epsilon"))
        ropeBase = f[p + "rope.freq_base"] == nil ? 10000 : Float(try f.double(p + "rope.freq_base"))
        let scaling = f[p + "rope.scaling.type"] == nil ? "none" : try f.string(p + "rope.scaling.type")
        guard Self.ropeScalings.contains(scaling) else {
            throw PRGEError.unsupported("\(f.path): RoPE scaling '\(scaling)' is not supported (supported: \(Self.ropeScalings.joined(separator: ", ")))")
        }
        // llama.cpp: rope.scaling.factor, or the older rope.scale_linear; 0 or absent means 1.
        let factorKey = f[p + "rope.scaling.factor"] != nil ? p + "rope.scaling.factor" : p + "rope.scale_linear"
        let factor = f[factorKey] == nil ? 0 : Float(try f.double(factorKey))
        ropePositionScale = scaling == "linear" && factor != 0 ? 1 / factor : 1
        guard nHead > 0, nEmbd > 0, nEmbd % nHead == 0 else {
            throw PRGEError.format("\(f.path): embedding_length \(nEmbd) is not a multiple of head_count \(nHead)")
        }
        headDim = f[p + "attention.key_length"] == nil ? nEmbd / nHead : try f.int(p + "attention.key_length")
        ropeDim = f[p + "rope.dimension_count"] == nil ? headDim : try f.int(p + "rope.dimension_count")
        if let v = f[p + "vocab_size"]?.int { nVocab = v } else { nVocab = f["tokenizer.ggml.tokens"]?.array?.count ?? 0 }
        try validate(f.path)
    }

    private func validate(_ path: String) throws {
        func check(_ ok: Bool, _ what: String) throws {
            if !ok { throw PRGEError.format("\(path): bad hyper-parameter: \(what)") }
        }
        try check((1...4096).contains(nLayer), "block_count \(nLayer)")
        try check((1...65536).contains(nEmbd), "embedding_length \(nEmbd)")
        try check((1...262144).contains(nFF), "feed_forward_length \(nFF)")
        try check((1...1024).contains(nHead), "head_count \(nHead)")
        try check(nHeadKV >= 1 && nHead % nHeadKV == 0, "head_count_kv \(nHeadKV) must divide head_count \(nHead)")
        try check((2...1024).contains(headDim) && headDim % 2 == 0, "head dimension \(headDim)")
        try check(ropeDim >= 0 && ropeDim <= headDim && ropeDim % 2 == 0, "rope.dimension_count \(ropeDim)")
        try check((1...4_000_000).contains(nVocab), "vocab size \(nVocab)")
        try check(nCtxTrain >= 1, "context_length \(nCtxTrain)")
        try check(rmsEps > 0 && rmsEps < 1, "rms epsilon \(rmsEps)")
        try check(ropeBase > 0 && ropeBase.isFinite, "rope.freq_base \(ropeBase)")
        try check(ropePositionScale > 0 && ropePositionScale.isFinite, "rope scaling factor \(1 / ropePositionScale)")
    }
}
