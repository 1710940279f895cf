// Text generation with a KV cache: the prompt is prefilled in one forward, then each new token
// costs one single-row forward over the cached keys and values. Greedy by default; with a
// temperature, tokens are drawn from the softmax restricted by top-k and top-p, from a seeded
// generator, so a (prompt, seed) pair always gives the same text.

/// How the next token is chosen from the logits.
public struct Sampling: Sendable, Equatable {
    /// 0: greedy (argmax, lowest id on ties). Otherwise logits are divided by it before softmax.
    public var temperature: Float = 0
    /// Keep only the k most likely tokens; 0 keeps all.
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    public var topP: Float = 1
    public var seed: UInt64 = 0

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = Sampling()

    func validate() throws {
        guard temperature.isFinite, temperature >= 0 else { throw PRGEError.invalid("temperature \(temperature) must be finite and ≥ 0") }
        guard topK >= 0 else { throw PRGEError.invalid("top-k \(topK) must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw PRGEError.invalid("top-p \(topP) must be in (0, 1]") }
    }
}

/// Generates continuations of prompts with one Context, optionally through a LoRA adapter.
public final class Generator {
    public let context: Context
    public let lora: LoRAPlan?
    /// Tokens that end generation: EOS, plus the end-of-turn texts llama.cpp also treats as
    /// end of generation when the vocabulary has them.
    public let stopTokens: Set<Int32>

    public init(context: Context, adapter: LoRAAdapter? = nil) {
        self.context = context
        lora = adapter.map { LoRAPlan(adapter: $0) }
        let tok = context.model.tokenizer
        var stop = Set(["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>"].compactMap { tok.id(of: $0) })
        if let e = tok.eos { stop.insert(e) }
        stopTokens = stop
    }

    /// Generates up to `maxTokens` tokens after `prompt` (ids, BOS included if wanted) and returns
    /// them, without the stop token if one ended generation. `onToken(id, bytes)` is called for
    /// each new token as soon as it is chosen; bytes may hold part of a UTF-8 character, so
    /// concatenate them before decoding. It returns false to stop early.
    @discardableResult
    public func generate(prompt: [Int32], maxTokens: Int, sampling: Sampling = .greedy,
                         onToken: (Int32, [UInt8]) -> Bool = { _, _ in true }) throws -> [Int32] {
        try sampling.validate()
        guard !prompt.isEmpty else { throw PRGEError.invalid("the prompt has no tokens") }
        guard maxTokens >= 0 else { throw PRGEError.invalid("token count \(maxTokens) must be ≥ 0") }
        let limit = context.maxLength
        guard prompt.count <= limit else {
            throw PRGEError.invalid("the prompt has \(prompt.count) tokens, more than the context of \(limit)")
        }
        if maxTokens == 0 { return [] }
        // The last generated token is never fed back, so the cache needs prompt + n - 1 rows.
        let n = min(maxTokens, limit - prompt.count + 1)
        let cache = try KVCache(model: context.model, capacity: prompt.count + n - 1)
        var rng = SplitMix64(seed: sampling.seed)
        var out: [Int32] = []
        var logits = try nextLogits(prompt, cache)   // prefill: the whole prompt in one forward
        while true {
            let t = choose(logits, sampling, &rng)
            if stopTokens.contains(t) { break }
            out.append(t)
            if !onToken(t, bytes(t)) || out.count == n { break }
            logits = try nextLogits([t], cache)
        }
        return out
    }

    /// Tokenizes `prompt` as the model's metadata says (BOS if it adds one), then generates.
    @discardableResult
    public func generate(prompt: String, maxTokens: Int, sampling: Sampling = .greedy,
                         onToken: (Int32, [UInt8]) -> Bool = { _, _ in true }) throws -> [Int32] {
        try generate(prompt: context.model.tokenizer.encode(prompt), maxTokens: maxTokens, sampling: sampling, onToken: onToken)
    }

    // Feeds `tokens` after what the cache holds; logits [n_vocab] at the last of them.
    private func nextLogits(_ tokens: [Int32], _ cache: KVCache) throws -> [Float] {
        let h = try context.hidden(Batch(lastTokenOf: [tokens]), lora: lora, cache: cache)
        return context.outputLogits(h, rows: 1)
    }

    // What a token adds to the text: its bytes; control tokens (chat markers) add nothing.
    private func bytes(_ t: Int32) -> [UInt8] {
        let tok = context.model.tokenizer
        return tok.vocab.types[Int(t)] == .control ? [] : tok.piece(t) ?? []
    }

    // Argmax when greedy; otherwise temperature, then top-k, then top-p, then one draw.
    private func choose(_ logits: [Float], _ s: Sampling, _ rng: inout SplitMix64) -> Int32 {
        if s.temperature == 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        // Candidates by descending logit; ties broken by id so the draw is reproducible.
        var ids = Array(0..<logits.count)
        let k = s.topK == 0 ? ids.count : min(s.topK, ids.count)
        ids.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        ids.removeSubrange(k...)
        let mx = logits[ids[0]]
        var p = ids.map { Double(expf((logits[$0] - mx) / s.temperature)) }
        let total = p.reduce(0, +)
        var keep = 0, mass = 0.0
        while keep < p.count {            // top-p: the shortest prefix reaching topP
            p[keep] /= total
            mass += p[keep]
            keep += 1
            if mass >= Double(s.topP) { break }
        }
        let u = rng.nextDouble() * mass
        var acc = 0.0
        for i in 0..<keep {
            acc += p[i]
            if u < acc { return Int32(ids[i]) }
        }
        return Int32(ids[keep - 1])       // u landed on rounding slack at the top end
    }
}

/// SplitMix64 (Steele et al.): a tiny seeded generator; sampling needs only a reproducible stream.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }
}

#if canImport(Glibc)
import Glibc
#endif
