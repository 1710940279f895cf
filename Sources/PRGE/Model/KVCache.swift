/// Keys and values of one sequence for incremental decoding: per layer [capacity, kv_dim].
public final class KVCache {
    public let capacity: Int
    public internal(set) var count = 0
    let kvDim: Int
    private let keys: [FloatBuffer]
    private let values: [FloatBuffer]

    public init(model: Model, capacity: Int) throws {
        let c = model.config
        guard capacity >= 1, capacity <= c.nCtxTrain else {
            throw PRGEError.invalid("KV cache capacity \(capacity) must be in 1...\(c.nCtxTrain)")
        }
        self.capacity = capacity
        kvDim = c.kvDim
        keys = (0..<c.nLayer).map { _ in FloatBuffer(capacity * c.kvDim) }
        values = (0..<c.nLayer).map { _ in FloatBuffer(capacity * c.kvDim) }
    }

    func layer(_ l: Int) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) { (keys[l].ptr, values[l].ptr) }

    /// Forget everything (a new conversation).
    public func clear() { count = 0 }
}
