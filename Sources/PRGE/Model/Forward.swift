import PRGEKernels

// The batched, ragged Llama forward. Rows of all sequences (and all LoRA copies) form one
// matrix per linear layer; attention runs per sequence and head. Everything below the first
// adapted layer depends only on the tokens, so it runs once and is then replicated per copy.

/// The residual stream of one copy of a batch where the first adapted layer reads it: a second
/// forward of the same batch with another plan (the guided pair) starts there.
struct LowerStash {
    let sequences: [[Int32]]
    let layer: Int
    let x: [Float]            // [T, d]
}

/// Where each sequence's rows lie: sequence s owns rows start[s] ..< start[s] + len[s] of one copy.
struct RowLayout {
    let start: [Int]
    let len: [Int]
    let rowsPerCopy: Int      // T: tokens of one copy of the batch
    let pos: [Int32]          // [T] position of each row
    let p0: Int               // position of the first row (KV cache length), 0 without cache

    init(_ b: Batch, p0: Int) {
        var s: [Int] = [], t = 0
        var pos: [Int32] = []
        for seq in b.sequences {
            s.append(t)
            t += seq.count
            for i in 0..<seq.count { pos.append(Int32(p0 + i)) }
        }
        start = s
        len = b.sequences.map(\.count)
        rowsPerCopy = t
        self.pos = pos
        self.p0 = p0
    }
}

extension Context {
    /// Final-normed hidden states at the outputs: [copies × outputs, d], copy-major.
    func hidden(_ batch: Batch, lora: LoRAPlan?, cache: KVCache?) throws -> [Float] {
        let c = model.config
        try batch.validate(c, maxLength: maxLength)
        if let plan = lora { try validate(plan) }
        let p0 = cache?.count ?? 0
        if let kv = cache {
            guard batch.sequences.count == 1, lora.map({ $0.copies.count == 1 }) ?? true else {
                throw PRGEError.invalid("a KV cache continues exactly one sequence, one copy")
            }
            guard p0 + batch.sequences[0].count <= kv.capacity else {
                throw PRGEError.invalid("KV cache full: \(p0) + \(batch.sequences[0].count) tokens exceed its \(kv.capacity)")
            }
        }
        let L = RowLayout(batch, p0: p0)
        let copies = lora?.copies.count ?? 1
        if let cap = capture {
            guard cap.copies.allSatisfy({ $0 < copies }) else { throw PRGEError(.internal, "capture of a copy the plan lacks") }
            cap.T = L.rowsPerCopy
            cap.rows = batch.outputs.map { L.start[$0.seq] + $0.pos }
            cap.starts = batch.outputs.map { L.start[$0.seq] }
            cap.positions = L.pos.map { Int($0) }
        }
        let T = L.rowsPerCopy, R = copies * T, d = c.nEmbd
        prepareRope(L)

        let x = ws.x.ensure(R * d)                                  // [R, d] residual stream
        embed(batch, into: x)
        let firstAdapted = lora.map { plan in plan.adapter.slots.map(\.layer).min() ?? c.nLayer } ?? c.nLayer
        var active = 1                                              // copies materialized so far
        var start = 0
        if cache == nil, let s = lowerStash, s.layer == firstAdapted, s.sequences == batch.sequences {
            s.x.withUnsafeBufferPointer { x.update(from: $0.baseAddress!, count: T * d) }
            start = firstAdapted
        }
        for l in start..<c.nLayer {
            if l == firstAdapted && keepLower && start == 0 {
                lowerStash = LowerStash(sequences: batch.sequences, layer: l, x: Array(UnsafeBufferPointer(start: x, count: T * d)))
            }
            if l == firstAdapted && copies > 1 {
                for k in 1..<copies { (x + k * T * d).update(from: x, count: T * d) }
                active = copies
            }
            layer(l, x: x, L: L, copies: active, lora: l >= firstAdapted ? lora : nil, cache: cache)
        }
        if active < copies { for k in 1..<copies { (x + k * T * d).update(from: x, count: T * d) } }
        cache?.count += T
        capture?.final = capture?.take(x, ld: d, offset: 0, width: d)

        // Gather and normalize only the rows whose logits are wanted.
        let nOut = batch.outputs.count
        var h = [Float](repeating: 0, count: copies * nOut * d)
        h.withUnsafeMutableBufferPointer { hp in
            model.outputNorm.withUnsafeBufferPointer { w in
                for k in 0..<copies {
                    for (i, o) in batch.outputs.enumerated() {
                        let row = k * T + L.start[o.seq] + o.pos
                        rmsNorm(pool, x + row * d, ldx: d, w.baseAddress!, hp.baseAddress! + (k * nOut + i) * d, ldo: d,
                                rows: 1, n: d, eps: c.rmsEps)
                    }
                }
            }
        }
        return h
    }

    private func validate(_ plan: LoRAPlan) throws {
        guard !plan.copies.isEmpty, plan.copies.count <= 4096 else { throw PRGEError.invalid("LoRA plan needs 1...4096 copies") }
        for s in plan.adapter.slots {
            guard s.layer < model.config.nLayer, model.shape(s.proj) == (s.dIn, s.dOut) else {
                throw PRGEError.invalid("adapter slot blk.\(s.layer).\(s.proj.ggufName) does not fit this model")
            }
        }
        for k in plan.copies where k.query < 0 || k.query >= 4096 || !k.sign.isFinite {
            throw PRGEError.invalid("LoRA plan copy has query \(k.query), sign \(k.sign)")
        }
    }

    // x[row] = token_embd[token]
    private func embed(_ batch: Batch, into x: UnsafeMutablePointer<Float>) {
        let d = model.config.nEmbd
        var r = 0
        for seq in batch.sequences {
            for t in seq { model.tokenEmbedding.dequantizeRow(Int(t), into: x + r * d); r += 1 }
        }
    }

    // cos/sin of every (row position, frequency) once per forward: [T, ropeDim/2]
    private func prepareRope(_ L: RowLayout) {
        let half = model.config.ropeDim / 2, T = L.rowsPerCopy
        let cs = ws.ropeCos.ensure(max(T * half, 1)), sn = ws.ropeSin.ensure(max(T * half, 1))
        for r in 0..<T {
            for i in 0..<half {
                let theta = Double(L.pos[r]) * Double(model.rope.invFreq[i])
                cs[r * half + i] = Float(cos(theta))
                sn[r * half + i] = Float(sin(theta))
            }
        }
    }

    private func layer(_ l: Int, x: UnsafeMutablePointer<Float>, L: RowLayout, copies: Int, lora: LoRAPlan?, cache: KVCache?) {
        let c = model.config, w = model.layers[l]
        let T = L.rowsPerCopy, R = copies * T, d = c.nEmbd, qd = c.qDim, kvd = c.kvDim, ff = c.nFF
        let xb = ws.xb.ensure(R * d), q = ws.q.ensure(R * qd), k = ws.k.ensure(R * kvd), v = ws.v.ensure(R * kvd)
        let att = ws.att.ensure(R * qd)

        // ---- attention block
        w.attnNorm.withUnsafeBufferPointer { nw in
            rmsNorm(pool, x, ldx: d, nw.baseAddress!, xb, ldo: d, rows: R, n: d, eps: c.rmsEps)
        }
        project(l, [(.q, q, qd), (.k, k, kvd), (.v, v, kvd)], xb, ldx: d, R: R, T: T, lora: lora)
        applyRope(q, heads: c.nHead, R: R, T: T)
        applyRope(k, heads: c.nHeadKV, R: R, T: T)
        if let cap = capture, let a = lora?.adapter, [.q, .k, .v].contains(where: { a.slot(layer: l, $0) != nil }) {
            cap.query[l] = cap.take(q, ld: qd, offset: 0, width: qd)
            cap.key[l] = cap.takeAll(k, ld: kvd, offset: 0, width: kvd)
            cap.value[l] = cap.takeAll(v, ld: kvd, offset: 0, width: kvd)
        }
        attention(l, q: q, k: k, v: v, out: att, L: L, copies: copies, cache: cache)
        project(l, [(.o, x, d)], att, ldx: qd, R: R, T: T, lora: lora, accumulate: true)      // x += Wo·att

        // ---- feed-forward block (SwiGLU)
        let g = ws.gate.ensure(R * ff), u = ws.up.ensure(R * ff)
        if let cap = capture, lora != nil { cap.mid[l] = cap.take(x, ld: d, offset: 0, width: d) }
        w.ffnNorm.withUnsafeBufferPointer { nw in
            rmsNorm(pool, x, ldx: d, nw.baseAddress!, xb, ldo: d, rows: R, n: d, eps: c.rmsEps)
        }
        project(l, [(.gate, g, ff), (.up, u, ff)], xb, ldx: d, R: R, T: T, lora: lora)
        if let cap = capture, lora != nil {
            cap.gate[l] = cap.take(g, ld: ff, offset: 0, width: ff)
            cap.up[l] = cap.take(u, ld: ff, offset: 0, width: ff)
        }
        swiglu(pool, g, u, n: R * ff)
        project(l, [(.down, x, d)], g, ldx: ff, R: R, T: T, lora: lora, accumulate: true)     // x += Wdown·h
    }

    /// y_p (+)= W_p·x for projections that read the same x (one GEMM call for their base
    /// matrices and their stacked A's), each adapted projection's LoRA term for every copy
    /// added inside its product's tiles.
    private func project(_ l: Int, _ outs: [(p: Projection, y: UnsafeMutablePointer<Float>, ldy: Int)],
                         _ x: UnsafeMutablePointer<Float>, ldx: Int, R: Int, T: Int, lora: LoRAPlan?, accumulate: Bool = false) {
        let w = model.layers[l]
        let input = loraInput(l, outs.map(\.p), lora, rows: R)
        let slots = outs.map { o in lora?.adapter.slot(layer: l, o.p) }
        withLoRATerms(slots, lora, input?.0, T: T) { terms in
            let products = zip(outs, terms).map { o, t in MatmulOut(w.matrix(o.p), o.y, ldy: o.ldy, accumulate: accumulate, lora: t) }
            matmul(pool, mode, x, ldx: ldx, k: w.matrix(outs[0].p).cols, products + (input.map { [$0.1] } ?? []), rows: R)
        }
        if let cap = capture, let h = input?.0 {
            for case let s? in slots {
                cap.ax[s.index] = cap.take(h.h, ld: h.ld, offset: h.column[s.proj]!, width: s.rank)
                if s.proj == .k || s.proj == .v { cap.axAll[s.index] = cap.takeAll(h.h, ld: h.ld, offset: h.column[s.proj]!, width: s.rank) }
            }
        }
    }

    private func applyRope(_ t: UnsafeMutablePointer<Float>, heads: Int, R: Int, T: Int) {
        let c = model.config
        rope(pool, t, rows: R, T: T, heads: heads, headDim: c.headDim, half: c.ropeDim / 2,
             cos: ws.ropeCos.ptr, sin: ws.ropeSin.ptr)
    }

    private func attention(_ l: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                           v: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                           L: RowLayout, copies: Int, cache: KVCache?) {
        let c = model.config, hd = c.headDim, qd = c.qDim, kvd = c.kvDim
        let nSeq = L.start.count, T = L.rowsPerCopy
        var kSrc = UnsafePointer(k), vSrc = UnsafePointer(v)
        if let kv = cache {       // append the new rows, then attend over the whole cache
            let (kc, vc) = kv.layer(l)
            (kc + L.p0 * kvd).update(from: k, count: T * kvd)
            (vc + L.p0 * kvd).update(from: v, count: T * kvd)
            kSrc = UnsafePointer(kc); vSrc = UnsafePointer(vc)
        }
        // Where each (copy, sequence) lies: its query rows, and its keys in k/v or the cache.
        var qRow: [Int64] = [], kvRow: [Int64] = [], len: [Int64] = []
        for cp in 0..<copies {
            for s in 0..<nSeq {
                let row0 = Int64(cp * T + L.start[s])
                qRow.append(row0)
                kvRow.append(cache == nil ? row0 : 0)
                len.append(Int64(L.len[s]))
            }
        }
        prge_attention(pool.raw, 0, q, Int64(qd), kSrc, vSrc, Int64(kvd), out, Int64(qd), qRow, kvRow, len,
                       Int64(copies * nSeq), Int64(L.p0), Int64(c.nHead), Int64(c.nHeadKV), Int64(hd),
                       1 / Float(hd).squareRoot())
    }
}

#if canImport(Glibc)
import Glibc
#endif
