// Minibatch order. The training set is visited in epochs; epoch e is a permutation of 0..<n
// drawn from the counter RNG keyed by (seed, e), and the minibatch of step s is positions
// s·b ..< s·b + b of the concatenated epochs. So the batch of step s is a pure function of
// (seed, s, training set size): no sampler state to save, and a resumed run draws exactly the
// batches the uninterrupted run would have.
//
// Stream: RNGKey(seed, step: epoch, query: Sampler.query, tensor: 0). Perturbations use
// queries < 256 and LoRA A uses query UInt32.max, so the streams never meet.
// Permutation: Fisher–Yates, i from n−1 down to 1 swaps with j = ⌊w_i · (i + 1) / 2^32⌋, w_i the
// i-th 32-bit word of the stream (bias < (i + 1) / 2^32, below 2e-5 for 67k examples).

public final class Sampler {
    public let seed: UInt64
    public let batch: Int
    static let query = UInt32.max - 1

    private var cached: (epoch: Int, n: Int, order: [Int])?

    public init(seed: UInt64, batch: Int) {
        self.seed = seed
        self.batch = batch
    }

    /// Indices into a training set of `n` examples for step `step`.
    public func indices(step: UInt64, n: Int) -> [Int] {
        precondition(n > 0, "Sampler: empty training set")
        let first = Int(step) * batch
        return (first..<(first + batch)).map { p in order(epoch: p / n, n: n)[p % n] }
    }

    /// The permutation of epoch `epoch`.
    public func order(epoch: Int, n: Int) -> [Int] {
        if let c = cached, c.epoch == epoch, c.n == n { return c.order }
        var perm = Array(0..<n)
        let s = RNGKey(seed: seed, step: UInt64(epoch), query: Self.query, tensor: 0).stream
        var i = n - 1
        while i > 0 {
            let block = UInt64(i / 4)
            let w = philox4x32_10(SIMD4(UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: block >> 32), s[2], s[3]), s[0], s[1])[i % 4]
            let j = Int((UInt64(w) * UInt64(i + 1)) >> 32)
            perm.swapAt(i, j)
            i -= 1
        }
        cached = (epoch, n, perm)
        return perm
    }
}
