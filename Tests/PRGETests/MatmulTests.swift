import Testing
import PRGEKernels

/// prge_matmul against a float64 reference on W dequantized by prge_dequantize_row.
///
/// Error bounds (S = Σ_k |x_k·w_k|, u = 2⁻²⁴ the fp32 unit roundoff):
///   PRGE_MM_F32:  |y − ref| ≤ 1.5·(K+4)·u·S   (a length-K fp32 dot product; our fast dequantizer is
///                 the reference dequantizer's arithmetic, so W itself is exact)
///   PRGE_MM_BF16: |y − ref| ≤ (2⁻⁷ + 2⁻¹⁶ + 1.5·(K+4)·u)·S   (x and w each rounded to bf16: 8-bit
///                 significand, unit roundoff 2⁻⁸ each, so ≤ 2⁻⁷ + 2⁻¹⁶ per product, then fp32 sums)
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
        // Reference and error scale in float64.
        var ref = [Double](repeating: 0, count: M * N), mag = [Double](repeating: 0, count: M * N)
        for m in 0..<M {
            for n in 0..<N {
                var s = 0.0, a = 0.0
                for k in 0..<K {
                    let p = Double(X[m * ldx + k]) * Double(wf[n * K + k])
                    s += p; a += abs(p)
                }
                ref[m * N + n] = s; mag[m * N + n] = a
            }
        }
        let u = 1.0 / Double(1 << 24)
        for mode in [Int32(PRGE_MM_F32), Int32(PRGE_MM_BF16)] {
            let rel = mode == Int32(PRGE_MM_F32) ? 1.5 * Double(K + 4) * u
                                                 : 1.0 / 128 + 1.0 / 65536 + 1.5 * Double(K + 4) * u
            for generic in [false, true] {
                let md = mode | (generic ? Int32(PRGE_MM_GENERIC) : 0)
                for accumulate in [false, true] {
                    let Y = run(pool2, mode: md, X: X, ldx: ldx, w: w, t: t, rowBytes: rowBytes, Y0: Yinit,
                                ldy: ldy, M: M, N: N, K: K, accumulate: accumulate)
                    var bad = 0, first = ""
                    for m in 0..<M {
                        for n in 0..<N {
                            let base = accumulate ? Double(Yinit[m * ldy + n]) : 0
                            let want = base + ref[m * N + n]
                            let tol = rel * mag[m * N + n] + 2 * u * abs(want) + 1e-30
                            let got = Double(Y[m * ldy + n])
                            if !(abs(got - want) <= tol) {
                                if bad == 0 { first = "m \(m) n \(n): got \(got) want \(want) tol \(tol)" }
                                bad += 1
                            }
                        }
                        for n in N..<ldy where Y[m * ldy + n] != Yinit[m * ldy + n] {
                            bad += 1; first = "padding written at m \(m) n \(n)"
                        }
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
        let t = Self.types[4], K = 96
        var rng = RNG(s: UInt64(M) | 1)
        let Ns = [70, 16, 0, 33, 130, 64]
        let ws = Ns.map { Self.randomW(t, N: $0, K: K, rng: &rng) }
        let X = (0..<(M * K)).map { _ in rng.float() }
        let Y0 = Ns.map { N in (0..<(M * (N + 1))).map { _ in rng.float() } }
        let pool = prge_pool_create(2)
        defer { prge_pool_free(pool) }
        for mode in [Int32(PRGE_MM_F32), Int32(PRGE_MM_BF16), Int32(PRGE_MM_BF16 | PRGE_MM_GENERIC)] {
            let single = Ns.indices.map { i in
                Self.run(pool, mode: mode, X: X, ldx: K, w: ws[i].bytes, t: t, rowBytes: ws[i].rowBytes, Y0: Y0[i],
                         ldy: Ns[i] + 1, M: M, N: Ns[i], K: K, accumulate: i % 2 == 1)
            }
            var Y = Y0
            let yp = Y.indices.map { i in UnsafeMutablePointer<Float>.allocate(capacity: max(Y[i].count, 1)) }
            defer { yp.forEach { $0.deallocate() } }
            for i in Y.indices { yp[i].initialize(from: Y[i], count: Y[i].count) }
            let wAll = ws.flatMap(\.bytes), offsets = ws.map(\.bytes.count).reduce(into: [0]) { $0.append($0.last! + $1) }
            wAll.withUnsafeBytes { wp in
                let outs = Ns.indices.map { i in
                    prge_mm_out(W: wp.baseAddress! + offsets[i], wtype: t.type, w_row_bytes: Int64(ws[i].rowBytes), Y: yp[i],
                                ldy: Int64(Ns[i] + 1), N: Int64(Ns[i]), accumulate: i % 2 == 1 ? 1 : 0)
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
        #expect(path == "avx512-bf16" || path == "generic")
    }
}
