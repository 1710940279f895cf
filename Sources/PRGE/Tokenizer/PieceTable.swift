// Byte strings with dense Int32 ids, looked up by bytes without allocating. Token texts are
// compared as bytes, never as Swift Strings: String equality is canonical equivalence, so
// "é" and "e\u{301}" would be the same key, and two distinct tokens would collide.

struct PieceTable {
    /// All pieces back to back; piece i is storage[starts[i] ..< starts[i + 1]].
    private var storage: [UInt8] = []
    private var starts: [Int] = [0]
    /// Open addressing, linear probing: a piece id, or -1 for an empty slot. Power-of-two size.
    private var slots: [Int32]

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: -1, count: n)
    }

    var count: Int { starts.count - 1 }

    subscript(id: Int32) -> ArraySlice<UInt8> { storage[starts[Int(id)] ..< starts[Int(id) + 1]] }

    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: Self.hash(key)) & mask
        while true {
            let id = slots[s]
            if id < 0 { return nil }
            if equals(id, key) { return id }
            s = (s + 1) & mask
        }
    }

    func find(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { find($0) } }

    /// Adds a piece unless present; returns its id either way.
    @discardableResult
    mutating func insert(_ key: [UInt8]) -> (id: Int32, inserted: Bool) {
        if let id = find(key) { return (id, false) }
        if (count + 1) * 2 > slots.count { grow() }
        let id = Int32(count)
        storage.append(contentsOf: key)
        starts.append(storage.count)
        place(id, hash: key.withUnsafeBufferPointer { Self.hash($0) })
        return (id, true)
    }

    private func equals(_ id: Int32, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let a = starts[Int(id)], b = starts[Int(id) + 1]
        guard b - a == key.count else { return false }
        return storage.withUnsafeBufferPointer { s in
            for k in 0..<key.count where s[a + k] != key[k] { return false }
            return true
        }
    }

    private mutating func place(_ id: Int32, hash: UInt64) {
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: hash) & mask
        while slots[s] >= 0 { s = (s + 1) & mask }
        slots[s] = id
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        for id in 0..<Int32(count) {
            let h = storage.withUnsafeBufferPointer { s in
                Self.hash(UnsafeBufferPointer(rebasing: s[starts[Int(id)] ..< starts[Int(id) + 1]]))
            }
            place(id, hash: h)
        }
    }

    /// FNV-1a, then a final mix so the low bits (the slot index) depend on every byte.
    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= h >> 29
        h = h &* 0xbf58_476d_1ce4_e5b9
        return h ^ (h >> 32)
    }
}
