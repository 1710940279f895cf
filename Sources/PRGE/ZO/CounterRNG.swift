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
// ln, cos, sin and √ are our own polynomials and Newton steps in plain Float arithmetic
// (+, −, ·, /, correctly rounded by IEEE 754; Swift never fuses them into FMAs), not libm,
// whose results differ between libraries and CPUs. So every platform gives the same bits.
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
// The stream is produced 8 blocks (32 elements) at a time, the 8 blocks in the lanes of SIMD8
// vectors, so the compiler emits vector code (SSE/AVX, NEON). Partial batches at either end run the same
// code and keep only the lanes inside the range: one code path, so one set of bits.

/// Fills `out` with elements start ..< start + out.count of the N(0, 1) stream `key`.
/// Splitting a range into pieces filled separately gives the same numbers.
public func fillNormal(into out: UnsafeMutableBufferPointer<Float>, key: RNGKey, start: Int) {
    fillBatches(out, key, start) { w in
        let (ra, ca, sa) = boxMuller(w.0, w.1)
        let (rb, cb, sb) = boxMuller(w.2, w.3)
        return (ra * ca, ra * sa, rb * cb, rb * sb)
    }
}

/// Fills `out` with elements start ..< start + out.count of the stream `key`, uniform in
/// [lo, hi] (hi itself only by rounding): lo + (hi − lo) · (w >> 8) / 2^24.
public func fillUniform(into out: UnsafeMutableBufferPointer<Float>, key: RNGKey, start: Int, lo: Float, hi: Float) {
    let width = hi - lo
    @inline(__always) func map(_ w: Words) -> Floats { SIMD8<Float>(w &>> 8) * 0x1p-24 * width + lo }
    fillBatches(out, key, start) { w in (map(w.0), map(w.1), map(w.2), map(w.3)) }
}

typealias Words = SIMD8<UInt32>
typealias Floats = SIMD8<Float>

/// Runs the stream's 32-element batches over `out`. `transform` maps the 4 words of 8 blocks to
/// 4 vectors of 8 elements, which are stored one after the other.
@inline(__always)
private func fillBatches(_ out: UnsafeMutableBufferPointer<Float>, _ key: RNGKey, _ start: Int,
                         _ transform: ((Words, Words, Words, Words)) -> (Floats, Floats, Floats, Floats)) {
    precondition(start >= 0, "fillNormal/fillUniform: negative start \(start)")
    guard let base = out.baseAddress, out.count > 0 else { return }
    let s = key.stream
    let end = start + out.count
    var first = start / 32 * 32       // first element of the current batch
    while first < end {
        let block = UInt64(first / 4)   // a multiple of 8: adding 0...7 never carries into word 1
        let c0 = Words(repeating: UInt32(truncatingIfNeeded: block)) &+ Words(0, 1, 2, 3, 4, 5, 6, 7)
        let v = transform(philox8(c0, UInt32(truncatingIfNeeded: block >> 32), s[2], s[3], s[0], s[1]))
        if first >= start && first + 32 <= end {
            store(v, UnsafeMutableRawPointer(base + (first - start)))
        } else {
            // A partial batch at either end: produce all 32 and keep those in range.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tmp in
                store(v, UnsafeMutableRawPointer(tmp.baseAddress!))
                for e in max(first, start) ..< min(first + 32, end) { base[e - start] = tmp[e - first] }
            }
        }
        first += 32
    }
}

@inline(__always)
private func store(_ v: (Floats, Floats, Floats, Floats), _ p: UnsafeMutableRawPointer) {
    let n = MemoryLayout<Floats>.size
    p.storeBytes(of: v.0, as: Floats.self)            // unaligned stores are allowed
    p.storeBytes(of: v.1, toByteOffset: n, as: Floats.self)
    p.storeBytes(of: v.2, toByteOffset: 2 * n, as: Floats.self)
    p.storeBytes(of: v.3, toByteOffset: 3 * n, as: Floats.self)
}

/// Philox4x32-10 on 8 consecutive blocks (counter word 0 = `c0`, the same words 1..3 and key).
/// Bit-identical to `philox4x32_10` lane by lane.
@inline(__always)
private func philox8(_ c0: Words, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32, _ key0: UInt32, _ key1: UInt32)
    -> (Words, Words, Words, Words) {
    var x0 = c0, x1 = Words(repeating: c1), x2 = Words(repeating: c2), x3 = Words(repeating: c3)
    var k0 = key0, k1 = key1
    for round in 0..<10 {
        if round > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
        let hi0 = mulHi(0xD251_1F53, x0), lo0 = x0 &* 0xD251_1F53
        let hi1 = mulHi(0xCD9E_8D57, x2), lo1 = x2 &* 0xCD9E_8D57
        (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
    }
    return (x0, x1, x2, x3)
}

/// Upper 32 bits of the 64-bit products m · x.
@inline(__always)
private func mulHi(_ m: UInt32, _ x: Words) -> Words {
    Words(truncatingIfNeeded: (SIMD8<UInt64>(truncatingIfNeeded: x) &* UInt64(m)) &>> 32)
}

// ---- Box–Muller in portable Float ------------------------------------------------------------

/// (radius, cos 2πt, sin 2πt) for the word pairs (wu, wt) of 8 blocks.
@inline(__always)
func boxMuller(_ wu: Words, _ wt: Words) -> (Floats, Floats, Floats) {
    let u = Floats((wu &>> 8) &+ 1) * 0x1p-24        // (0, 1]: ln never sees 0
    let (c, s) = cosSin2Pi(wt &>> 8)
    let y = logUnit(u) * -2                          // [0, 33.3]
    return (y * rsqrt(y), c, s)
}

/// 1/√y by the bit-trick first guess and three Newton steps (a few ulp), instead of
/// squareRoot(), which Swift lowers to one libm call per lane rather than a vector sqrt.
/// y = 0 gives a finite value, so y · rsqrt(y) = 0.
@inline(__always)
func rsqrt(_ y: Floats) -> Floats {
    var r = unsafeBitCast(0x5F37_5A86 &- (unsafeBitCast(y, to: Words.self) &>> 1), to: Floats.self)
    let half = y * 0.5
    for _ in 0..<3 { r = r * (1.5 - half * r * r) }
    return r
}

/// ln(u) for u in (0, 1]. u = m · 2^e with m in [√½, √2); ln m = 2 atanh(s), s = (m−1)/(m+1),
/// |s| ≤ 0.172, by its series to s^9 (next term < 3e-10 relative). The range split is done on
/// the bits, as comparisons and selects on Swift SIMD vectors compile to scalar loops.
@inline(__always)
func logUnit(_ u: Floats) -> Floats {
    let bits = unsafeBitCast(u, to: Words.self)
    let mant = bits & 0x007F_FFFF
    let big = (0x0035_04F3 &- mant) &>> 31                   // 1 where m > √2 (0x3FB504F3)
    let e = Floats(SIMD8<Int32>(truncatingIfNeeded: (bits &>> 23) &+ big) &- 127)
    let m = unsafeBitCast((mant | 0x3F80_0000) &- (big &<< 23), to: Floats.self)   // [√½, √2)
    let s = (m - 1) / (m + 1)
    let s2 = s * s
    var p = s2 * Float(1.0 / 9) + Float(1.0 / 7)      // Horner, one rounding per operation
    p = p * s2 + Float(1.0 / 5)
    p = p * s2 + Float(1.0 / 3)
    p = p * s2 + 1
    return e * Float(0.693147180559945) + 2 * s * p
}

/// (cos 2πt, sin 2πt) for t = k / 2^24, k < 2^24. The quadrant q = round(4t) is split off in
/// integers, leaving x = 2π(t − q/4) in [−π/4, π/4] for Taylor polynomials whose first omitted
/// terms are below 2e-9.
@inline(__always)
func cosSin2Pi(_ k: Words) -> (Floats, Floats) {
    let q = (k &+ (1 << 21)) &>> 22                                    // 0...4
    let d = SIMD8<Int32>(truncatingIfNeeded: k) &- SIMD8<Int32>(truncatingIfNeeded: q &<< 22)
    let x = Floats(d) * Float(6.28318530717959 * 0x1p-24)             // exact scaling by 2^-24
    let x2 = x * x
    var sn = x2 * Float(1.0 / 362880) - Float(1.0 / 5040)
    sn = sn * x2 + Float(1.0 / 120)
    sn = sn * x2 - Float(1.0 / 6)
    sn = (sn * x2 + 1) * x
    var cs = x2 * Float(-1.0 / 3628800) + Float(1.0 / 40320)
    cs = cs * x2 - Float(1.0 / 720)
    cs = cs * x2 + Float(1.0 / 24)
    cs = cs * x2 - 0.5
    cs = cs * x2 + 1
    // Rotate by q quarter turns, in bits: odd q swaps cos and sin; cos is negated in quadrants
    // 1 and 2, sin in 2 and 3.
    let sb = unsafeBitCast(sn, to: Words.self), cb = unsafeBitCast(cs, to: Words.self)
    let swap = 0 &- (q & 1)
    let c = (cb & ~swap) | (sb & swap), s = (sb & ~swap) | (cb & swap)
    let negC = ((q ^ (q &>> 1)) & 1) &<< 31, negS = ((q &>> 1) & 1) &<< 31
    return (unsafeBitCast(c ^ negC, to: Floats.self), unsafeBitCast(s ^ negS, to: Floats.self))
}
