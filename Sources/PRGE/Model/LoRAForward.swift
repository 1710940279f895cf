// The LoRA-FA term of one adapted projection, for every copy of the batch:
//   y[copy rows] += s · (x Aᵀ) · (B + sign·ε·z_query)ᵀ,   s = α / r.
// x Aᵀ is one GEMM over all rows (A is shared and frozen); only the tiny [rows, r]·[r, d_out]
// product differs per copy. z is regenerated per query from the counter RNG.
extension Context {
    func addLoRA(_ slot: LoRASlot, _ plan: LoRAPlan, _ x: UnsafeMutablePointer<Float>, ldx: Int,
                 _ y: UnsafeMutablePointer<Float>, ldy: Int, T: Int) {
        let r = slot.rank, dOut = slot.dOut, n = dOut * r
        let copies = plan.copies.count
        let h = ws.loraH.ensure(copies * T * r)                    // [R, r]
        slot.a.withUnsafeBufferPointer { a in
            matmulF32(pool, x, ldx: ldx, a.baseAddress!, n: r, k: slot.dIn, h, ldy: r, rows: copies * T, accumulate: false)
        }
        let s = plan.adapter.scale
        for i in 0..<(copies * T * r) { h[i] *= s }

        // z for each distinct query, [queries, d_out · r]
        let queries = plan.copies.filter { $0.sign != 0 }.map(\.query)
        let nq = (queries.max() ?? -1) + 1
        let z = ws.loraZ.ensure(max(nq, 1) * n)
        let tensor = UInt32(slot.index)
        let used = Set(queries)
        pool.parallelFor(nq) { qi in
            guard used.contains(qi) else { return }
            fillNormal(into: UnsafeMutableBufferPointer(start: z + qi * n, count: n),
                                  key: RNGKey(seed: plan.seed, step: plan.step, query: UInt32(qi), tensor: tensor), start: 0)
        }
        let bc = ws.loraB.ensure(n)                                // [d_out, r] this copy's B
        slot.b.withUnsafeBufferPointer { b in
            for (k, cp) in plan.copies.enumerated() {
                let e = cp.sign * plan.eps
                if e == 0 { bc.update(from: b.baseAddress!, count: n) } else {
                    let zq = z + cp.query * n
                    for i in 0..<n { bc[i] = b[i] + e * zq[i] }
                }
                matmulF32(pool, h + k * T * r, ldx: r, bc, n: dOut, k: r, y + k * T * ldy, ldy: ldy, rows: T, accumulate: true)
            }
        }
    }
}
