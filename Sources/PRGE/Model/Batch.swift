/// Sequences for one forward pass. Their tokens become rows of one matrix (no padding);
/// each sequence starts at position 0 unless a KV cache continues it.
public struct Batch: Sendable {
    public var sequences: [[Int32]]
    /// (sequence, position) pairs whose logits are wanted, in output order.
    public var outputs: [(seq: Int, pos: Int)]

    public init(sequences: [[Int32]], outputs: [(seq: Int, pos: Int)]) {
        self.sequences = sequences
        self.outputs = outputs
    }

    /// One output per sequence, at its last token (what classification and generation need).
    public init(lastTokenOf sequences: [[Int32]]) {
        self.sequences = sequences
        outputs = sequences.enumerated().map { ($0.offset, $0.element.count - 1) }
    }

    /// Validates against a model so the forward can index without checks.
    func validate(_ c: LlamaConfig, maxLength: Int) throws {
        guard !sequences.isEmpty else { throw PRGEError.invalid("batch has no sequences") }
        for (i, s) in sequences.enumerated() {
            guard !s.isEmpty else { throw PRGEError.invalid("sequence \(i) is empty") }
            guard s.count <= maxLength else {
                throw PRGEError.invalid("sequence \(i) has \(s.count) tokens, more than the context of \(maxLength)")
            }
            for t in s where t < 0 || Int(t) >= c.nVocab {
                throw PRGEError.invalid("sequence \(i) has token id \(t) outside the vocabulary [0, \(c.nVocab))")
            }
        }
        for (s, p) in outputs {
            guard s >= 0, s < sequences.count else { throw PRGEError.invalid("output refers to sequence \(s) of \(sequences.count)") }
            guard p >= 0, p < sequences[s].count else {
                throw PRGEError.invalid("output position \(p) is outside sequence \(s) of length \(sequences[s].count)")
            }
        }
    }
}
