import Testing
import PRGEKernels
#if canImport(Glibc)
import Glibc
#endif

/// prge_attention (attention.c) against a float64 reference, on both paths; bit for bit the same
/// for any thread count and whether a row runs in a prefill or in a KV-cache continuation.
///
/// Error bound per element (u = 2⁻²⁴, n = the row's keys): a score is off by at most
/// δ = (head_dim + 4)·u·scale·max_j Σ_d |q_d·k_jd| (dot product, scale, − max), so each
/// normalized weight p_j by a relative 2δ + (n + 8)·u (e^x within 2 ulp, the sum of n terms, the
/// division), and the P·V sum adds (n + 2)·u: |out_d − ref_d| ≤ (2δ + (2n + 12)·u)·Σ_j p_j·|v_jd|.
@Suite struct AttentionKernelTests {
    struct Case {
        let lens: [Int], p0: Int, heads: Int, kvHeads: Int, hd: Int
        var ldq: Int { heads * hd + 3 }
        var ldkv: Int { kvHeads * hd + 5 }
        var ldo: Int { heads * hd + 2 }
        var scale: Float { 1 / Float(hd).squareRoot() }
        /// Sequence s: query rows qRow[s] ..< qRow[s] + lens[s], keys kvRow[s] ..< kvRow[s] + p0 + lens[s].
        var qRow: [Int] { lens.indices.map { lens[..<$0].reduce(0, +) } }
        var kvRow: [Int] { lens.indices.map { lens[..<$0].reduce(0, +) + $0 * p0 } }
        let q: [Float], k: [Float], v: [Float]

        init(lens: [Int], p0: Int, heads: Int, kvHeads: Int, hd: Int, seed: UInt64) {
            self.lens = lens; self.p0 = p0; self.heads = heads; self.kvHeads = kvHeads; self.hd = hd
            var rng = MatmulTests.RNG(s: seed | 1)
            let rows = lens.reduce(0, +), kvRows = rows + lens.count * p0
            q = (0..<(rows * (heads * hd + 3))).map { _ in rng.float() * 2 }
            k = (0..<(kvRows * (kvHeads * hd + 5))).map { _ in rng.float() * 2 }
            v = (0..<(kvRows * (kvHeads * hd + 5))).map { _ in rng.float() }
        }

        func run(_ pool: OpaquePointer?, mode: Int32) -> [Float] {
            var out = [Float](repeating: 7, count: lens.reduce(0, +) * ldo)
            prge_attention(pool, mode, q, Int64(ldq), k, v, Int64(ldkv), &out, Int64(ldo),
                           qRow.map(Int64.init), kvRow.map(Int64.init), lens.map(Int64.init), Int64(lens.count),
                           Int64(p0), Int64(heads), Int64(kvHeads), Int64(hd), scale)
            return out
        }

        /// Elements outside the bound (padding must stay 7), with the first one described.
        func check(_ out: [Float]) -> (bad: Int, first: String) {
            let u = 1.0 / Double(1 << 24), sc = Double(scale)
            var bad = 0, first = ""
            func fail(_ what: String) { if bad == 0 { first = what }; bad += 1 }
            for s in lens.indices {
                for t in 0..<lens[s] {
                    let qr = (qRow[s] + t) * ldq, orow = (qRow[s] + t) * ldo, n = p0 + t + 1
                    for h in 0..<heads {
                        let kvc = (h / (heads / kvHeads)) * hd
                        var score = [Double](repeating: 0, count: n), mag = 0.0
                        for j in 0..<n {
                            let kr = (kvRow[s] + j) * ldkv + kvc
                            var dot = 0.0, m = 0.0
                            for d in 0..<hd {
                                let p = Double(q[qr + h * hd + d]) * Double(k[kr + d])
                                dot += p; m += abs(p)
                            }
                            score[j] = sc * dot; mag = max(mag, sc * m)
                        }
                        let mx = score.max()!
                        let e = score.map { exp($0 - mx) }, sum = e.reduce(0, +)
                        let delta = Double(hd + 4) * u * mag
                        for d in 0..<hd {
                            var want = 0.0, size = 0.0
                            for j in 0..<n {
                                let vj = Double(v[(kvRow[s] + j) * ldkv + kvc + d]), p = e[j] / sum
                                want += p * vj; size += p * abs(vj)
                            }
                            let got = Double(out[orow + h * hd + d])
                            let tol = (2 * delta + Double(2 * n + 12) * u) * size + 1e-30
                            if !(abs(got - want) <= tol) { fail("seq \(s) row \(t) head \(h) dim \(d): got \(got) want \(want) tol \(tol)") }
                        }
                    }
                    for i in (heads * hd)..<ldo where out[orow + i] != 7 { fail("seq \(s) row \(t): padding \(i) written") }
                }
            }
            return (bad, first)
        }
    }

    static let modes = [Int32(0), Int32(PRGE_MM_GENERIC)]

    // Ragged prefills (rows around the 16-row lane groups and 32-row tasks), KV-cache
    // continuations and generation (p0 > 0), head_dim below, at and above one 64-float chunk.
    static let cases: [(lens: [Int], p0: Int, heads: Int, kvHeads: Int, hd: Int)] = [
        ([1, 15, 16, 17, 33, 70], 0, 9, 3, 64),
        ([5, 1, 40], 37, 9, 3, 64),
        ([1], 100, 9, 3, 64),
        ([3, 40], 21, 4, 2, 40),
        ([20, 9], 0, 2, 1, 80),
    ]

    @Test(arguments: cases.indices)
    func matchesReferenceForAnyThreads(_ i: Int) {
        let cs = Self.cases[i]
        let c = Case(lens: cs.lens, p0: cs.p0, heads: cs.heads, kvHeads: cs.kvHeads, hd: cs.hd, seed: UInt64(i) &* 0x9E37_79B9 &+ 3)
        let pools = [prge_pool_create(1), prge_pool_create(2), prge_pool_create(3)]
        defer { pools.forEach(prge_pool_free) }
        for mode in Self.modes {
            let out = c.run(pools[1], mode: mode)
            let (bad, first) = c.check(out)
            #expect(bad == 0, "case \(i) mode \(mode): \(bad) bad, \(first)")
            for p in [pools[0], pools[2]] {
                #expect(c.run(p, mode: mode).map(\.bitPattern) == out.map(\.bitPattern), "case \(i) mode \(mode): thread count changed bits")
            }
        }
    }

    /// Rows m ..< n of a sequence continued from a cache of m rows (p0 = m) get the bits the
    /// prefill of all n rows gives them: a row's result does not depend on its block.
    @Test func continuationHasPrefillBits() {
        let n = 70
        let c = Case(lens: [n], p0: 0, heads: 9, kvHeads: 3, hd: 64, seed: 17)
        let pool = prge_pool_create(2)
        defer { prge_pool_free(pool) }
        for mode in Self.modes {
            let full = c.run(pool, mode: mode)
            for m in [1, 16, 31, 45, 69] {
                var part = [Float](repeating: 7, count: (n - m) * c.ldo)
                c.q.withUnsafeBufferPointer { q in
                    prge_attention(pool, mode, q.baseAddress! + m * c.ldq, Int64(c.ldq), c.k, c.v, Int64(c.ldkv),
                                   &part, Int64(c.ldo), [0], [0], [Int64(n - m)], 1, Int64(m),
                                   9, 3, 64, c.scale)
                }
                let differ = zip(part, full[(m * c.ldo)...]).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differ == 0, "mode \(mode): continuation from \(m): \(differ) elements differ")
            }
        }
    }
}
