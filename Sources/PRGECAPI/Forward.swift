// prge_forward and prge_classify: validate, run one forward on the model's Context, copy out.
import PRGE
#if canImport(Glibc)
import Glibc
#endif

// prge_batch, prge_seq and prge_seq_pos as laid out in prge.h: every field is one machine word
// (a pointer or a size_t), so they are read here as arrays of Int (test_capi.c checks the
// header's offsets):
//   prge_batch   { const prge_seq *seqs; size_t n_seqs; const prge_seq_pos *outputs; size_t n_outputs; }
//   prge_seq     { const int32_t *tokens; size_t n_tokens; }
//   prge_seq_pos { size_t seq; size_t pos; }
private func pointer<T>(_ word: Int, _: T.Type) -> UnsafePointer<T>? { UnsafePointer(bitPattern: word) }

/// The caller's prge_batch as an engine Batch, every pointer, size and index checked.
private func readBatch(_ raw: UnsafeRawPointer?, _ model: Model, rank: Int) throws -> Batch {
    let b = try required(raw?.assumingMemoryBound(to: Int.self), "batch")
    let seqWords = try input(pointer(b[0], Int.self), count: b[1] <= Int.max / 2 ? b[1] * 2 : -1, "batch.seqs")
    let outWords = try input(pointer(b[2], Int.self), count: b[3] <= Int.max / 2 ? b[3] * 2 : -1, "batch.outputs")
    let nSeqs = seqWords.count / 2, nOut = outWords.count / 2
    guard nSeqs > 0 else { throw PRGEError.invalid("batch.n_seqs is 0") }
    guard nOut > 0 else { throw PRGEError.invalid("batch.n_outputs is 0: no logits asked for") }

    // Sizes first, so nothing is copied for a batch that cannot run.
    let c = model.config
    var total = 0, longest = 0
    for i in 0..<nSeqs {
        let n = seqWords[2 * i + 1]
        guard n > 0 else { throw PRGEError.invalid("batch.seqs[\(i)].n_tokens is 0") }
        guard n <= c.nCtxTrain else {
            throw PRGEError.invalid("batch.seqs[\(i)] has \(UInt(bitPattern: n)) tokens, more than the model's context of \(c.nCtxTrain)")
        }
        total = min(total + n, Int.max / 2)
        longest = max(longest, n)
    }
    try checkForwardMemory(model, sequences: nSeqs, tokens: total, longest: longest, outputs: nOut, copies: 1, rank: rank)

    var sequences: [[Int32]] = []
    sequences.reserveCapacity(nSeqs)
    for i in 0..<nSeqs {
        let ids = try input(pointer(seqWords[2 * i], Int32.self), count: seqWords[2 * i + 1], "batch.seqs[\(i)].tokens")
        if let j = ids.firstIndex(where: { $0 < 0 || Int($0) >= c.nVocab }) {
            throw PRGEError.invalid("batch.seqs[\(i)].tokens[\(j)] = \(ids[j]) is outside the vocabulary [0, \(c.nVocab))")
        }
        sequences.append(Array(ids))
    }
    var outputs: [(seq: Int, pos: Int)] = []
    outputs.reserveCapacity(nOut)
    for i in 0..<nOut {
        let s = outWords[2 * i], p = outWords[2 * i + 1]
        guard s >= 0, s < nSeqs else { throw PRGEError.invalid("batch.outputs[\(i)].seq = \(UInt(bitPattern: s)) is not below n_seqs = \(nSeqs)") }
        guard p >= 0, p < sequences[s].count else {
            throw PRGEError.invalid("batch.outputs[\(i)].pos = \(UInt(bitPattern: p)) is outside sequence \(s) of \(sequences[s].count) tokens")
        }
        outputs.append((s, p))
    }
    return Batch(sequences: sequences, outputs: outputs)
}

/// Refuses a forward whose scratch would not fit in memory (an allocation failure inside the
/// engine would abort the host). The estimate follows Context's workspace: per row of every
/// copy the residual, normed input, q/k/v, attention output, both SwiGLU halves and the LoRA
/// A·x row (`rank` floats); per
/// (copy, sequence, head) an attention row of the longest sequence; per output its hidden state
/// and n_vocab logits (twice: the engine's array and the caller's copy happen together).
func checkForwardMemory(_ model: Model, sequences: Int, tokens: Int, longest: Int, outputs: Int, copies: Int,
                        rank: Int = 0, extraBytes: Int = 0) throws {
    let c = model.config
    let rows = Double(copies) * Double(tokens)
    let perRow = Double(2 * c.nEmbd + 2 * c.qDim + 2 * c.kvDim + 2 * c.nFF + rank)
    let attention = Double(copies) * Double(sequences) * Double(c.nHead) * Double(longest)
    let out = Double(copies) * Double(outputs) * Double(c.nEmbd + 2 * c.nVocab)
    let bytes = 4 * (rows * perRow + attention + out) + Double(extraBytes)
    let budget = memoryBudget()
    guard bytes <= budget else {
        throw PRGEError(.outOfMemory, "batch of \(sequences) sequences, \(tokens) tokens, \(outputs) outputs\(copies > 1 ? " × \(copies) copies" : "") needs about \(Int(bytes / 1e6)) MB of scratch; the limit is \(Int(budget / 1e6)) MB (half the physical memory)")
    }
}

/// Half the machine's physical memory, in bytes.
private func memoryBudget() -> Double {
    let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
    guard pages > 0, size > 0 else { return 4e9 }
    return Double(pages) * Double(size) / 2
}

@_cdecl("prge_forward")
public func prge_forward(_ m: OpaquePointer?, _ a: OpaquePointer?, _ batch: UnsafeRawPointer?,
                         _ logits: UnsafeMutablePointer<Float>?, _ cap: Int) -> Int32 {
    capi {
        let mh = try model(m)
        let lora = try optionalAdapter(a, for: mh.model)
        let b = try readBatch(batch, mh.model, rank: lora?.config.rank ?? 0)
        let out = try output(logits, count: cap, "logits")
        let v = mh.model.config.nVocab
        let need = b.outputs.count * v      // cannot overflow: checkForwardMemory bounded it
        guard need <= out.count else {
            throw PRGEError(.bufferTooSmall, "logits has room for \(out.count) floats; \(b.outputs.count) outputs × \(v) vocabulary need \(need)")
        }
        let result = try mh.withContext { ctx in try ctx.logits(b, lora: lora.map { LoRAPlan(adapter: $0) }) }
        guard result.count == need else {
            throw PRGEError(.internal, "forward returned \(result.count) logits for \(need)")
        }
        _ = UnsafeMutableBufferPointer(rebasing: out[0..<need]).initialize(from: result)
    }
}

/// The prompt as the model's tokenizer makes it for generation and classification: BOS/EOS as
/// the metadata says, special-token text kept as plain text. Checked against the context.
func promptTokens(_ model: Model, _ prompt: String, room: Int = 0) throws -> [Int32] {
    let ids = model.tokenizer.encode(prompt, addSpecial: true, parseSpecial: false)
    guard !ids.isEmpty else { throw PRGEError.invalid("prompt is empty (it gives no tokens)") }
    guard ids.count + room <= model.config.nCtxTrain else {
        throw PRGEError.invalid("prompt has \(ids.count) tokens\(room > 0 ? " (+\(room) to generate)" : ""), more than the model's context of \(model.config.nCtxTrain)")
    }
    return ids
}

@_cdecl("prge_classify")
public func prge_classify(_ m: OpaquePointer?, _ a: OpaquePointer?, _ prompt: UnsafePointer<CChar>?,
                          _ labels: UnsafePointer<UnsafePointer<CChar>?>?, _ nLabels: Int,
                          _ scores: UnsafeMutablePointer<Float>?, _ best: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let mh = try model(m)
        let lora = try optionalAdapter(a, for: mh.model)
        let text = try utf8CString(prompt, "prompt")
        let words = try input(labels, count: nLabels, "labels")
        guard !words.isEmpty else { throw PRGEError.invalid("n_labels is 0") }
        let out = try output(scores, count: nLabels, "scores")
        let best = try optional(best, "best")

        let tok = mh.model.tokenizer
        var ids: [Int32] = []
        for (i, w) in words.enumerated() {
            let word = try utf8CString(w, "labels[\(i)]")
            let t = tok.encode(word, addSpecial: false, parseSpecial: false)
            guard t.count == 1 else {
                throw PRGEError.invalid("labels[\(i)] \(JSONValue.string(word).serialized) is \(t.count) tokens; a label word must be exactly one token")
            }
            ids.append(t[0])
        }
        let prompt = try promptTokens(mh.model, text)
        try checkForwardMemory(mh.model, sequences: 1, tokens: prompt.count, longest: prompt.count, outputs: 1, copies: 1,
                               rank: lora?.config.rank ?? 0)
        let logits = try mh.withContext { ctx in
            try ctx.logits(Batch(lastTokenOf: [prompt]), lora: lora.map { LoRAPlan(adapter: $0) })
        }
        guard logits.count == mh.model.config.nVocab else {
            throw PRGEError(.internal, "forward returned \(logits.count) logits for one output")
        }
        // Full-vocabulary log-softmax, in Double.
        let top = Double(logits.max()!)
        guard top.isFinite else { throw PRGEError(.internal, "forward gave a non-finite logit") }
        let lse = top + log(logits.reduce(0.0) { $0 + exp(Double($1) - top) })
        var bestIndex = 0
        for (i, id) in ids.enumerated() {
            out[i] = Float(Double(logits[Int(id)]) - lse)
            if out[i] > out[bestIndex] { bestIndex = i }
        }
        best?.pointee = bestIndex
    }
}
