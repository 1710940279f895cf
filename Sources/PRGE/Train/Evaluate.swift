// Evaluation: accuracy by the best candidate label word and the mean loss, with the adapter as
// trained (no perturbation) or the base model. Sequences run 32 to a forward; with
// full-vocabulary logits (loss "full", causal LM) a forward also stops at 512 output rows, so
// long responses do not ask for gigabytes of logits.

public struct EvalResult: Sendable, Equatable {
    /// Fraction of examples whose best-scoring label word is the right one; NaN for causal LM.
    public var accuracy: Float
    /// Mean cross-entropy: per example for classification (over the objective's vocabulary:
    /// full or candidates), per response token for causal LM.
    public var loss: Float
    public var n: Int

    public var json: JSONValue {
        .object([("accuracy", accuracy.isNaN ? .null : .float(accuracy)), ("n", .number(Double(n))), ("loss", .float(loss))])
    }
}

public enum Evaluation {
    public static let sequencesPerForward = 32
    static let maxFullVocabRows = 512

    /// Evaluates `samples` under `objective` on `context`, with `adapter` (nil: base model).
    public static func run(_ samples: [Sample], objective: Objective, context: Context, adapter: LoRAAdapter?) throws -> EvalResult {
        guard !samples.isEmpty else { throw PRGEError(.state, "nothing to evaluate: the example set is empty") }
        let plan = adapter.map { LoRAPlan(adapter: $0) }
        // The label words' columns in a logits row.
        let cols = objective.needsFullVocab ? objective.candidates.map(Int.init) : Array(0..<objective.candidates.count)
        var lossSum = 0.0, lossCount = 0, correct = 0
        var i = 0
        while i < samples.count {
            var end = i + 1, rows = outputs(samples[i])
            while end < samples.count, end - i < sequencesPerForward,
                  !objective.needsFullVocab || rows + outputs(samples[end]) <= maxFullVocabRows {
                rows += outputs(samples[end])
                end += 1
            }
            let chunk = Array(samples[i..<end])
            let logits = try objective.logits(context, objective.batch(chunk), plan)
            let targets = objective.targets(chunk)
            let width = logits.count / targets.count
            logits.withUnsafeBufferPointer { lp in
                for (r, t) in targets.enumerated() { lossSum += crossEntropy(lp.baseAddress! + r * width, width: width, target: Int(t)) }
                lossCount += targets.count
                for (k, s) in chunk.enumerated() {
                    guard case .label(let y) = s.target else { continue }
                    let row = lp.baseAddress! + k * width   // classification: one output row per example
                    var best = 0
                    for c in 1..<cols.count where row[cols[c]] > row[cols[best]] { best = c }
                    if best == y { correct += 1 }
                }
            }
            i = end
        }
        let classification = objective.task.kind == .classification
        return EvalResult(accuracy: classification ? Float(correct) / Float(samples.count) : .nan,
                          loss: Float(lossSum / Double(max(lossCount, 1))), n: samples.count)
    }

    /// Data rows → examples → samples, as the trainer and `prge eval` read data; errors name
    /// the row's "file:line".
    public static func samples(rows: [JSONNode], objective: Objective, maxLength: Int) throws -> [Sample] {
        var out: [Sample] = []
        for row in rows {
            for e in try objective.task.examples(from: row) {
                do { out.append(try objective.sample(e, maxLength: maxLength)) } catch let err as PRGEError {
                    throw PRGEError(err.code, "\(row.source ?? "row"): \(err.message)")
                }
            }
        }
        return out
    }

    /// Output rows `sample` asks of a forward.
    static func outputs(_ s: Sample) -> Int {
        switch s.target {
        case .label: return 1
        case .response(let start): return s.tokens.count - start
        }
    }
}
