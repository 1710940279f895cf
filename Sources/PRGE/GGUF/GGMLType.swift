// ggml tensor element types as numbered in the GGUF format, with their block geometry.
// A tensor row of n elements of type T occupies n / blockSize * typeSize bytes; n must be a
// multiple of blockSize.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case bf16 = 30

    /// Elements per quantization block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: return 256
        }
    }

    /// Bytes per block.
    public var typeSize: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18      // f16 d, 16 bytes of nibbles
        case .q4_1: return 20      // f16 d, f16 m, 16 bytes of nibbles
        case .q5_0: return 22      // f16 d, 4 bytes high bits, 16 bytes nibbles
        case .q5_1: return 24      // f16 d, f16 m, 4 bytes high bits, 16 bytes nibbles
        case .q8_0: return 34      // f16 d, 32 int8
        case .q8_1: return 36      // f16 d, f16 s, 32 int8
        case .q2_K: return 84      // 16 scales, 64 qs, f16 d, f16 dmin
        case .q3_K: return 110     // 32 hmask, 64 qs, 12 scales, f16 d
        case .q4_K: return 144     // f16 d, f16 dmin, 12 scales, 128 qs
        case .q5_K: return 176     // f16 d, f16 dmin, 12 scales, 32 qh, 128 qs
        case .q6_K: return 210     // 128 ql, 64 qh, 16 scales, f16 d
        case .q8_K: return 292     // f32 d, 256 int8, 16 int16 bsums
        }
    }

    public var name: String { String(describing: self).uppercased() }

    /// Bytes needed for `count` elements, or nil if count is not a whole number of blocks
    /// or the size overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: typeSize)
        return overflow ? nil : bytes
    }
}
