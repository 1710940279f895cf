import Testing
import PRGEKernels
#if canImport(Glibc)
import Glibc
#endif

/// prge_rms_norm, prge_swiglu and prge_rope (ops.c) against references, on both paths, and bit
/// for bit the same for any thread count. u = 2⁻²⁴.
///   RMSNorm: the sum of squares has n+4 roundings at most, the rest a handful:
///            |out − ref| ≤ (n/2 + 8)·u·|ref| (the square root halves the relative error).
///   SwiGLU:  e^x within 2 ulp, then +, /, · one rounding each: |out − ref| ≤ 8·u·|ref|, plus
///            1e-30 absolute: below g ≈ −88.7, e^−g overflows and silu(g) (< 1e-36) becomes −0.
///   RoPE:    exact: each product rounded, then one sum, as the formula in fp32 gives.
@Suite struct OpsKernelTests {
    static let modes = [Int32(0), Int32(PRGE_MM_GENERIC)]

    static func pools() -> [OpaquePointer?] { [prge_pool_create(1), prge_pool_create(2), prge_pool_create(3)] }

    @Test(arguments: [1, 15, 16, 17, 576, 1000])
    func rmsNormMatchesReference(_ n: Int) {
        var rng = MatmulTests.RNG(s: UInt64(n) | 1)
        let rows = 37, ld = n + 3, eps: Float = 1e-5
        let x = (0..<(rows * ld)).map { _ in rng.float() * 4 }, w = (0..<n).map { _ in rng.float() }
        let ps = Self.pools()
        defer { ps.forEach(prge_pool_free) }
        let u = 1.0 / Double(1 << 24)
        for mode in Self.modes {
            var outs: [[Float]] = []
            for p in ps {
                var out = [Float](repeating: 7, count: rows * ld)
                prge_rms_norm(p, mode, x, Int64(ld), w, &out, Int64(ld), Int64(rows), Int64(n), eps)
                outs.append(out)
            }
            var bad = 0
            for r in 0..<rows {
                let ss = (0..<n).reduce(0.0) { $0 + Double(x[r * ld + $1]) * Double(x[r * ld + $1]) }
                let inv = 1 / (ss / Double(n) + Double(eps)).squareRoot()
                for i in 0..<n {
                    let want = Double(x[r * ld + i]) * inv * Double(w[i])
                    if !(abs(Double(outs[1][r * ld + i]) - want) <= (Double(n) / 2 + 8) * u * abs(want) + 1e-30) { bad += 1 }
                }
                for i in n..<ld where outs[1][r * ld + i] != 7 { bad += 1 }   // padding untouched
            }
            #expect(bad == 0, "n \(n) mode \(mode): \(bad) bad")
            #expect(outs[0].map(\.bitPattern) == outs[1].map(\.bitPattern) && outs[2].map(\.bitPattern) == outs[1].map(\.bitPattern),
                    "n \(n) mode \(mode): thread count changed bits")
        }
    }

    @Test func swigluMatchesReference() {
        var rng = MatmulTests.RNG(s: 99)
        // Ordinary activations, the whole range of e^x and its ends.
        var g = (0..<40_000).map { _ in rng.float() * 12 } + (0..<4000).map { Float($0 - 2000) * 0.05 }
        g += [0, -0.0, 1e-30, -1e-30, 80, 88, 88.7, 89, 90, 104, 200, -80, -87, -88.7, -89, -104, -200,
              .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        let up = g.indices.map { _ in rng.float() + 1.5 }
        let ps = Self.pools()
        defer { ps.forEach(prge_pool_free) }
        for mode in Self.modes {
            var outs: [[Float]] = []
            for p in ps {
                var gate = g
                prge_swiglu(p, mode, &gate, up, Int64(g.count))
                outs.append(gate)
            }
            var bad = 0, first = ""
            for i in g.indices {
                let x = Double(g[i])
                let want = x / (1 + exp(-x)) * Double(up[i])
                let got = Double(outs[1][i])
                let ok = got == want || abs(got - want) <= 8 / Double(1 << 24) * abs(want) + 1e-30
                if !ok { if bad == 0 { first = "g \(g[i]): got \(got) want \(want)" }; bad += 1 }
            }
            #expect(bad == 0, "mode \(mode): \(bad) bad, \(first)")
            #expect(outs[0].map(\.bitPattern) == outs[1].map(\.bitPattern) && outs[2].map(\.bitPattern) == outs[1].map(\.bitPattern),
                    "mode \(mode): thread count changed bits")
        }
    }

    /// (heads, head_dim, half): the reference model's q (9 × 64, all 32 pairs), a partial rotation
    /// with a tail of pairs (3 of 4), and one pair.
    @Test(arguments: [(9, 64, 32), (3, 8, 3), (2, 2, 1)])
    func ropeMatchesFormula(_ shape: (Int, Int, Int)) {
        let (heads, hd, half) = shape
        var rng = MatmulTests.RNG(s: UInt64(hd * 31 + half))
        let T = 5, rows = 13, ld = heads * hd + 2               // rows 5..12 are copies at T's positions
        let x = (0..<(rows * ld)).map { _ in rng.float() * 3 }
        let cs = (0..<(T * half)).map { _ in rng.float() }, sn = (0..<(T * half)).map { _ in rng.float() }
        var want = x
        for r in 0..<rows {
            for h in 0..<heads {
                for i in 0..<half {
                    let e = r * ld + h * hd + 2 * i, c = cs[(r % T) * half + i], s = sn[(r % T) * half + i]
                    let a = x[e], b = x[e + 1]
                    want[e] = a * c - b * s
                    want[e + 1] = a * s + b * c
                }
            }
        }
        let ps = Self.pools()
        defer { ps.forEach(prge_pool_free) }
        for mode in Self.modes {
            for p in ps {
                var out = x
                prge_rope(p, mode, &out, Int64(ld), Int64(rows), Int64(T), Int64(heads), Int64(hd), Int64(half), cs, sn)
                #expect(out.map(\.bitPattern) == want.map(\.bitPattern), "\(shape) mode \(mode): differs from the formula")
            }
        }
    }
}
