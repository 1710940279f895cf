import PRGEKernels
// Counter-based random numbers for the perturbations z and for LoRA A's initialisation.
//
// Nothing is stored and there is no generator state: element i of stream (seed, step, query,
// tensor) is a pure function of those five numbers. Any thread can produce any element range,
// so z is identical for 1 or N threads, and a step can be replayed from (seed, step) alone.
//
// Generator: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
// 1, 2, 3", SC'11; the Random123 library), checked against Random123's known-answer vectors.
//
// Stream layout (version 1):
//   stream words (k0, k1, s2, s3) = Philox(counter: (step lo, step hi, query, tensor), key: seed)
//   block b of the stream          = Philox(counter: (b lo, b hi, s2, s3), key: (k0, k1))
//   elements 32j ..< 32j + 32      = blocks 8j ..< 8j + 8, taken as 4 runs of 8: element
//                                    32j + 8l + i comes from lane l of block 8j + i
// (runs of 8 so that 8 blocks computed side by side in SIMD registers store contiguously).
// The first call turns the 192 bits of (seed, step, query, tensor) into a 128-bit stream
// identity; two different streams coincide with probability 2^-128.
//
// Normals: Box–Muller in Float, on each pair of words (w0, w1) and (w2, w3) of a block:
//   u = (w0 >> 8 + 1) / 2^24 in (0, 1],  t = (w1 >> 8) / 2^24 in [0, 1)
//   lane 0 = sqrt(-2 ln u) cos 2πt,  lane 1 = sqrt(-2 ln u) sin 2πt   (lanes 2, 3 likewise)
// Uniforms: lane l = lo + (hi − lo) · (w_l >> 8) / 2^24.
// ln, cos, sin and √ are our own polynomials and Newton steps (rng.c: ln m = 2 atanh s by its
// series to s^9, cos/sin by Taylor polynomials on [−π/4, π/4] after an integer quadrant split,
// 1/√y by the bit-trick guess and three Newton steps) in plain Float arithmetic (+, −, ·, /,
// correctly rounded by IEEE 754, never fused into FMAs), not libm, whose results differ
// between libraries and CPUs. So every platform and every SIMD width gives the same bits.
// The 24-bit u bounds |z| by sqrt(48 ln 2) ≈ 5.77: the tail beyond it (p ≈ 8e-9) is never drawn.

/// Bumped whenever any output of this file changes; step logs record it so a replay can refuse
/// a log made by a different generator.
public let rngVersion: UInt32 = 1

/// The identity of one random stream.
public struct RNGKey: Sendable, Equatable {
    public var seed: UInt64
    public var step: UInt64
    public var query: UInt32
    public var tensor: UInt32

    public init(seed: UInt64, step: UInt64, query: UInt32, tensor: UInt32) {
        self.seed = seed
        self.step = step
        self.query = query
        self.tensor = tensor
    }

    /// The stream that initialises LoRA A of adapter slot `tensor`. Training steps never reach
    /// step UInt64.max, so it cannot meet a perturbation stream.
    public static func loraInit(seed: UInt64, tensor: UInt32) -> RNGKey {
        RNGKey(seed: seed, step: .max, query: .max, tensor: tensor)
    }

    /// (k0, k1, s2, s3): the key and the fixed upper counter words of the stream's blocks.
    @usableFromInline var stream: SIMD4<UInt32> {
        philox4x32_10(SIMD4(UInt32(truncatingIfNeeded: step), UInt32(truncatingIfNeeded: step >> 32), query, tensor),
                      UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }
}

// ---- Philox4x32-10 ---------------------------------------------------------------------------

/// One Philox4x32 block with 10 rounds: 4 counter words and a 2-word key → 4 random words.
@inlinable
public func philox4x32_10(_ counter: SIMD4<UInt32>, _ key0: UInt32, _ key1: UInt32) -> SIMD4<UInt32> {
    var c = counter
    var k0 = key0, k1 = key1
    for round in 0..<10 {
        if round > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }   // Weyl key schedule
        let p0 = UInt64(0xD251_1F53) &* UInt64(c[0])
        let p1 = UInt64(0xCD9E_8D57) &* UInt64(c[2])
        c = SIMD4(UInt32(truncatingIfNeeded: p1 >> 32) ^ c[1] ^ k0, UInt32(truncatingIfNeeded: p1),
                  UInt32(truncatingIfNeeded: p0 >> 32) ^ c[3] ^ k1, UInt32(truncatingIfNeeded: p0))
    }
    return c
}

// ---- bulk fills ------------------------------------------------------------------------------
// Sources/PRGEKernels/rng.c computes the layout and formulas above (AVX-512 where it exists,
// else portable C; the same bits either way). Here: the stream's key, and the calls.

/// Fills `out` with elements start ..< start + out.count of the N(0, 1) stream `key`.
/// Splitting a range into pieces filled separately gives the same numbers.
public func fillNormal(into out: UnsafeMutableBufferPointer<Float>, key: RNGKey, start: Int) {
    rngFill(Int32(PRGE_RNG_NORMAL), out, key, start, 0, 1)
}

/// Fills `out` with elements start ..< start + out.count of the stream `key`, uniform in
/// [lo, hi] (hi itself only by rounding): lo + (hi − lo) · (w >> 8) / 2^24.
public func fillUniform(into out: UnsafeMutableBufferPointer<Float>, key: RNGKey, start: Int, lo: Float, hi: Float) {
    rngFill(Int32(PRGE_RNG_UNIFORM), out, key, start, lo, hi)
}

/// `mode`: 0, or PRGE_MM_GENERIC for the portable C path (tests compare the two).
func rngFill(_ kind: Int32, _ out: UnsafeMutableBufferPointer<Float>, _ key: RNGKey, _ start: Int, _ lo: Float, _ hi: Float,
             mode: Int32 = 0) {
    precondition(start >= 0, "fillNormal/fillUniform: negative start \(start)")
    guard let base = out.baseAddress, out.count > 0 else { return }
    withUnsafeBytes(of: key.stream) { w in
        prge_rng_fill(mode, kind, w.bindMemory(to: UInt32.self).baseAddress, Int64(start), Int64(out.count), lo, hi, base)
    }
}
