/// How a forward applies a LoRA-FA adapter: the batch is run once per entry of `copies`, and
/// copy c sees B + sign_c · ε · z(query_c) for every adapted matrix (sign 0: B itself).
/// z is regenerated from the counter RNG keyed by (seed, step, query, slot index), never stored.
public struct LoRAPlan {
    public struct Copy: Sendable, Equatable {
        public var query: Int
        public var sign: Float
        public init(query: Int, sign: Float) { self.query = query; self.sign = sign }
    }
    public let adapter: LoRAAdapter
    public var copies: [Copy]
    public var seed: UInt64
    public var step: UInt64
    public var eps: Float
    /// One explicit direction instead of the RNG's: all slots' B elements, slot after slot
    /// (`LoRAAdapter.flatB` order). When set, every copy sees B + sign·ε·direction.
    public var direction: [Float]?

    /// The adapter as trained, no perturbation: inference.
    public init(adapter: LoRAAdapter) {
        self.adapter = adapter
        copies = [Copy(query: 0, sign: 0)]
        seed = 0; step = 0; eps = 0
    }

    public init(adapter: LoRAAdapter, copies: [Copy], seed: UInt64, step: UInt64, eps: Float) {
        self.adapter = adapter
        self.copies = copies
        self.seed = seed; self.step = step; self.eps = eps
    }

    /// P-RGE's 2q copies: +εz_0 … +εz_{q-1}, then −εz_0 … −εz_{q-1}.
    public static func prge(adapter: LoRAAdapter, queries q: Int, seed: UInt64, step: UInt64, eps: Float) -> LoRAPlan {
        let plus = (0..<q).map { Copy(query: $0, sign: 1) }
        let minus = (0..<q).map { Copy(query: $0, sign: -1) }
        return LoRAPlan(adapter: adapter, copies: plus + minus, seed: seed, step: step, eps: eps)
    }
}
