import PRGEKernels

// The LoRA-FA term of one adapted projection, for every copy of the batch:
//   y[copy rows] += s · (x Aᵀ) · (B + sign·ε·z_query)ᵀ,   s = α / r.
// x Aᵀ is one GEMM over all rows (A is shared and frozen). The B term of all copies is one
// kernel call: its tasks own output columns, draw each query's z for them (the counter RNG
// makes any element range cheap to regenerate) and build B + e·z in L1.
extension Context {
    func addLoRA(_ slot: LoRASlot, _ plan: LoRAPlan, _ x: UnsafeMutablePointer<Float>, ldx: Int,
                 _ y: UnsafeMutablePointer<Float>, ldy: Int, T: Int) {
        let r = slot.rank, copies = plan.copies.count
        let h = ws.loraH.ensure(copies * T * r)                    // [R, r]
        slot.a.withUnsafeBufferPointer { a in
            matmulF32(pool, x, ldx: ldx, a.baseAddress!, n: r, k: slot.dIn, h, ldy: r, rows: copies * T, accumulate: false)
        }
        let query = plan.copies.map { Int32($0.query) }, e = plan.copies.map { $0.sign * plan.eps }
        var streams = ZStreams(seed: plan.seed, step: plan.step, tensor: UInt32(slot.index))
        slot.b.withUnsafeBufferPointer { b in
            prge_lora_b(pool.raw, 0, h, Int64(r), b.baseAddress!, Int64(slot.dOut), Int64(r), Int64(T),
                        Int64(copies), query, e, drawNormal, &streams, plan.adapter.scale, y, Int64(ldy))
        }
    }
}

/// The z streams of one slot in one step: the key of prge_lora_b's draws, less the query.
private struct ZStreams {
    let seed: UInt64, step: UInt64, tensor: UInt32
}

/// prge_lora_b's callback: elements start ..< start + count of z(seed, step, query, slot).
private let drawNormal: prge_normal_fn = { ctx, query, start, count, out in
    let s = ctx!.assumingMemoryBound(to: ZStreams.self).pointee
    fillNormal(into: UnsafeMutableBufferPointer(start: out, count: Int(count)),
               key: RNGKey(seed: s.seed, step: s.step, query: UInt32(query), tensor: s.tensor), start: Int(start))
}
