import Testing
@testable import PRGE

/// Generation with the KV cache and perplexity, on the reference model.
@Suite struct GenerateTests {
    static let prompt: [Int32] = [504, 3575, 282, 4649, 314]   // "The capital of France is"

    /// Greedy with the cache gives exactly the tokens of re-running the whole sequence each step.
    @Test func cachedGreedyMatchesFullForward() throws {
        let ctx = try ForwardTests.context()
        let cached = try Generator(context: ctx).generate(prompt: Self.prompt, maxTokens: 8)
        #expect(cached.count == 8)
        var seq = Self.prompt
        for _ in 0..<8 {
            let logits = try ctx.logits(Batch(lastTokenOf: [seq]))
            seq.append(Int32(logits.indices.max { logits[$0] < logits[$1] }!))
        }
        #expect(cached == Array(seq[Self.prompt.count...]))
    }

    /// Through an adapter: B = 0 changes nothing; a non-zero B changes the text, and the cached
    /// path still gives the tokens of full forwards through the same adapter.
    @Test func adapterWithCacheMatchesFullForward() throws {
        let ctx = try ForwardTests.context()
        var cfg = LoRAConfig()
        cfg.rank = 4
        cfg.targets = [.q, .v, .down]
        cfg.layers = [0, 1, 29]
        let ad = try LoRAAdapter(config: cfg, nLayer: ctx.model.config.nLayer, shape: ctx.model.shape)
        let plain = try Generator(context: ctx).generate(prompt: Self.prompt, maxTokens: 4)
        #expect(try Generator(context: ctx, adapter: ad).generate(prompt: Self.prompt, maxTokens: 4) == plain)
        for s in ad.slots { for i in s.b.indices { s.b[i] = Float((i * 7919 + s.index * 104729) % 2001 - 1000) * 2e-3 } }
        let cached = try Generator(context: ctx, adapter: ad).generate(prompt: Self.prompt, maxTokens: 4)
        #expect(cached != plain)
        var seq = Self.prompt
        for _ in 0..<4 {
            let logits = try ctx.logits(Batch(lastTokenOf: [seq]), lora: LoRAPlan(adapter: ad))
            seq.append(Int32(logits.indices.max { logits[$0] < logits[$1] }!))
        }
        #expect(cached == Array(seq[Self.prompt.count...]))
    }

    @Test func parisAndStreaming() throws {
        let ctx = try ForwardTests.context()
        var streamed: [UInt8] = [], ids: [Int32] = []
        let out = try Generator(context: ctx).generate(prompt: "The capital of France is", maxTokens: 4) { id, bytes in
            ids.append(id)
            streamed += bytes
            return true
        }
        #expect(ids == out)
        let text = String(decoding: streamed, as: UTF8.self)
        #expect(text.hasPrefix(" Paris"), "\(text)")
        // The callback can stop generation.
        let one = try Generator(context: ctx).generate(prompt: Self.prompt, maxTokens: 4) { _, _ in false }
        #expect(one == [out[0]])
    }

    @Test func samplingIsSeededAndTopKOneIsGreedy() throws {
        let ctx = try ForwardTests.context()
        let g = Generator(context: ctx)
        let hot = Sampling(temperature: 1.5, topK: 50, topP: 0.95, seed: 7)
        let a = try g.generate(prompt: Self.prompt, maxTokens: 4, sampling: hot)
        #expect(try g.generate(prompt: Self.prompt, maxTokens: 4, sampling: hot) == a)
        let greedy = try g.generate(prompt: Self.prompt, maxTokens: 3)
        #expect(try g.generate(prompt: Self.prompt, maxTokens: 3, sampling: Sampling(temperature: 1, topK: 1, seed: 3)) == greedy)
        #expect(throws: PRGEError.self) { try g.generate(prompt: Self.prompt, maxTokens: 1, sampling: Sampling(temperature: -1)) }
        #expect(throws: PRGEError.self) { try g.generate(prompt: Self.prompt, maxTokens: 1, sampling: Sampling(temperature: 1, topP: 0)) }
        #expect(throws: PRGEError.self) { try g.generate(prompt: [], maxTokens: 1) }
        #expect(try g.generate(prompt: Self.prompt, maxTokens: 0).isEmpty)
    }

    /// llama-perplexity's convention by hand: chunks of n, the second half scored, on full logits.
    @Test func perplexityFollowsLlamaCppChunking() throws {
        let ctx = try ForwardTests.context()
        let n = 8, first = n / 2
        let tokens = ctx.model.tokenizer.encode("Once upon a time, there was a little girl who lived in a village near the forest.")
        #expect(tokens.count >= 2 * n && tokens.count < 3 * n)    // two chunks, a dropped tail
        let v = ctx.model.config.nVocab
        var nll = 0.0, count = 0
        for c in 0..<2 {
            let chunk = Array(tokens[c * n ..< (c + 1) * n])
            let logits = try ctx.logits(Batch(sequences: [chunk], outputs: (0..<n).map { (seq: 0, pos: $0) }))
            for p in first ..< n - 1 {
                let row = logits[p * v ..< (p + 1) * v]
                let mx = row.max()!
                let lse = Double(mx) + log(row.reduce(0.0) { $0 + exp(Double($1 - mx)) })
                nll += lse - Double(row[row.startIndex + Int(chunk[p + 1])])
                count += 1
            }
        }
        var progress: [Int] = []
        let r = try ctx.perplexity(tokens: tokens, ctx: n) { done, _ in progress.append(done) }
        #expect(r.chunks == 2 && r.scored == count && r.ctx == n && progress == [1, 2])
        #expect(abs(r.ppl - exp(nll / Double(count))) <= 1e-6 * r.ppl, "\(r.ppl) vs \(exp(nll / Double(count)))")
        #expect(throws: PRGEError.self) { try ctx.perplexity(tokens: Array(tokens.prefix(2 * n - 1)), ctx: n) }
        #expect(throws: PRGEError.self) { try ctx.perplexity(tokens: tokens, ctx: 2) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
