// Perplexity with llama.cpp's llama-perplexity convention (tools/perplexity, the default mode
// without --ppl-stride), so the two numbers can be compared on the same text and context:
//
//   - the whole text is tokenized once, as llama_tokenize(add_special: true) does: BOS in front
//     only if the model's metadata adds one, never EOS;
//   - at least 2·n_ctx tokens are required; the text is cut into ⌊tokens / n_ctx⌋ consecutive,
//     non-overlapping chunks of n_ctx tokens, and the tail that does not fill a chunk is dropped;
//   - each chunk is evaluated on its own, from position 0 with an empty cache; when the model
//     adds BOS, the chunk's first token is replaced (not preceded) by BOS;
//   - only the second half of each chunk is scored: with first = n_ctx / 2, the logits at
//     positions first ..< n_ctx − 1 predict tokens first + 1 ..< n_ctx, n_ctx − 1 − first per chunk;
//   - nll of a token is −log softmax(logits)[next], the softmax sum taken in double;
//     ppl = exp(Σ nll / count) over all scored tokens of all chunks.
//
// Several chunks run in one ragged forward (up to 2048 tokens, llama-perplexity's default
// n_batch), with logits only at the scored positions, turned into nll 64 rows at a time so the
// [rows, n_vocab] logits never get large.

public struct PerplexityResult: Sendable, Equatable {
    public var ppl: Double
    /// Mean negative log-likelihood per scored token (nats): log(ppl).
    public var meanNLL: Double
    public var chunks: Int
    public var ctx: Int
    /// Tokens scored: chunks · (ctx − 1 − ctx/2).
    public var scored: Int
}

extension Context {
    /// Tokens per forward when chunks are batched (llama-perplexity's default n_batch).
    static let perplexityBatchTokens = 2048

    /// Perplexity of `text` (tokenized here, BOS as the model's metadata says).
    public func perplexity(text: String, ctx n: Int, lora: LoRAPlan? = nil,
                           progress: ((_ chunksDone: Int, _ ppl: Double) -> Void)? = nil) throws -> PerplexityResult {
        try perplexity(tokens: model.tokenizer.encode(text), ctx: n, lora: lora, progress: progress)
    }

    /// Perplexity of an already tokenized text. `progress` gets the running value after each chunk,
    /// as llama-perplexity prints it ([1]x,[2]y,...).
    public func perplexity(tokens: [Int32], ctx n: Int, lora: LoRAPlan? = nil,
                           progress: ((_ chunksDone: Int, _ ppl: Double) -> Void)? = nil) throws -> PerplexityResult {
        guard n >= 4, n <= maxLength else { throw PRGEError.invalid("context size \(n) must be in 4...\(maxLength)") }
        guard tokens.count >= 2 * n else {
            throw PRGEError.invalid("the text has \(tokens.count) tokens; a context of \(n) needs at least \(2 * n)")
        }
        if let plan = lora, plan.copies.count != 1 { throw PRGEError.invalid("perplexity takes a LoRA plan of one copy") }
        let chunks = tokens.count / n, first = n / 2, perChunk = n - 1 - first
        let bos = model.tokenizer.addsBOS ? model.tokenizer.bos : nil
        let perForward = max(1, Self.perplexityBatchTokens / n)

        var nll = 0.0, count = 0
        for c0 in stride(from: 0, to: chunks, by: perForward) {
            let c1 = min(c0 + perForward, chunks)
            var seqs = (c0..<c1).map { Array(tokens[$0 * n ..< ($0 + 1) * n]) }
            if let b = bos { for i in seqs.indices { seqs[i][0] = b } }
            // Position p predicts token p + 1; p + 1 ≥ 1, so a BOS replacement is never a target.
            let outputs = seqs.indices.flatMap { s in (first ..< n - 1).map { (seq: s, pos: $0) } }
            let targets = outputs.map { seqs[$0.seq][$0.pos + 1] }
            let h = try hidden(Batch(sequences: seqs, outputs: outputs), lora: lora, cache: nil)
            let rowNLL = negLogLikelihoods(h, targets: targets)
            for s in seqs.indices {
                nll += rowNLL[s * perChunk ..< (s + 1) * perChunk].reduce(0, +)
                count += perChunk
                progress?(c0 + s + 1, exp(nll / Double(count)))
            }
        }
        let mean = nll / Double(count)
        return PerplexityResult(ppl: exp(mean), meanNLL: mean, chunks: chunks, ctx: n, scored: count)
    }

    // −log softmax(logits(h_i))[targets_i] for each row of h [rows, d], in blocks of rows.
    private func negLogLikelihoods(_ h: [Float], targets: [Int32]) -> [Double] {
        let d = model.config.nEmbd, v = model.config.nVocab, block = 64
        var out = [Double](repeating: 0, count: targets.count)
        for lo in stride(from: 0, to: targets.count, by: block) {
            let hi = min(lo + block, targets.count)
            let logits = outputLogits(Array(h[lo * d ..< hi * d]), rows: hi - lo)   // [hi − lo, v]
            logits.withUnsafeBufferPointer { lp in
                out.withUnsafeMutableBufferPointer { op in
                    pool.parallelFor(hi - lo) { r in
                        let row = lp.baseAddress! + r * v
                        var mx = row[0]
                        for j in 1..<v { mx = max(mx, row[j]) }
                        var sum = 0.0
                        for j in 0..<v { sum += Double(expf(row[j] - mx)) }
                        op[lo + r] = -(Double(row[Int(targets[lo + r])] - mx) - log(sum))
                    }
                }
            }
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#endif
