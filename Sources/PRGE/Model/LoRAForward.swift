import PRGEKernels

// The LoRA-FA term of the adapted projections of a layer, for every copy of the batch:
//   y[copy rows] += s · (x Aᵀ) · (B + sign·ε·z_query)ᵀ,   s = α / r.
// x Aᵀ runs over all rows (A is shared and frozen), for all projections that read the same x
// at once (q, k, v; gate, up), inside the matmul call of their base weights: in the context's
// numeric mode, like the base product it is added to. The B term of all copies rides on the
// base product (prge_mm_out.lora): each GEMM tile, once its part of y is done and still in
// cache, draws each query's z for its columns (the counter RNG makes any element range cheap
// to regenerate), builds B + e·z in L1 and adds the term for its rows of every copy.

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

    /// The LoRA terms (prge_lora_term) of `slots` (nil: not adapted) for every copy of `plan`,
    /// from their columns of `input`; the pointers are valid inside `body` only.
    func withLoRATerms(_ slots: [LoRASlot?], _ plan: LoRAPlan?, _ input: LoRAInput?, T: Int,
                       _ body: ([UnsafePointer<prge_lora_term>?]) -> Void) {
        guard let plan, let input else { return body(slots.map { _ in nil }) }
        let adapted = slots.compactMap { $0 }
        let query = plan.copies.map { Int32($0.query) }, e = plan.copies.map { $0.sign * plan.eps }
        let offset = plan.adapter.flatOffsets
        let terms = UnsafeMutablePointer<prge_lora_term>.allocate(capacity: max(adapted.count, 1))
        let streams = UnsafeMutablePointer<ZStreams>.allocate(capacity: max(adapted.count, 1))
        defer { terms.deallocate(); streams.deallocate() }
        query.withUnsafeBufferPointer { qp in
            e.withUnsafeBufferPointer { ep in
                withDirection(plan.direction) { dir in withB(adapted[...], []) { b in
                    for (i, s) in adapted.enumerated() {
                        (streams + i).initialize(to: ZStreams(seed: plan.seed, step: plan.step, tensor: UInt32(s.index),
                                                              direction: dir.map { $0 + offset[s.index] }))
                        (terms + i).initialize(to: prge_lora_term(
                            H: input.h + input.column[s.proj]!, ldh: Int64(input.ld), B: b[i], r: Int64(s.rank), T: Int64(T),
                            copies: Int64(plan.copies.count), query: qp.baseAddress, e: ep.baseAddress, normal: drawNormal,
                            normal_ctx: UnsafeMutableRawPointer(streams + i), s: plan.adapter.scale))
                    }
                    var next = 0
                    body(slots.map { s in
                        guard s != nil else { return nil }
                        defer { next += 1 }
                        return UnsafePointer(terms + next)
                    })
                } }
            }
        }
    }

    /// body(pointers to the B's of `slots`), valid inside body.
    private func withB(_ slots: ArraySlice<LoRASlot>, _ done: [UnsafePointer<Float>], _ body: ([UnsafePointer<Float>]) -> Void) {
        guard let s = slots.first else { return body(done) }
        s.b.withUnsafeBufferPointer { withB(slots.dropFirst(), done + [$0.baseAddress!], body) }
    }
}

private func withDirection(_ d: [Float]?, _ body: (UnsafePointer<Float>?) -> Void) {
    guard let d else { return body(nil) }
    d.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// The z streams of one slot in one step: the key of the LoRA term's draws, less the query;
/// or the slot's part of the plan's explicit direction.
private struct ZStreams {
    let seed: UInt64, step: UInt64, tensor: UInt32
    let direction: UnsafePointer<Float>?
}

/// The LoRA term's callback: elements start ..< start + count of z(seed, step, query, slot),
/// or of the explicit direction.
private let drawNormal: prge_normal_fn = { ctx, query, start, count, out in
    let s = ctx!.assumingMemoryBound(to: ZStreams.self).pointee
    if let d = s.direction { out!.update(from: d + Int(start), count: Int(count)); return }
    fillNormal(into: UnsafeMutableBufferPointer(start: out, count: Int(count)),
               key: RNGKey(seed: s.seed, step: s.step, query: UInt32(query), tensor: s.tensor), start: Int(start))
}
