/// A growable, uninitialized float scratch buffer. Forward workspaces reuse these across calls
/// so that a training step allocates nothing once warm.
final class FloatBuffer {
    private(set) var ptr: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ n: Int = 0) {
        capacity = max(n, 16)
        ptr = .allocate(capacity: capacity)
    }
    deinit { ptr.deallocate() }

    /// At least n floats; old contents are not kept.
    @discardableResult
    func ensure(_ n: Int) -> UnsafeMutablePointer<Float> {
        if n > capacity {
            ptr.deallocate()
            capacity = n
            ptr = .allocate(capacity: n)
        }
        return ptr
    }
}
