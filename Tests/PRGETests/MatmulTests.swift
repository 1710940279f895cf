import Testing
import PRGEKernels

/// prge_matmul against a float64 reference on W dequantized by prge_dequantize_row.
///
/// Error bounds (S = Σ_k |x_k·w_k|, u = 2⁻²⁴ the fp32 unit roundoff):
///   PRGE_MM_F32:  |y − ref| ≤ 1.5·(K+4)·u·S   (a length-K fp32 dot product; our fast dequantizer is
///                 the reference dequantizer's arithmetic, so W itself is exact)
///   PRGE_MM_BF16: |y − ref| ≤ (2⁻⁷ + 2⁻¹⁶ + 1.5·(K+4)·u)·S   (x and w each rounded to bf16: 8-bit
///                 significand, unit roundoff 2⁻⁸ each, so ≤ 2⁻⁷ + 2⁻¹⁶ per product, then fp32 sums)
///   PRGE_MM_INT8, where the int8 kernel runs (any quantized W: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K,
///                 M > 24, prge_matmul_int8() == 1):
///                 |y − ref| ≤ A + (c·K/32 + 4)·u·S₄, per 32-block b of k with dx_b = max|x|/127,
///                 c = 2 fused adds per block (4 for Q2_K, Q3_K, Q6_K, whose 16-element halves are scaled apart):
///                 A  = Σ_k dx_b·(1/2 + 2¹⁰u)·|w_k|   (x̂ = dx·q with q = round(x·fl(127/max)): |x − x̂| ≤
///                      dx·(1/2 + 3·127u) plus the rounding of dx; the test's dx is exact, within u of it)
///                 S₄ = Σ_k (|x_k| + dx_b)·(|d_k|·u_k + |m_k|)   (w = d·u + m, codes u; the fp32 part: Σ q_x·u is exact int32;
///                      per block one rounding each in d·dx, dx·Σq, and the chain of c·K/32 fused adds;
///                      the reference's own w = fl(d·q + m) adds one more u)
///                 Everywhere else int8 mode is bf16 mode where prge_matmul_bf16_pays(), else fp32
///                 mode, bit for bit; that is tested too.
/// Results are bit-identical for any thread count (each element is computed by one task in a fixed
/// order); that is tested too.
@Suite struct MatmulTests {
    struct TypeInfo: Sendable, CustomStringConvertible {
        let type: UInt32, name: String, blockElems: Int, blockBytes: Int
        let f16Offsets: [Int]     // offsets of f16 scales inside a block (made finite and small)
        var description: String { name }
    }

    static let types: [TypeInfo] = [
        TypeInfo(type: UInt32(PRGE_T_F32), name: "F32", blockElems: 1, blockBytes: 4, f16Offsets: []),
        TypeInfo(type: UInt32(PRGE_T_F16), name: "F16", blockElems: 1, blockBytes: 2, f16Offsets: [0]),
        TypeInfo(type: UInt32(PRGE_T_BF16), name: "BF16", blockElems: 1, blockBytes: 2, f16Offsets: []),
        TypeInfo(type: UInt32(PRGE_T_Q4_0), name: "Q4_0", blockElems: 32, blockBytes: 18, f16Offsets: [0]),
        TypeInfo(type: UInt32(PRGE_T_Q4_1), name: "Q4_1", blockElems: 32, blockBytes: 20, f16Offsets: [0, 2]),
        TypeInfo(type: UInt32(PRGE_T_Q5_0), name: "Q5_0", blockElems: 32, blockBytes: 22, f16Offsets: [0]),
        TypeInfo(type: UInt32(PRGE_T_Q5_1), name: "Q5_1", blockElems: 32, blockBytes: 24, f16Offsets: [0, 2]),
        TypeInfo(type: UInt32(PRGE_T_Q8_0), name: "Q8_0", blockElems: 32, blockBytes: 34, f16Offsets: [0]),
        TypeInfo(type: UInt32(PRGE_T_Q2_K), name: "Q2_K", blockElems: 256, blockBytes: 84, f16Offsets: [80, 82]),
        TypeInfo(type: UInt32(PRGE_T_Q3_K), name: "Q3_K", blockElems: 256, blockBytes: 110, f16Offsets: [108]),
        TypeInfo(type: UInt32(PRGE_T_Q4_K), name: "Q4_K", blockElems: 256, blockBytes: 144, f16Offsets: [0, 2]),
        TypeInfo(type: UInt32(PRGE_T_Q5_K), name: "Q5_K", blockElems: 256, blockBytes: 176, f16Offsets: [0, 2]),
        TypeInfo(type: UInt32(PRGE_T_Q6_K), name: "Q6_K", blockElems: 256, blockBytes: 210, f16Offsets: [208]),
    ]

    /// xorshift64*, deterministic.
    struct RNG {
        var s: UInt64
        mutating func next() -> UInt64 {
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27
            return s &* 2685821657736338717
        }
        mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }   // [-1, 1)
    }

    /// N random rows of K elements of type t (finite, modest scales), row stride returned.
    static func randomW(_ t: TypeInfo, N: Int, K: Int, rng: inout RNG) -> (bytes: [UInt8], rowBytes: Int) {
        let rowBytes = K / t.blockElems * t.blockBytes
        var w = [UInt8](repeating: 0, count: N * rowBytes)
        for i in w.indices { w[i] = UInt8(truncatingIfNeeded: rng.next() >> 32) }
        func put16(_ v: UInt16, _ at: Int) { w[at] = UInt8(v & 0xff); w[at + 1] = UInt8(v >> 8) }
        for n in 0..<N {
            let row = n * rowBytes
            switch t.name {
            case "F32":
                for k in 0..<K {
                    let b = rng.float().bitPattern
                    for j in 0..<4 { w[row + 4 * k + j] = UInt8((b >> (8 * UInt32(j))) & 0xff) }
                }
            case "F16": for k in 0..<K { put16(prge_f32_to_f16(rng.float()), row + 2 * k) }
            case "BF16": for k in 0..<K { put16(prge_f32_to_bf16(rng.float()), row + 2 * k) }
            default:
                for b in 0..<(K / t.blockElems) {
                    for off in t.f16Offsets {
                        put16(prge_f32_to_f16(0.02 * rng.float()), row + b * t.blockBytes + off)
                    }
                }
            }
        }
        return (w, rowBytes)
    }

    static func dequant(_ t: TypeInfo, _ w: [UInt8], rowBytes: Int, N: Int, K: Int) -> [Float] {
        var out = [Float](repeating: 0, count: N * K)
        w.withUnsafeBytes { wp in
            out.withUnsafeMutableBufferPointer { op in
                for n in 0..<N {
                    let rc = prge_dequantize_row(t.type, wp.baseAddress! + n * rowBytes,
                                                 op.baseAddress! + n * K, Int64(K))
                    precondition(rc == 0)
                }
            }
        }
        return out
    }

    /// The float64 product a·b and its error scale: ref[r, c] = Σ_j a[r, j]·b[j, c] and
    /// mag[r, c] = Σ_j |a[r, j]·b[j, c]|, a [rows, inner] with row stride lda, b[j, c] at
    /// j·bInner + c·bCol (so W [N, K] serves as Wᵀ or as W). Both [rows, cols].
    static func reference(_ a: [Float], lda: Int, rows: Int, inner: Int, cols: Int, b: [Float], bInner: Int,
                          bCol: Int) -> (ref: [Double], mag: [Double]) {
        var ref = [Double](repeating: 0, count: rows * cols), mag = ref
        for r in 0..<rows {
            for c in 0..<cols {
                var s = 0.0, m = 0.0
                for j in 0..<inner {
                    let p = Double(a[r * lda + j]) * Double(b[j * bInner + c * bCol])
                    s += p; m += abs(p)
                }
                ref[r * cols + c] = s; mag[r * cols + c] = m
            }
        }
        return (ref, mag)
    }

    /// Runs prge_matmul with strided X and Y (ldx = K+3, ldy = N+5; the padding must survive).
    static func run(_ pool: OpaquePointer?, mode: Int32, X: [Float], ldx: Int, w: [UInt8], t: TypeInfo,
                    rowBytes: Int, Y0: [Float], ldy: Int, M: Int, N: Int, K: Int, accumulate: Bool) -> [Float] {
        var Y = Y0
        X.withUnsafeBufferPointer { xp in
            w.withUnsafeBytes { wp in
                Y.withUnsafeMutableBufferPointer { yp in
                    prge_matmul(pool, mode, xp.baseAddress, Int64(ldx), wp.baseAddress, t.type, Int64(rowBytes),
                                yp.baseAddress, Int64(ldy), Int64(M), Int64(N), Int64(K), accumulate ? 1 : 0)
                }
            }
        }
        return Y
    }


    /// Checks every mode and path for one shape; returns nothing, records issues.
    static func check(_ t: TypeInfo, M: Int, N: Int, K: Int, seed: UInt64) {
        var rng = RNG(s: seed | 1)
        let (w, rowBytes) = randomW(t, N: N, K: K, rng: &rng)
        let wf = dequant(t, w, rowBytes: rowBytes, N: N, K: K)
        #expect(wf.allSatisfy { $0.isFinite && abs($0) < 1e4 }, "\(t) weights not finite")
        // One pool per check: a pool runs one prge_pool_run at a time and tests run in parallel.
        let pool1 = prge_pool_create(1), pool2 = prge_pool_create(2), pool3 = prge_pool_create(3)
        defer { prge_pool_free(pool1); prge_pool_free(pool2); prge_pool_free(pool3) }
        let ldx = K + 3, ldy = N + 5
        var X = [Float](repeating: 0, count: M * ldx)
        for i in X.indices { X[i] = rng.float() }
        var Yinit = [Float](repeating: 0, count: M * ldy)
        for i in Yinit.indices { Yinit[i] = rng.float() }
        // Reference and error scale in float64: X·Wᵀ, W [N, K] read as [K, N] with strides (1, K).
        let (ref, mag) = Self.reference(X, lda: ldx, rows: M, inner: K, cols: N, b: wf, bInner: 1, bCol: K)
        let u = 1.0 / Double(1 << 24)
        for mode in [Int32(PRGE_MM_F32), Int32(PRGE_MM_BF16)] {
            let rel = mode == Int32(PRGE_MM_F32) ? 1.5 * Double(K + 4) * u
                                                 : 1.0 / 128 + 1.0 / 65536 + 1.5 * Double(K + 4) * u
            for generic in [false, true] {
                let md = mode | (generic ? Int32(PRGE_MM_GENERIC) : 0)
                for accumulate in [false, true] {
                    let Y = run(pool2, mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit,
                                ldy: ldy, M: M, N: N, K: K, accumulate: accumulate)
                    let (bad, first) = outsideBound(Y, Yinit: Yinit, ldy: ldy, ref: ref, M: M, N: N, accumulate: accumulate) {
                        rel * mag[$0] + 1e-30
                    }
                    #expect(bad == 0, "\(t) M\(M) N\(N) K\(K) mode \(mode) generic \(generic) acc \(accumulate): \(bad) bad, \(first)")
                }
                // Thread count must not change a single bit.
                let y1 = run(pool1, mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit,
                             ldy: ldy, M: M, N: N, K: K, accumulate: false)
                let y2 = run(pool2, mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit,
                             ldy: ldy, M: M, N: N, K: K, accumulate: false)
                let y3 = run(pool3, mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit,
                             ldy: ldy, M: M, N: N, K: K, accumulate: false)
                #expect(y1.map(\.bitPattern) == y2.map(\.bitPattern), "\(t) M\(M) N\(N) K\(K) mode \(md): 1 vs 2 threads differ")
                #expect(y1.map(\.bitPattern) == y3.map(\.bitPattern), "\(t) M\(M) N\(N) K\(K) mode \(md): 1 vs 3 threads differ")
            }
        }
        checkInt8(t, w: w, rowBytes: rowBytes, X: X, ldx: ldx, Yinit: Yinit, ldy: ldy, ref: ref, M: M, N: N, K: K,
                  pools: [pool1, pool2, pool3])
    }

    /// Elements of Y ([M, ldy], N live columns) farther from (Yinit if accumulating) + ref than
    /// bound(m·N + n) + 2u·|want| (the final fp32 rounding), plus padding columns written; and the first.
    static func outsideBound(_ Y: [Float], Yinit: [Float], ldy: Int, ref: [Double], M: Int, N: Int, accumulate: Bool,
                             bound: (Int) -> Double) -> (Int, String) {
        let u = 1.0 / Double(1 << 24)
        var bad = 0, first = ""
        for m in 0..<M {
            for n in 0..<N {
                let want = (accumulate ? Double(Yinit[m * ldy + n]) : 0) + ref[m * N + n]
                let got = Double(Y[m * ldy + n]), tol = bound(m * N + n) + 2 * u * abs(want)
                if !(abs(got - want) <= tol) {
                    if bad == 0 { first = "m \(m) n \(n): got \(got) want \(want) tol \(tol)" }
                    bad += 1
                }
            }
            for n in N..<ldy where Y[m * ldy + n] != Yinit[m * ldy + n] {
                bad += 1; first = "padding written at m \(m) n \(n)"
            }
        }
        return (bad, first)
    }

    /// The types the int8 kernel multiplies as stored (one d, m per 32 weights).
    static func int8Coded(_ t: TypeInfo) -> Bool { t.blockElems > 1 }   // every quantized type
    /// The types scaled per 16 elements (two d, m per 32-block).
    static func int8Halves(_ t: TypeInfo) -> Bool { ["Q2_K", "Q3_K", "Q6_K"].contains(t.name) }
    /// What int8 mode computes where its kernel does not run: bf16 where it pays here, else fp32.
    static var int8Rest: Int32 { prge_matmul_bf16_pays() == 1 ? Int32(PRGE_MM_BF16) : Int32(PRGE_MM_F32) }

    /// PRGE_MM_INT8 on one shape: within the int8 bound where its kernel runs, else int8Rest's bits;
    /// bit-identical for 1, 2 and 3 threads either way.
    static func checkInt8(_ t: TypeInfo, w: [UInt8], rowBytes: Int, X: [Float], ldx: Int, Yinit: [Float], ldy: Int,
                          ref: [Double], M: Int, N: Int, K: Int, pools: [OpaquePointer?]) {
        let tol = int8Coded(t) ? int8Tolerance(t, w, rowBytes: rowBytes, X: X, ldx: ldx, M: M, N: N, K: K) : []
        for generic in [false, true] {
            let g = generic ? Int32(PRGE_MM_GENERIC) : 0
            let md = Int32(PRGE_MM_INT8) | g
            let kernel = int8Coded(t) && M > 24 && !generic && prge_matmul_int8() == 1
            let what = "\(t) M\(M) N\(N) K\(K) int8 generic \(generic)"
            for accumulate in [false, true] {
                let Y = run(pools[1], mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit, ldy: ldy,
                            M: M, N: N, K: K, accumulate: accumulate)
                let Yb = run(pools[1], mode: int8Rest | g, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes,
                             Y0: Yinit, ldy: ldy, M: M, N: N, K: K, accumulate: accumulate)
                if !kernel {
                    #expect(Y.map(\.bitPattern) == Yb.map(\.bitPattern), "\(what) acc \(accumulate): not the bits of mode \(int8Rest)")
                    continue
                }
                #expect(Y != Yb, "\(what) acc \(accumulate): the bits of mode \(int8Rest), the int8 kernel did not run")
                let (bad, first) = outsideBound(Y, Yinit: Yinit, ldy: ldy, ref: ref, M: M, N: N, accumulate: accumulate) { tol[$0] }
                #expect(bad == 0, "\(what) acc \(accumulate): \(bad) bad, \(first)")
            }
            let ys = pools.map { run($0, mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit, ldy: ldy,
                                     M: M, N: N, K: K, accumulate: false).map(\.bitPattern) }
            #expect(ys[0] == ys[1] && ys[0] == ys[2], "\(what): results depend on the thread count")
        }
    }

    /// d, m per 16 elements ([N, K/16]; the two halves of a 32-block agree but for Q6_K) and the
    /// unsigned code u per element (w = d·u + m) of the types the int8 kernels multiply as stored,
    /// read from the ggml block layouts: Q4_0 (m = −8d), Q4_1, Q5_0 (m = −16d), Q5_1, Q8_0 (u = q +
    /// 128, m = −128d), Q4_K and Q5_K (per 32-element sub-block: d·scale, −dmin·min), per 16:
    /// Q2_K (d·scale, −dmin·min), Q3_K (d·scale, m = −4·d·scale), Q6_K (d·scale, m = −32·d·scale).
    /// Checks d·u + m against prge_dequantize_row's weights.
    static func codeParts(_ t: TypeInfo, _ w: [UInt8], rowBytes: Int, N: Int, K: Int) -> (d: [Double], m: [Double], q: [Int]) {
        let nb = K / 32
        var d = [Double](repeating: 0, count: N * nb * 2), mm = d, q = [Int](repeating: 0, count: N * K)
        func f16(_ at: Int) -> Double { Double(prge_f16_to_f32(UInt16(w[at]) | UInt16(w[at + 1]) << 8)) }
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(w[at + $1]) << (8 * $1) } }
        for n in 0..<N {
            for b in 0..<nb {
                let row = n * rowBytes, i = 2 * (n * nb + b), e = n * K + b * 32
                switch t.name {
                case "Q2_K", "Q3_K":
                    // element l of 32-block j = 4h + k: bit pair k of q[32h + l] (Q3_K: bit j of
                    // hmask[l] above it, value − 4), scale 2j + l/16
                    let q3 = t.name == "Q3_K", s = row + b / 8 * t.blockBytes, j = b % 8, qs = s + (q3 ? 32 : 16) + 32 * (j / 4)
                    for half in 0..<2 {
                        let si = 2 * j + half
                        if q3 {   // 6-bit scale si: nibble si of bytes 0..7, bit pair si/4 of byte 8 + si%4, − 32
                            let sb = s + 96, lo = si < 8 ? Int(w[sb + si] & 0xf) : Int(w[sb + si - 8] >> 4)
                            let sc = (lo | Int(w[sb + 8 + si % 4] >> (2 * (si / 4)) & 3) << 4) - 32
                            d[i + half] = Double(Float(f16(s + 108)) * Float(sc)); mm[i + half] = -4 * d[i + half]
                        } else {
                            d[i + half] = Double(Float(f16(s + 80)) * Float(w[s + si] & 0xf))
                            mm[i + half] = -Double(Float(f16(s + 82)) * Float(w[s + si] >> 4))
                        }
                    }
                    for l in 0..<32 {
                        q[e + l] = Int(w[qs + l] >> (2 * (j % 4)) & 3) | (q3 ? Int(w[s + l] >> j & 1) << 2 : 0)
                    }
                case "Q6_K":
                    // element l of 32-block j: nibble k/2 of ql[l + 32(k%2)], bit pair k of qh[l],
                    // scale sc[2k + l/16], in 128-element half h (j = 4h + k)
                    let s = row + b / 8 * t.blockBytes, j = b % 8, h = j / 4, k = j % 4
                    let ql = s + 64 * h, qh = s + 128 + 32 * h, sc = s + 192 + 8 * h, dsb = Float(f16(s + 208))
                    for half in 0..<2 {
                        d[i + half] = Double(dsb * Float(Int8(bitPattern: w[sc + 2 * k + half])))
                        mm[i + half] = -32 * d[i + half]
                    }
                    for l in 0..<32 {
                        q[e + l] = Int(w[ql + l + 32 * (k % 2)] >> (4 * (k / 2)) & 0xf) | Int(w[qh + l] >> (2 * k) & 3) << 4
                    }
                case "Q4_K", "Q5_K":
                    let q5 = t.name == "Q5_K", s = row + b / 8 * t.blockBytes, j = b % 8, sc = s + 4
                    // 6-bit scale and min of sub-block j (ggml's get_scale_min_k4)
                    let (scale, mn) = j < 4 ? (Int(w[sc + j] & 63), Int(w[sc + j + 4] & 63))
                        : (Int(w[sc + j + 4] & 0xf) | Int(w[sc + j - 4] >> 6) << 4, Int(w[sc + j + 4] >> 4) | Int(w[sc + j] >> 6) << 4)
                    d[i] = Double(Float(f16(s)) * Float(scale)); mm[i] = -Double(Float(f16(s + 2)) * Float(mn))
                    let qs = s + (q5 ? 48 : 16) + 32 * (j / 2)
                    for l in 0..<32 {
                        q[e + l] = Int(j % 2 == 0 ? w[qs + l] & 0xf : w[qs + l] >> 4) | (q5 ? Int(w[s + 16 + l] >> j & 1) << 4 : 0)
                    }
                case "Q8_0":
                    let s = row + b * 34
                    d[i] = f16(s); mm[i] = -128 * d[i]
                    for l in 0..<32 { q[e + l] = Int(Int8(bitPattern: w[s + 2 + l])) + 128 }
                default:   // Q4_0, Q4_1, Q5_0, Q5_1
                    let hasM = t.name.hasSuffix("_1"), q5 = t.name.hasPrefix("Q5"), s = row + b * t.blockBytes
                    d[i] = f16(s); mm[i] = hasM ? f16(s + 2) : (q5 ? -16 : -8) * d[i]
                    let qh = q5 ? u32(s + 2 + (hasM ? 2 : 0)) : 0, qs = s + 2 + (hasM ? 2 : 0) + (q5 ? 4 : 0)
                    for l in 0..<16 {
                        q[e + l] = Int(w[qs + l] & 0xf) | (qh >> l & 1) << 4
                        q[e + l + 16] = Int(w[qs + l] >> 4) | (qh >> (l + 16) & 1) << 4
                    }
                }
                if !Self.int8Halves(t) { d[i + 1] = d[i]; mm[i + 1] = mm[i] }
            }
        }
        let wf = dequant(t, w, rowBytes: rowBytes, N: N, K: K)
        let worst = (0..<(N * K)).map { k -> Double in
            let i = k / 16, v = d[i] * Double(q[k]) + mm[i]
            return abs(v - Double(wf[k])) / (abs(d[i]) * Double(q[k]) + abs(mm[i]) + 1e-30)
        }.max() ?? 0
        #expect(worst <= 1.0 / Double(1 << 22), "\(t): d·u + m is not the dequantized weight (worst \(worst))")
        return (d, mm, q)
    }

    /// The int8 bound of every element (header comment): A + (c·K/32 + 4)·u·S₄, c = 2 (4 for Q6_K).
    static func int8Tolerance(_ t: TypeInfo, _ w: [UInt8], rowBytes: Int, X: [Float], ldx: Int, M: Int, N: Int,
                              K: Int) -> [Double] {
        let u = 1.0 / Double(1 << 24), nb = K / 32
        let (d, mm, q) = codeParts(t, w, rowBytes: rowBytes, N: N, K: K)
        var dx = [Double](repeating: 0, count: M * nb)
        for m in 0..<M {
            for b in 0..<nb { dx[m * nb + b] = (0..<32).map { abs(Double(X[m * ldx + b * 32 + $0])) }.max()! / 127 }
        }
        var tol = [Double](repeating: 0, count: M * N)
        for m in 0..<M {
            for n in 0..<N {
                var a = 0.0, s4 = 0.0
                for k in 0..<K {
                    let b = k / 32, db = d[(n * K + k) / 16], mb = mm[(n * K + k) / 16], e = dx[m * nb + b]
                    let qk = Double(q[n * K + k])
                    a += e * abs(db * qk + mb)
                    s4 += (abs(Double(X[m * ldx + k])) + e) * (abs(db) * qk + abs(mb))
                }
                tol[m * N + n] = a * (0.5 + 1024 * u) + Double((Self.int8Halves(t) ? 4 : 2) * nb + 4) * u * s4
            }
        }
        return tol
    }

    /// The int8 kernel on model-like Q4_1 weights (d > 0, m ≈ −8d, as ggml quantizes) and X with an
    /// outlier channel (×20, one in 64): within the int8 bound, not bf16's result, the same bits
    /// for any pool size; and the bound is tight enough to flag a kernel that drops the m term or
    /// scales a block by its neighbour's d.
    @Test(.enabled(if: prge_matmul_int8() == 1), arguments: [(31, 70, 576), (130, 192, 576), (64, 96, 1536)])
    func int8KernelQ4_1(_ shape: (Int, Int, Int)) {
        let (M, N, K) = shape, t = Self.types[4], nb = K / 32
        var rng = RNG(s: UInt64(M * N + K) | 1)
        var (w, rowBytes) = Self.randomW(t, N: N, K: K, rng: &rng)
        for blk in 0..<(N * nb) {
            let d = 0.001 + 0.003 * abs(Double(rng.float())), m = -d * (7.5 + Double(rng.float()))
            for (v, at) in [(d, 0), (m, 2)] {
                let h = prge_f32_to_f16(Float(v))
                w[blk * 20 + at] = UInt8(h & 0xff); w[blk * 20 + at + 1] = UInt8(h >> 8)
            }
        }
        let ldx = K + 3
        var X = [Float](repeating: 0, count: M * ldx)
        for i in X.indices { X[i] = rng.float() * (i % ldx % 64 == 7 ? 20 : 1) }
        let (d, mm, q) = Self.codeParts(t, w, rowBytes: rowBytes, N: N, K: K)
        let tol = Self.int8Tolerance(t, w, rowBytes: rowBytes, X: X, ldx: ldx, M: M, N: N, K: K)
        // Exact, m term dropped, d of the next block: Σ_k x_k·(d·q + m), Σ x·d·q, Σ x·(d'·q + m).
        var ref = [[Double]](repeating: [Double](repeating: 0, count: M * N), count: 3)
        for m in 0..<M {
            for n in 0..<N {
                var s = (0.0, 0.0, 0.0)
                for k in 0..<K {
                    let b = k / 32, x = Double(X[m * ldx + k]), qk = Double(q[n * K + k])
                    let db = d[(n * K + k) / 16], dn = d[2 * (n * nb + (b + 1) % nb)], mb = mm[(n * K + k) / 16]
                    s.0 += x * (db * qk + mb); s.1 += x * db * qk; s.2 += x * (dn * qk + mb)
                }
                ref[0][m * N + n] = s.0; ref[1][m * N + n] = s.1; ref[2][m * N + n] = s.2
            }
        }
        let pools = [prge_pool_create(1), prge_pool_create(2), prge_pool_create(3)]
        defer { pools.forEach { prge_pool_free($0) } }
        let ys = pools.map { Self.run($0, mode: Int32(PRGE_MM_INT8), X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes,
                                      Y0: [Float](repeating: 0, count: M * N), ldy: N, M: M, N: N, K: K, accumulate: false) }
        let outside = ref.map { r in (0..<(M * N)).filter { !(abs(Double(ys[1][$0]) - r[$0]) <= tol[$0]) }.count }
        #expect(outside[0] == 0, "M\(M) N\(N) K\(K): \(outside[0]) of \(M * N) outside the int8 bound")
        #expect(outside[1] > M * N / 2 && outside[2] > M * N / 2,
                "M\(M) N\(N) K\(K): the bound misses a wrong kernel (no m term \(outside[1]), wrong d \(outside[2]))")
        #expect(ys[0].map(\.bitPattern) == ys[1].map(\.bitPattern) && ys[0].map(\.bitPattern) == ys[2].map(\.bitPattern),
                "M\(M) N\(N) K\(K): results depend on the thread count")
        let yb = Self.run(pools[1], mode: Int32(PRGE_MM_BF16), X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes,
                          Y0: [Float](repeating: 0, count: M * N), ldy: N, M: M, N: N, K: K, accumulate: false)
        #expect(yb != ys[1], "M\(M) N\(N) K\(K): int8 mode gave bf16's result, its kernel did not run")
        // A NaN in X poisons its row only (the block's max would drop it; dx carries it).
        X[5] = .nan
        let yn = Self.run(pools[1], mode: Int32(PRGE_MM_INT8), X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes,
                          Y0: [Float](repeating: 0, count: M * N), ldy: N, M: M, N: N, K: K, accumulate: false)
        #expect(yn[0..<N].allSatisfy(\.isNaN) && yn[N...].elementsEqual(ys[1][N...]), "M\(M) N\(N) K\(K): NaN row")
    }

    @Test(arguments: types)
    func matchesReference(_ t: TypeInfo) {
        let Ks: [Int]
        switch t.blockElems {
        case 1: Ks = [1, 7, 33, 64, 100]
        case 32: Ks = [32, 96, 160]
        default: Ks = [256, 512]
        }
        // M around the small-M/panel switch (8) and the 14-row micro-kernel, N around 16/32/64.
        let shapes: [(Int, Int)] = [(1, 1), (1, 37), (3, 16), (4, 33), (8, 65), (9, 31), (14, 32), (15, 64), (29, 70)]
        var seed: UInt64 = 0x1234_5678 &+ UInt64(t.type) << 32
        for K in Ks {
            for (M, N) in shapes {
                seed &+= 0x9E37_79B9
                Self.check(t, M: M, N: N, K: K, seed: seed)
            }
        }
    }

    /// The reference model's shapes: several tasks per pool, M chunks, many 14-row blocks.
    @Test(arguments: [(100, 576, 576), (37, 192, 576), (130, 129, 1536)])
    func modelShapesQ4_1(_ shape: (Int, Int, Int)) {
        Self.check(Self.types[4], M: shape.0, N: shape.1, K: shape.2, seed: 77)
    }

    /// Stacked LoRA A's (f32 W of at most 64 rows) past the small-M path: the skinny products,
    /// X read in place, fp32 in every mode (N <= 8: dot products; N > 8: Wᵀ packed, blocks of 6
    /// rows); K off and on the 16-lane grid, N on both sides of 8 and off and on the 16-column
    /// grid, M off and on the 6-row block.
    @Test(arguments: [(25, 1, 7), (40, 6, 576), (33, 8, 100), (30, 9, 64), (100, 16, 33), (57, 2, 1536),
                      (31, 11, 100), (50, 17, 40), (97, 32, 576), (26, 48, 129), (61, 64, 23), (49, 33, 1536)])
    func skinnyF32(_ shape: (Int, Int, Int)) {
        Self.check(Self.types[0], M: shape.0, N: shape.1, K: shape.2, seed: 4242 &+ UInt64(shape.1))
    }

    @Test func tiedOutputShapeQ8_0() {
        Self.check(Self.types[7], M: 5, N: 1000, K: 576, seed: 99)
        Self.check(Self.types[7], M: 20, N: 1000, K: 576, seed: 98)
    }

    @Test func emptyShapes() {
        let pool2 = prge_pool_create(2)
        defer { prge_pool_free(pool2) }
        var Y: [Float] = [1, 2, 3, 4]
        let X: [Float] = [1, 1, 1, 1]
        let w = [UInt8](repeating: 0, count: 16)
        X.withUnsafeBufferPointer { xp in
            w.withUnsafeBytes { wp in
                Y.withUnsafeMutableBufferPointer { yp in
                    // M = 0 and N = 0: nothing written. K = 0: Y = 0 (or unchanged with accumulate).
                    prge_matmul(pool2, Int32(PRGE_MM_F32), xp.baseAddress, 1, wp.baseAddress, UInt32(PRGE_T_F32), 0, yp.baseAddress, 2, 0, 2, 1, 0)
                    prge_matmul(pool2, Int32(PRGE_MM_F32), xp.baseAddress, 1, wp.baseAddress, UInt32(PRGE_T_F32), 4, yp.baseAddress, 2, 2, 0, 1, 0)
                }
            }
        }
        #expect(Y == [1, 2, 3, 4])
        X.withUnsafeBufferPointer { xp in
            w.withUnsafeBytes { wp in
                Y.withUnsafeMutableBufferPointer { yp in
                    prge_matmul(pool2, Int32(PRGE_MM_BF16), xp.baseAddress, 1, wp.baseAddress, UInt32(PRGE_T_F32), 0, yp.baseAddress, 2, 2, 1, 0, 1)
                }
            }
        }
        #expect(Y == [1, 2, 3, 4])
        X.withUnsafeBufferPointer { xp in
            w.withUnsafeBytes { wp in
                Y.withUnsafeMutableBufferPointer { yp in
                    prge_matmul(pool2, Int32(PRGE_MM_BF16), xp.baseAddress, 1, wp.baseAddress, UInt32(PRGE_T_F32), 0, yp.baseAddress, 2, 2, 1, 0, 0)
                }
            }
        }
        #expect(Y == [0, 2, 0, 4])
    }

    /// prge_matmul_multi (one packed X, one region for several W) gives each Y the bits of its
    /// own prge_matmul call: 5 products (more than one region's 4), an empty one, accumulate mixed.
    @Test(arguments: [5, 100])
    func multiEqualsSingleCalls(_ M: Int) {
        let K = 96
        var rng = RNG(s: UInt64(M) | 1)
        let Ns = [70, 16, 0, 33, 130, 64]
        let ts = Ns.indices.map { $0 == 1 ? Self.types[0] : Self.types[4] }   // an f32 one, as LoRA A stacks are
        let ws = Ns.indices.map { Self.randomW(ts[$0], N: Ns[$0], K: K, rng: &rng) }
        let X = (0..<(M * K)).map { _ in rng.float() }
        let Y0 = Ns.map { N in (0..<(M * (N + 1))).map { _ in rng.float() } }
        let pool = prge_pool_create(2)
        defer { prge_pool_free(pool) }
        for mode in [Int32(PRGE_MM_F32), Int32(PRGE_MM_BF16), Int32(PRGE_MM_BF16 | PRGE_MM_GENERIC), Int32(PRGE_MM_INT8)] {
            let single = Ns.indices.map { i in
                Self.run(pool, mode: mode, X: X, ldx: K, w: ws[i].bytes, t: ts[i], rowBytes: ws[i].rowBytes, Y0: Y0[i],
                         ldy: Ns[i] + 1, M: M, N: Ns[i], K: K, accumulate: i % 2 == 1)
            }
            var Y = Y0
            let yp = Y.indices.map { i in UnsafeMutablePointer<Float>.allocate(capacity: max(Y[i].count, 1)) }
            defer { yp.forEach { $0.deallocate() } }
            for i in Y.indices { yp[i].initialize(from: Y[i], count: Y[i].count) }
            let wAll = ws.flatMap(\.bytes), offsets = ws.map(\.bytes.count).reduce(into: [0]) { $0.append($0.last! + $1) }
            wAll.withUnsafeBytes { wp in
                let outs = Ns.indices.map { i in
                    prge_mm_out(W: wp.baseAddress! + offsets[i], wtype: ts[i].type, w_row_bytes: Int64(ws[i].rowBytes), Y: yp[i],
                                ldy: Int64(Ns[i] + 1), N: Int64(Ns[i]), accumulate: i % 2 == 1 ? 1 : 0, lora: nil)
                }
                prge_matmul_multi(pool, mode, X, Int64(K), outs, Int32(outs.count), Int64(M), Int64(K))
            }
            for i in Y.indices { Y[i] = Array(UnsafeBufferPointer(start: yp[i], count: Y[i].count)) }
            for i in Ns.indices {
                #expect(Y[i].map(\.bitPattern) == single[i].map(\.bitPattern), "M \(M) mode \(mode) product \(i)")
            }
        }
    }

    @Test func pathAndPeaksReported() {
        let path = String(cString: prge_matmul_path())
        #expect(["avx512-bf16", "avx512", "generic"].contains(path))
        // bf16's peak exists exactly where its kernels do; fp32's everywhere.
        #expect((prge_bench_bf16_peak_gflops(1) > 0) == (path == "avx512-bf16"))
        #expect(prge_bench_fma_peak_gflops(1) > 0)
    }

    /// prge_matmul_t (the guide's Wᵀ·δ): Y = D·W against float64 on W dequantized by the
    /// reference, |y − ref| ≤ 1.5·(N+4)·u·S (S = Σ_j |D_ij·W_jk|: a length-N fp32 sum), on both
    /// paths; N off the 8-row blocks, Y strided (its padding survives); a type no path decodes
    /// gives −1.
    @Test(arguments: [0, 4, 7, 10])
    func transposedProduct(_ ti: Int) {
        let t = Self.types[ti], n = 5, N = 37, K = t.blockElems == 256 ? 512 : 96, ldd = N + 2, ldy = K + 3
        var rng = RNG(s: UInt64(ti) &* 7919 | 1)
        let (w, rowBytes) = Self.randomW(t, N: N, K: K, rng: &rng)
        let wf = Self.dequant(t, w, rowBytes: rowBytes, N: N, K: K)
        let D = (0..<(n * ldd)).map { _ in rng.float() }
        let (ref, mag) = Self.reference(D, lda: ldd, rows: n, inner: N, cols: K, b: wf, bInner: K, bCol: 1)
        let u = 1.0 / Double(1 << 24)
        for mode in [Int32(0), Int32(PRGE_MM_GENERIC)] {
            var Y = [Float](repeating: 9, count: n * ldy)
            let rc = w.withUnsafeBytes { wp in
                prge_matmul_t(mode, D, Int64(ldd), wp.baseAddress, t.type, Int64(rowBytes), &Y, Int64(ldy),
                              Int64(n), Int64(N), Int64(K))
            }
            #expect(rc == 0)
            var bad = 0
            for i in 0..<n {
                for k in 0..<K where !(abs(Double(Y[i * ldy + k]) - ref[i * K + k]) <= 1.5 * Double(N + 4) * u * mag[i * K + k]) {
                    bad += 1
                }
                for k in K..<ldy where Y[i * ldy + k] != 9 { bad += 1 }
            }
            #expect(bad == 0, "\(t) mode \(mode): \(bad) of \(n * K) outside the bound")
        }
        var Y = [Float](repeating: 0, count: n * ldy)
        let rc = w.withUnsafeBytes { wp in
            prge_matmul_t(0, D, Int64(ldd), wp.baseAddress, 99, Int64(rowBytes), &Y, Int64(ldy), Int64(n), Int64(N), Int64(K))
        }
        #expect(rc == -1)
    }
}
