import PRGEKernels

// The LoRA-FA term of the adapted projections of a layer, for every copy of the batch:
//   y[copy rows] += s · (x Aᵀ) · (B + sign·ε·z_query)ᵀ,   s = α / r.
// x Aᵀ runs over all rows (A is shared and frozen), for all projections that read the same x
// at once (q, k, v; gate, up), inside the matmul call of their base weights: in the context's
// numeric mode, like the base product it is added to. The B term of all copies is one kernel call: its tasks
// own output columns, draw each query's z for them (the counter RNG makes any element range
// cheap to regenerate) and build B + e·z in L1.

/// x Aᵀ of a group of projections that share their input: [R, ld], projection p's r columns
/// starting at column[p].
struct LoRAInput {
    let h: UnsafeMutablePointer<Float>
    let ld: Int
    let column: [Projection: Int]
}

extension Context {
    /// Where x Aᵀ of the adapted projections of `group` goes (nil if none is adapted), and the
    /// product that computes it: their A's stacked into one [ld, d_in] matrix, run in the same
    /// matmul call as the group's base weights (x is converted once for both).
    func loraInput(_ l: Int, _ group: [Projection], _ lora: LoRAPlan?, rows: Int) -> (LoRAInput, MatmulOut)? {
        guard let plan = lora else { return nil }
        let slots = group.compactMap { plan.adapter.slot(layer: l, $0) }
        guard let dIn = slots.first?.dIn else { return nil }
        let ld = slots.reduce(0) { $0 + $1.rank }
        let a = ws.loraA.ensure(ld * dIn)                          // [ld, d_in] stacked A
        var column: [Projection: Int] = [:], c = 0
        for s in slots {
            s.a.withUnsafeBufferPointer { (a + c * dIn).update(from: $0.baseAddress!, count: $0.count) }
            column[s.proj] = c
            c += s.rank
        }
        let h = ws.loraH.ensure(rows * ld)                         // [R, ld]
        return (LoRAInput(h: h, ld: ld, column: column), MatmulOut(f32: a, n: ld, k: dIn, h, ldy: ld))
    }

    /// y += the LoRA term of `slot` for every copy of `plan`, from its columns of `input`.
    func addLoRA(_ slot: LoRASlot, _ plan: LoRAPlan, _ input: LoRAInput, _ y: UnsafeMutablePointer<Float>, ldy: Int, T: Int) {
        let query = plan.copies.map { Int32($0.query) }, e = plan.copies.map { $0.sign * plan.eps }
        var streams = ZStreams(seed: plan.seed, step: plan.step, tensor: UInt32(slot.index))
        slot.b.withUnsafeBufferPointer { b in
            prge_lora_b(pool.raw, 0, input.h + input.column[slot.proj]!, Int64(input.ld), b.baseAddress!,
                        Int64(slot.dOut), Int64(slot.rank), Int64(T), Int64(plan.copies.count), query, e,
                        drawNormal, &streams, plan.adapter.scale, y, Int64(ldy))
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
