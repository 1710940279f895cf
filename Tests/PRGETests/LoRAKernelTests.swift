import Testing
import PRGEKernels
@testable import PRGE

/// prge_lora_b (the B term of all P-RGE copies in one call) against a float64 reference.
///
/// Error bound per element (u = 2⁻²⁴): the panel element b + e·z is rounded once (fused) and the
/// length-r dot product and the final y + s·acc add at most 1.5·(r+4)·u more, so
/// |y − ref| ≤ (r+6)·u·s·Σ_j |h_j·(b + e·z)_j| + 2u·|ref|.
/// Results must not depend on the thread count or on how many copies share the call.
@Suite struct LoRAKernelTests {
    struct Streams { let seed: UInt64, step: UInt64, tensor: UInt32 }

    static let normal: prge_normal_fn = { ctx, query, start, count, out in
        let s = ctx!.assumingMemoryBound(to: Streams.self).pointee
        fillNormal(into: UnsafeMutableBufferPointer(start: out, count: Int(count)),
                   key: RNGKey(seed: s.seed, step: s.step, query: UInt32(query), tensor: s.tensor), start: Int(start))
    }

    struct Case {
        let N: Int, r: Int, T: Int
        let query: [Int32], e: [Float]
        var copies: Int { query.count }
        var ldh: Int { r + 2 }
        var ldy: Int { N + 3 }
        let H: [Float], B: [Float], Y0: [Float]
        let s: Float = 2

        init(N: Int, r: Int, T: Int, query: [Int32], e: [Float], seed: UInt64) {
            self.N = N; self.r = r; self.T = T; self.query = query; self.e = e
            var rng = MatmulTests.RNG(s: seed | 1)
            H = (0..<(query.count * T * (r + 2))).map { _ in rng.float() }
            B = (0..<(N * r)).map { _ in rng.float() * 0.1 }
            Y0 = (0..<(query.count * T * (N + 3))).map { _ in rng.float() }
        }

        /// Runs the kernel on copies `range` only (their rows of H and Y).
        func run(_ pool: OpaquePointer?, mode: Int32, copies range: Range<Int>? = nil) -> [Float] {
            let cs = range ?? 0..<copies
            var y = Array(Y0[(cs.lowerBound * T * ldy)..<(cs.upperBound * T * ldy)])
            let h = Array(H[(cs.lowerBound * T * ldh)..<(cs.upperBound * T * ldh)])
            let q = Array(query[cs]), ee = Array(e[cs])
            withTerm(h, q, ee) { t in prge_lora_b(pool, mode, t, &y, Int64(ldy), Int64(N)) }
            return y
        }

        /// The kernels' description of this case's term over H rows `h` and copies (q, e).
        func withTerm(_ h: [Float], _ q: [Int32], _ e: [Float], _ body: (UnsafePointer<prge_lora_term>) -> Void) {
            var streams = Streams(seed: 5, step: 9, tensor: 3)
            h.withUnsafeBufferPointer { hp in
                B.withUnsafeBufferPointer { bp in
                    q.withUnsafeBufferPointer { qp in
                        e.withUnsafeBufferPointer { ep in
                            withUnsafeMutablePointer(to: &streams) { sp in
                                var t = prge_lora_term(H: hp.baseAddress, ldh: Int64(ldh), B: bp.baseAddress, r: Int64(r), T: Int64(T),
                                                       copies: Int64(q.count), query: qp.baseAddress, e: ep.baseAddress,
                                                       normal: LoRAKernelTests.normal, normal_ctx: UnsafeMutableRawPointer(sp), s: s)
                                body(&t)
                            }
                        }
                    }
                }
            }
        }

        func z(_ query: Int32) -> [Float] {
            var z = [Float](repeating: 0, count: N * r)
            z.withUnsafeMutableBufferPointer {
                fillNormal(into: $0, key: RNGKey(seed: 5, step: 9, query: UInt32(query), tensor: 3), start: 0)
            }
            return z
        }

        /// Elements outside the bound, with the first one described.
        func check(_ y: [Float]) -> (bad: Int, first: String) {
            let u = 1.0 / Double(1 << 24)
            var bad = 0, first = ""
            for c in 0..<copies {
                let zc = z(query[c])
                for t in 0..<T {
                    let m = c * T + t
                    for n in 0..<ldy {
                        let got = Double(y[m * ldy + n])
                        var want = Double(Y0[m * ldy + n]), tol = 0.0
                        if n < N {
                            var acc = 0.0, mag = 0.0
                            for j in 0..<r {
                                let p = Double(H[m * ldh + j]) * (Double(B[n * r + j]) + Double(e[c]) * Double(zc[n * r + j]))
                                acc += p; mag += abs(p)
                            }
                            want += Double(s) * acc
                            tol = Double(r + 6) * u * Double(s) * mag + 2 * u * abs(want) + 1e-30
                        }
                        if !(abs(got - want) <= tol) {
                            if bad == 0 { first = "copy \(c) row \(t) col \(n): got \(got) want \(want) tol \(tol)" }
                            bad += 1
                        }
                    }
                }
            }
            return (bad, first)
        }
    }

    static let cases: [(N: Int, r: Int, T: Int, copies: Int)] = [
        (1, 1, 1, 1), (17, 3, 5, 2), (32, 16, 13, 8), (45, 16, 29, 3), (200, 5, 7, 8), (576, 16, 12, 8),
    ]

    @Test(arguments: cases.indices)
    func matchesReferenceForAnyThreadsAndCopies(_ i: Int) {
        let (N, r, T, copies) = Self.cases[i]
        // P-RGE's layout (+εz_0 … , −εz_0 …) with an unperturbed copy (e = 0) where there is room.
        let q = (0..<copies).map { Int32($0 % max(copies / 2, 1)) }
        let e = (0..<copies).map { k -> Float in copies > 2 && k == copies - 1 ? 0 : (k < copies / 2 ? 0.01 : -0.01) }
        let c = Case(N: N, r: r, T: T, query: q, e: e, seed: UInt64(i) &* 0x9E37_79B9 &+ 11)
        let pools = [prge_pool_create(1), prge_pool_create(2), prge_pool_create(3)]
        defer { pools.forEach(prge_pool_free) }
        for mode in [Int32(0), Int32(PRGE_MM_GENERIC)] {
            let y = c.run(pools[1], mode: mode)
            let (bad, first) = c.check(y)
            #expect(bad == 0, "N\(N) r\(r) T\(T) copies \(copies) mode \(mode): \(bad) bad, \(first)")
            for p in [pools[0], pools[2]] {
                #expect(c.run(p, mode: mode).map(\.bitPattern) == y.map(\.bitPattern), "mode \(mode): thread count changed bits")
            }
            // One copy alone (sequential RGE) gets the bits it gets inside the fused call.
            for k in 0..<copies {
                let alone = c.run(pools[1], mode: mode, copies: k..<(k + 1))
                let inside = Array(y[(k * T * c.ldy)..<((k + 1) * T * c.ldy)])
                #expect(alone.map(\.bitPattern) == inside.map(\.bitPattern), "mode \(mode): copy \(k) alone differs")
            }
        }
    }

    /// A LoRA term riding on prge_matmul_multi (added inside the base product's tiles) gives the
    /// bits of the product followed by prge_lora_b, on every path: the panel path in each mode
    /// (M split into chunks or not), the small-M dot path and the portable one, with and without
    /// accumulate, and with the term's H computed by the same call (the stacked x·Aᵀ).
    @Test(arguments: [(M: 16, copies: 2), (M: 60, copies: 4), (M: 872, copies: 8)])
    func termInsideMatmulMatchesSeparateCall(_ shape: (M: Int, copies: Int)) {
        let q41 = MatmulTests.types.first { $0.name == "Q4_1" }!, f32 = MatmulTests.types.first { $0.name == "F32" }!
        let (M, copies) = shape, T = M / copies, N = 200, K = 64, r = 16
        var rng = MatmulTests.RNG(s: UInt64(M) | 1)
        let X = (0..<(M * K)).map { _ in rng.float() }
        let (w, rowBytes) = MatmulTests.randomW(q41, N: N, K: K, rng: &rng)
        let (a, aRowBytes) = MatmulTests.randomW(f32, N: r, K: K, rng: &rng)
        let q = (0..<copies).map { Int32($0 % max(copies / 2, 1)) }, e = (0..<copies).map { $0 < copies / 2 ? Float(0.05) : -0.05 }
        let c = Case(N: N, r: r, T: T, query: q, e: e, seed: 7)
        let pool = prge_pool_create(2)
        defer { prge_pool_free(pool) }
        for mode in [PRGE_MM_F32, PRGE_MM_BF16, PRGE_MM_INT8, PRGE_MM_F32 | PRGE_MM_GENERIC].map(Int32.init) {
            for accumulate in [false, true] {
                var H = [Float](repeating: 0, count: M * r), fused = Array(c.Y0[..<(M * c.ldy)]), apart = fused
                var Hb = H
                X.withUnsafeBufferPointer { xp in
                    w.withUnsafeBytes { wp in
                        a.withUnsafeBytes { ap in
                            // Separate: x·Aᵀ, then the base product, then prge_lora_b.
                            prge_matmul(pool, mode, xp.baseAddress, Int64(K), ap.baseAddress, f32.type, Int64(aRowBytes),
                                        &Hb, Int64(r), Int64(M), Int64(r), Int64(K), 0)
                            prge_matmul(pool, mode, xp.baseAddress, Int64(K), wp.baseAddress, q41.type, Int64(rowBytes),
                                        &apart, Int64(c.ldy), Int64(M), Int64(N), Int64(K), accumulate ? 1 : 0)
                            c.withTerm(Hb, q, e) { t in
                                var ct = t.pointee
                                ct.ldh = Int64(r)
                                prge_lora_b(pool, mode & Int32(PRGE_MM_GENERIC), &ct, &apart, Int64(c.ldy), Int64(N))
                            }
                            // Fused: one call, the term's H an output of the same call (listed after it).
                            H.withUnsafeMutableBufferPointer { hp in
                                c.withTerm([], q, e) { t in
                                    var ct = t.pointee
                                    ct.H = UnsafePointer(hp.baseAddress); ct.ldh = Int64(r)
                                    withUnsafePointer(to: &ct) { tp in
                                        fused.withUnsafeMutableBufferPointer { yp in
                                            let outs = [
                                                prge_mm_out(W: wp.baseAddress, wtype: q41.type, w_row_bytes: Int64(rowBytes), Y: yp.baseAddress,
                                                            ldy: Int64(c.ldy), N: Int64(N), accumulate: accumulate ? 1 : 0, lora: tp),
                                                prge_mm_out(W: ap.baseAddress, wtype: f32.type, w_row_bytes: Int64(aRowBytes), Y: hp.baseAddress,
                                                            ldy: Int64(r), N: Int64(r), accumulate: 0, lora: nil),
                                            ]
                                            prge_matmul_multi(pool, mode, xp.baseAddress, Int64(K), outs, 2, Int64(M), Int64(K))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                #expect(H.map(\.bitPattern) == Hb.map(\.bitPattern), "M \(M) mode \(mode): H differs")
                #expect(fused.map(\.bitPattern) == apart.map(\.bitPattern), "M \(M) mode \(mode) accumulate \(accumulate): fused term differs")
            }
        }
    }
}
