#if canImport(Glibc)
import Glibc
#endif

/// What a training example asks of the model, in tokens.
public struct Sample: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        /// Classification: the label word `candidates[index]` should follow the prompt.
        case label(Int)
        /// Causal LM: tokens[start...] are the response, each predicted from what precedes it.
        case response(start: Int)
    }
    public var tokens: [Int32]
    public var target: Target
    public init(tokens: [Int32], target: Target) { self.tokens = tokens; self.target = target }
}

/// How a copy's loss is computed from logits.
public enum LossKind: String, Sendable, CaseIterable {
    /// Cross-entropy of the label token over the full vocabulary (the P-RGE authors' choice).
    case full
    /// Cross-entropy over the candidate label words only (MeZO's classification loss).
    case candidates
}

/// Turns examples into samples and logits into losses. Classification needs one output per
/// example (its last prompt position); causal LM one per response token.
public struct Objective: Sendable {
    public let task: Task
    public let loss: LossKind
    /// Token id of each label word (classification); empty for prompt/response tasks.
    public let candidates: [Int32]
    let tokenizer: Tokenizer

    public init(task: Task, loss: LossKind, tokenizer: Tokenizer) throws {
        self.task = task
        self.loss = loss
        self.tokenizer = tokenizer
        candidates = try task.labels.map { word in
            let ids = tokenizer.encode(word, addSpecial: false)
            guard ids.count == 1 else {
                throw PRGEError.invalid("label word '\(word)' of task '\(task.name)' is \(ids.count) tokens; label words must be exactly one token")
            }
            return ids[0]
        }
    }

    /// Tokenize one example. Prompts longer than `maxLength` are cut from the left (the end
    /// of a prompt, next to the answer, matters most), as the authors' left truncation does.
    public func sample(_ e: Example, maxLength: Int) throws -> Sample {
        var toks = tokenizer.encode(e.prompt, addSpecial: true)
        switch task.kind {
        case .classification:
            guard let y = e.label, y >= 0, y < candidates.count else {
                throw PRGEError.invalid("example has no valid label for task '\(task.name)' (\(candidates.count) classes)")
            }
            if toks.count > maxLength { toks.removeFirst(toks.count - maxLength) }
            guard !toks.isEmpty else { throw PRGEError.invalid("example prompt is empty") }
            return Sample(tokens: toks, target: .label(y))
        case .promptResponse:
            guard let r = e.response else { throw PRGEError.invalid("prompt/response example has no response") }
            let resp = tokenizer.encode(r, addSpecial: false)
            guard !resp.isEmpty else { throw PRGEError.invalid("example response is empty") }
            guard resp.count < maxLength else { throw PRGEError.invalid("response of \(resp.count) tokens does not fit the context \(maxLength)") }
            if toks.count + resp.count > maxLength { toks.removeFirst(toks.count + resp.count - maxLength) }
            if toks.isEmpty { toks = [tokenizer.bos ?? resp[0]] }   // something must predict the first response token
            return Sample(tokens: toks + resp, target: .response(start: toks.count))
        }
    }

    /// The batch whose outputs are exactly the positions the loss reads.
    public func batch(_ samples: [Sample]) -> Batch {
        var outs: [(seq: Int, pos: Int)] = []
        for (i, s) in samples.enumerated() {
            switch s.target {
            case .label: outs.append((i, s.tokens.count - 1))
            case .response(let start): for p in (start - 1)..<(s.tokens.count - 1) { outs.append((i, p)) }
            }
        }
        return Batch(sequences: samples.map(\.tokens), outputs: outs)
    }

    /// Whether the forward needs full-vocabulary logits (else only the candidates' rows).
    var needsFullVocab: Bool { task.kind == .promptResponse || loss == .full }

    /// Logits for every copy: [copies × outputs, width], width = n_vocab or candidates.count.
    func logits(_ ctx: Context, _ b: Batch, _ plan: LoRAPlan?) throws -> [Float] {
        needsFullVocab ? try ctx.logits(b, lora: plan) : try ctx.logits(b, lora: plan, ids: candidates)
    }

    /// The target token id of each output row, in batch order.
    func targets(_ samples: [Sample]) -> [Int32] {
        var t: [Int32] = []
        for s in samples {
            switch s.target {
            case .label(let y): t.append(needsFullVocab ? candidates[y] : Int32(y))
            case .response(let start): t.append(contentsOf: s.tokens[start...])
            }
        }
        return t
    }

    /// Mean cross-entropy per copy. logits: [copies × targets.count, width].
    func copyLosses(_ logits: [Float], targets: [Int32], copies: Int) -> [Float] {
        let n = targets.count, w = logits.count / max(copies * n, 1)
        return (0..<copies).map { c in
            var sum = 0.0
            logits.withUnsafeBufferPointer { lp in
                for (i, t) in targets.enumerated() {
                    sum += crossEntropy(lp.baseAddress! + (c * n + i) * w, width: w, target: Int(t))
                }
            }
            return Float(sum / Double(n))
        }
    }
}

/// −log softmax(x)[target], in double so that ±ε loss differences of ~1e-4 are not rounding.
func crossEntropy(_ x: UnsafePointer<Float>, width: Int, target: Int) -> Double {
    var mx = -Double.infinity
    for j in 0..<width { mx = max(mx, Double(x[j])) }
    var s = 0.0
    for j in 0..<width { s += exp(Double(x[j]) - mx) }
    return mx + log(s) - Double(x[target])
}
