import Testing
import Dispatch
@testable import PRGE
import PRGEKernels
#if canImport(Glibc)
import Glibc
#endif

/// The counter-based generator: Philox known answers, the documented stream layout, range and
/// thread independence, and the distribution (fixed seeds, so the statistical checks are
/// deterministic; tolerances are ≥ 4 standard errors of each statistic).
@Suite struct CounterRNGTests {
    /// Random123's kat_vectors for philox4x32 with 10 rounds: counter, key → output.
    @Test func philoxKnownAnswers() {
        let cases: [(SIMD4<UInt32>, UInt32, UInt32, SIMD4<UInt32>)] = [
            (SIMD4(0, 0, 0, 0), 0, 0, SIMD4(0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8)),
            (SIMD4(repeating: 0xffff_ffff), 0xffff_ffff, 0xffff_ffff, SIMD4(0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd)),
            (SIMD4(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), 0xa409_3822, 0x299f_31d0,
             SIMD4(0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1)),
        ]
        for (ctr, k0, k1, expected) in cases { #expect(philox4x32_10(ctr, k0, k1) == expected) }
    }

    /// The words of element `e` of a stream, computed one block at a time from the layout in
    /// CounterRNG.swift's header (independently of the 8-wide bulk path).
    static func referenceWord(_ key: RNGKey, _ e: Int) -> (word: UInt32, block: SIMD4<UInt32>, lane: Int) {
        let s = philox4x32_10(SIMD4(UInt32(truncatingIfNeeded: key.step), UInt32(truncatingIfNeeded: key.step >> 32), key.query, key.tensor),
                              UInt32(truncatingIfNeeded: key.seed), UInt32(truncatingIfNeeded: key.seed >> 32))
        let block = UInt64(e / 32 * 8 + e % 8), lane = e % 32 / 8
        let w = philox4x32_10(SIMD4(UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: block >> 32), s[2], s[3]), s[0], s[1])
        return (w[lane], w, lane)
    }

    static func fill(_ n: Int, _ key: RNGKey, start: Int = 0, uniform: Bool = false) -> [Float] {
        var out = [Float](repeating: .nan, count: n)
        out.withUnsafeMutableBufferPointer {
            if uniform { fillUniform(into: $0, key: key, start: start, lo: 0, hi: 1) } else { fillNormal(into: $0, key: key, start: start) }
        }
        return out
    }

    static let key = RNGKey(seed: 0x0123_4567_89ab_cdef, step: 42, query: 3, tensor: 17)

    @Test func uniformFollowsTheDocumentedLayout() {
        // Starts inside a batch, and far out where the block index needs its high word.
        for start in [0, 5, 1 << 35 | 3] {
            let u = Self.fill(100, Self.key, start: start, uniform: true)
            for i in 0..<100 {
                #expect(u[i] == Float(Self.referenceWord(Self.key, start + i).word >> 8) * 0x1p-24, "element \(start + i)")
            }
        }
    }

    @Test func normalsAreBoxMullerOfTheDocumentedWords() {
        let n = 4096
        let z = Self.fill(n, Self.key)
        var worst = 0.0
        for e in 0..<n {
            let (_, w, lane) = Self.referenceWord(Self.key, e)
            let pair = lane / 2 * 2
            let u = Double((w[pair] >> 8) + 1) * 0x1p-24, t = Double(w[pair + 1] >> 8) * 0x1p-24
            let r = (-2 * log(u)).squareRoot()
            let expected = lane % 2 == 0 ? r * cos(2 * Double.pi * t) : r * sin(2 * Double.pi * t)
            worst = max(worst, abs(Double(z[e]) - expected))
        }
        // Float polynomials against libm in Double: a few Float ulps of values up to 5.8.
        #expect(worst < 5e-6, "max |ours − libm Box–Muller| = \(worst)")
    }

    @Test func deterministicAndKeyed() {
        let a = Self.fill(1000, Self.key)
        #expect(a.map(\.bitPattern) == Self.fill(1000, Self.key).map(\.bitPattern))
        var others: [RNGKey] = []
        for change in 0..<4 {
            var k = Self.key
            switch change {
            case 0: k.seed &+= 1
            case 1: k.step &+= 1
            case 2: k.query &+= 1
            default: k.tensor &+= 1
            }
            others.append(k)
        }
        others.append(.loraInit(seed: Self.key.seed, tensor: Self.key.tensor))
        for k in others { #expect(Self.fill(1000, k) != a, "\(k) repeats the stream of \(Self.key)") }
    }

    /// rng.c's AVX-512 path (two batches per zmm) and its portable path give the same bits,
    /// for both kinds, at batch boundaries, odd offsets and where the block index crosses 2^32
    /// (element 2^34: block 2^32) inside a 16-block vector.
    @Test func simdAndPortablePathsAgree() {
        for start in [0, 5, 31, 64, 1 << 35 | 3, (1 << 34) - 40] {
            for kind in [PRGE_RNG_NORMAL, PRGE_RNG_UNIFORM] {
                var a = [Float](repeating: .nan, count: 777), b = a
                a.withUnsafeMutableBufferPointer { rngFill(Int32(kind), $0, Self.key, start, -0.3, 0.7) }
                b.withUnsafeMutableBufferPointer { rngFill(Int32(kind), $0, Self.key, start, -0.3, 0.7, mode: Int32(PRGE_MM_GENERIC)) }
                #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "start \(start), kind \(kind)")
            }
        }
    }

    @Test func rangeSplitDoesNotMatter() {
        let whole = Self.fill(1000, Self.key, start: 13)
        var pieces: [Float] = []
        var at = 13
        for len in [1, 6, 25, 32, 64, 100, 3, 769] {
            pieces += Self.fill(len, Self.key, start: at)
            at += len
        }
        #expect(pieces.map(\.bitPattern) == whole.map(\.bitPattern))
    }

    @Test func threadCountDoesNotMatter() {
        let n = 100_003
        let one = Self.fill(n, Self.key)
        for threads in [2, 3, 8] {
            var many = [Float](repeating: .nan, count: n)
            many.withUnsafeMutableBufferPointer { buf in
                nonisolated(unsafe) let base = buf.baseAddress!   // threads write disjoint ranges
                let chunk = (n + threads - 1) / threads
                DispatchQueue.concurrentPerform(iterations: threads) { t in
                    let lo = t * chunk, hi = min(n, lo + chunk)
                    fillNormal(into: UnsafeMutableBufferPointer(start: base + lo, count: hi - lo), key: Self.key, start: lo)
                }
            }
            #expect(many.map(\.bitPattern) == one.map(\.bitPattern), "\(threads) threads")
        }
    }

    @Test func normalMoments() {
        let n = 1 << 20
        let z = Self.fill(n, RNGKey(seed: 7, step: 0, query: 0, tensor: 0)).map(Double.init)
        let mean = z.reduce(0, +) / Double(n)
        let m2 = z.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        let m3 = z.reduce(0) { $0 + pow($1 - mean, 3) } / Double(n)
        let m4 = z.reduce(0) { $0 + pow($1 - mean, 4) } / Double(n)
        // Standard errors at n = 2^20: mean 0.001, variance 0.0014, skew 0.0024, kurtosis 0.0048.
        #expect(abs(mean) < 0.005)
        #expect(abs(m2 - 1) < 0.007)
        #expect(abs(m3 / pow(m2, 1.5)) < 0.015)
        #expect(abs(m4 / (m2 * m2) - 3) < 0.03)
        // Normal probabilities of |z| < 1, 2, 3 (standard errors ≤ 0.0005).
        for (k, p) in [(1.0, 0.682689), (2.0, 0.954500), (3.0, 0.997300)] {
            let frac = Double(z.filter { abs($0) < k }.count) / Double(n)
            #expect(abs(frac - p) < 0.002, "P(|z| < \(k)) = \(frac)")
        }
        #expect(z.allSatisfy { $0.isFinite && abs($0) <= 5.78 })
        // Neighbours, and the cos/sin pair sharing a radius, are uncorrelated.
        for lag in [1, 8] {
            let c = zip(z, z.dropFirst(lag)).reduce(0) { $0 + $1.0 * $1.1 } / Double(n - lag)
            #expect(abs(c) < 0.005, "lag-\(lag) correlation \(c)")
        }
    }

    @Test func uniformRangeAndMean() {
        let n = 1 << 18
        var u = [Float](repeating: 0, count: n)
        u.withUnsafeMutableBufferPointer { fillUniform(into: $0, key: Self.key, start: 0, lo: -0.25, hi: 0.25) }
        #expect(u.allSatisfy { $0 >= -0.25 && $0 <= 0.25 })
        let mean = u.reduce(0.0) { $0 + Double($1) } / Double(n)
        let variance = u.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n)
        #expect(abs(mean) < 0.002)                       // standard error 0.00028
        #expect(abs(variance - 0.25 * 0.25 / 3) < 0.0005) // 1/48 = 0.0208
    }

    @Test func emptyFillIsANoOp() {
        var none: [Float] = []
        none.withUnsafeMutableBufferPointer { fillNormal(into: $0, key: Self.key, start: 0) }
        #expect(none.isEmpty)
    }
}
