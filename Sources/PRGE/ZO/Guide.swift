#if canImport(Glibc)
import Glibc
#endif

// The direct-path guide: one direction over all of B per step that holds a large share of the
// minibatch gradient, made from activations the step's forward already has. A random direction
// holds ~1/d of the gradient (d = 155,520 entries of B in the recipe), so P-RGE's finite
// differences measure it slowly; a finite difference along this direction measures most of it
// with one ± pair (docs/RECIPE.md, 2026-12-06 g).
//
// Why it is cheap: every block adds its output into the residual stream, and the residual
// stream carries it unchanged to the final norm. Taking only that path (the "direct path",
// ignoring what later blocks do to the change) the loss's derivative at a block's output is
// the derivative at the last hidden state, δ = dL/dx_final [d], the same for every layer.
// Inside the block the guide follows the block's own operations back from there, at the
// last token only (the loss reads nothing else):
//     down            δ
//     up, gate        W_downᵀ δ through SwiGLU
//     o               δ_mid = δ + the MLP's path back through W_gate, W_up and the FFN norm
//     v, q, k         W_oᵀ δ_mid through the last token's attention: its weights spread it to
//                     every attended row's value, its softmax to the query and the keys
//                     (RoPE turned back)
// With the candidate loss δ needs the K label rows of the output matrix, and the guess for
// slot B [d_out, r] is G = s · Σ_rows dy ⊗ (A·x) (s = α/r). Nothing crosses to another block
// or to another token's query, only the last token's vectors (and the keys, values and k/v
// A·x of the rows it attends to) are kept, and the guess only chooses a direction: how far
// to move along it is measured by a forward finite difference, like every other step.
// The guess is the whole gradient in the last block and weakens with depth, as what later
// blocks do to a change grows.

/// Activations at the loss's output rows of one forward, averaged over `copies` (a ± pair of
/// one direction: the activations at B itself to O(ε²)).
final class ActivationCapture {
    let copies: [Int]
    var T = 0                          // rows of one copy
    var rows: [Int] = []               // each output's row within a copy
    var starts: [Int] = []             // the first row of each output's sequence
    var ax: [Int: [Float]] = [:]       // slot index → [outputs, r]: A·x
    var gate: [Int: [Float]] = [:]     // layer → [outputs, n_ff]: the gate projection, before SiLU
    var up: [Int: [Float]] = [:]       // layer → [outputs, n_ff]
    var mid: [Int: [Float]] = [:]      // layer → [outputs, d]: the residual stream after attention
    var final: [Float]?                // [outputs, d]: the residual stream before the final norm
    // For q, k and v (layers with one of their slots): what the last token's attention needs.
    var positions: [Int] = []          // [T] position of each row
    var axAll: [Int: [Float]] = [:]    // k or v slot index → [T, r]: A·x at every row
    var query: [Int: [Float]] = [:]    // layer → [outputs, q_dim]: queries after RoPE
    var key: [Int: [Float]] = [:]      // layer → [T, kv_dim]: keys after RoPE, every row
    var value: [Int: [Float]] = [:]    // layer → [T, kv_dim]: values, every row

    init(copies: [Int]) { self.copies = copies }

    /// [outputs, width]: columns offset ..< offset + width of each output's row, mean over copies.
    func take(_ src: UnsafeMutablePointer<Float>, ld: Int, offset: Int, width: Int) -> [Float] {
        mean(rows, src, ld: ld, offset: offset, width: width)
    }

    /// [T, width]: columns offset ..< offset + width of every row of a copy, mean over copies.
    func takeAll(_ src: UnsafeMutablePointer<Float>, ld: Int, offset: Int, width: Int) -> [Float] {
        mean(Array(0..<T), src, ld: ld, offset: offset, width: width)
    }

    /// [which.count, width]: rows `which` of a copy (columns offset ..< offset + width), mean over copies.
    private func mean(_ which: [Int], _ src: UnsafeMutablePointer<Float>, ld: Int, offset: Int, width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: which.count * width)
        let w = 1 / Float(copies.count)
        out.withUnsafeMutableBufferPointer { o in
            for c in copies {
                for (i, r) in which.enumerated() {
                    let p = src + (c * T + r) * ld + offset
                    for j in 0..<width { o[i * width + j] += w * p[j] }
                }
            }
        }
        return out
    }
}

extension Context {
    /// The guide at `cap`'s activations for the candidate loss (`targets`: the label index of
    /// each output): a unit vector in LoRAAdapter.flatOffsets order, or nil when it is zero (no
    /// adapted slot, or a loss already at its floor).
    func directPathGuide(_ cap: ActivationCapture, adapter: LoRAAdapter, candidates: [Int32], targets: [Int32]) -> [Float]? {
        guard let xFinal = cap.final, targets.count == cap.rows.count else { return nil }
        let delta = finalDelta(xFinal, candidates: candidates, targets: targets)   // [n, d]
        let offsets = adapter.flatOffsets
        var g = [Float](repeating: 0, count: offsets.last!)
        let layers = Array(Set(adapter.slots.map(\.layer))).sorted()
        g.withUnsafeMutableBufferPointer { gp in
            let base = gp.baseAddress!
            // Each layer writes only its own slots: any thread count gives the same bits.
            pool.parallelFor(layers.count) { li in
                self.guideLayer(layers[li], cap, adapter, delta, into: base, offsets: offsets)
            }
        }
        var ss = 0.0
        for v in g { ss += Double(v) * Double(v) }
        guard ss > 0, ss.isFinite else { return nil }
        let inv = Float(1 / ss.squareRoot())
        return g.map { $0 * inv }
    }

    /// dL/dx_final of the mean candidate loss for each output: through the K label rows of the
    /// output matrix and the final RMS norm. [n, d]
    private func finalDelta(_ x: [Float], candidates: [Int32], targets: [Int32]) -> [Float] {
        let c = model.config, d = c.nEmbd, n = targets.count, K = candidates.count
        var wc = [Float](repeating: 0, count: K * d)                 // [K, d] label rows
        wc.withUnsafeMutableBufferPointer { w in
            for (k, id) in candidates.enumerated() { model.output.dequantizeRow(Int(id), into: w.baseAddress! + k * d) }
        }
        var dy = [Float](repeating: 0, count: n * d)                 // dL/d(normed x) [n, d]
        var y = [Float](repeating: 0, count: d)
        for i in 0..<n {
            let o = i * d                                           // this output's row
            let r = rmsScale(x, row: i, d: d)
            for j in 0..<d { y[j] = x[o + j] * r * model.outputNorm[j] }
            var logit = [Double](repeating: 0, count: K)
            for k in 0..<K { for j in 0..<d { logit[k] += Double(wc[k * d + j]) * Double(y[j]) } }
            let mx = logit.max()!
            let e = logit.map { exp($0 - mx) }, z = e.reduce(0, +)
            // dL/dy = Σ_k (p_k − [k = target]) · w_k, over n outputs (the loss is their mean)
            for k in 0..<K {
                let coef = Float((e[k] / z - (k == Int(targets[i]) ? 1 : 0)) / Double(n))
                for j in 0..<d { dy[o + j] += coef * wc[k * d + j] }
            }
        }
        return rmsNormBackward(x, model.outputNorm, dy, n: n)
    }

    /// 1/rms of row i of x [n, d], as the forward's RMS norm computes it.
    private func rmsScale(_ x: [Float], row i: Int, d: Int) -> Float {
        var ss = 0.0
        for j in 0..<d { ss += Double(x[i * d + j]) * Double(x[i * d + j]) }
        return Float(1 / (ss / Double(d) + Double(model.config.rmsEps)).squareRoot())
    }

    /// dL/dx through y = w ⊙ x·r (r = 1/rms(x)) for each of n rows: r·(w⊙dy − x·r · mean(x·r ⊙ w⊙dy)).
    private func rmsNormBackward(_ x: [Float], _ w: [Float], _ dy: [Float], n: Int) -> [Float] {
        let d = w.count
        var dx = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            let o = i * d, r = rmsScale(x, row: i, d: d)
            var m = 0.0
            for j in 0..<d { m += Double(x[o + j] * r) * Double(w[j] * dy[o + j]) }
            let mf = Float(m / Double(d))
            for j in 0..<d { dx[o + j] = r * (w[j] * dy[o + j] - x[o + j] * r * mf) }
        }
        return dx
    }

    /// The guess for the adapted slots of layer `l`, written into g at their offsets. down, gate
    /// and up see δ; o, v, q and k see δ plus what the block's own MLP adds to it (the attention
    /// output passes through the MLP's input before it leaves the block).
    private func guideLayer(_ l: Int, _ cap: ActivationCapture, _ adapter: LoRAAdapter, _ delta: [Float],
                            into g: UnsafeMutablePointer<Float>, offsets: [Int]) {
        let c = model.config, d = c.nEmbd, ff = c.nFF, n = cap.rows.count, w = model.layers[l]
        func write(_ p: Projection, _ dy: [Float], rows: Int, dOut: Int, all: Bool = false) {
            guard let s = adapter.slot(layer: l, p), let ax = all ? cap.axAll[s.index] : cap.ax[s.index] else { return }
            outer(dy, ax, n: rows, dOut: dOut, r: s.rank, scale: adapter.scale, into: g + offsets[s.index])
        }
        write(.down, delta, rows: n, dOut: d)
        guard let gv = cap.gate[l], let uv = cap.up[l], let mid = cap.mid[l] else { return }
        let dh = transposedProduct(w.wDown, delta, n: n)             // dL/dh at h = silu(gate)·up: [n, ff]
        var dUp = [Float](repeating: 0, count: n * ff), dGate = dUp
        for e in 0..<(n * ff) {
            let a = gv[e], sig = 1 / (1 + exp(-a))
            dUp[e] = dh[e] * a * sig                                 // d h / d up = silu(gate)
            dGate[e] = dh[e] * uv[e] * sig * (1 + a * (1 - sig))     // d h / d gate = up · silu'(gate)
        }
        write(.up, dUp, rows: n, dOut: ff)
        write(.gate, dGate, rows: n, dOut: ff)
        guard [.o, .q, .k, .v].contains(where: { adapter.slot(layer: l, $0) != nil }) else { return }
        // δ at the attention output's residual add: δ + the MLP's path back through its norm.
        var dn = transposedProduct(w.wGate, dGate, n: n)             // [n, d]
        for (e, v) in transposedProduct(w.wUp, dUp, n: n).enumerated() { dn[e] += v }
        var dMid = rmsNormBackward(mid, w.ffnNorm, dn, n: n)
        for e in dMid.indices { dMid[e] += delta[e] }
        write(.o, dMid, rows: n, dOut: d)
        if let q = cap.query[l], let k = cap.key[l], let v = cap.value[l] {
            let (dq, dk, dv) = attentionDeltas(l, cap, dMid, q: q, k: k, v: v)
            write(.q, dq, rows: n, dOut: c.qDim)
            write(.k, dk, rows: cap.T, dOut: c.kvDim, all: true)
            write(.v, dv, rows: cap.T, dOut: c.kvDim, all: true)
        }
    }

    /// The derivatives at the last token's attention inputs, through its attention only:
    /// dAtt = W_oᵀ·δ at the attention output, spread by the attention weights (recomputed from
    /// the captured queries and keys) to every attended row's value, and through the softmax
    /// to the query and the keys, un-rotated (RoPE is a rotation: its transpose turns it back).
    /// Returns dq [n, q_dim] (the last token), dk and dv [T, kv_dim] (every row of a copy).
    private func attentionDeltas(_ l: Int, _ cap: ActivationCapture, _ delta: [Float],
                                 q: [Float], k: [Float], v: [Float]) -> (dq: [Float], dk: [Float], dv: [Float]) {
        let c = model.config, hd = c.headDim, qd = c.qDim, kvd = c.kvDim, n = cap.rows.count
        let group = c.nHead / c.nHeadKV, scale = 1 / Float(hd).squareRoot()
        let dAtt = transposedProduct(model.layers[l].matrix(.o), delta, n: n)   // [n, q_dim]
        var dq = [Float](repeating: 0, count: n * qd), dk = [Float](repeating: 0, count: cap.T * kvd), dv = dk
        for i in 0..<n {
            let rows = Array(cap.starts[i]...cap.rows[i])               // the keys the last token saw
            for h in 0..<c.nHead {
                let qh = i * qd + h * hd, kh = (h / group) * hd
                var a = rows.map { j -> Float in
                    var s: Float = 0
                    for t in 0..<hd { s += q[qh + t] * k[j * kvd + kh + t] }
                    return s * scale
                }
                let mx = a.max()!
                var z: Float = 0
                for e in a.indices { a[e] = exp(a[e] - mx); z += a[e] }
                // dα_j = dAtt·v_j; ds_j = α_j (dα_j − Σ α dα)
                var da = [Float](repeating: 0, count: rows.count), mean: Float = 0
                for (e, j) in rows.enumerated() {
                    a[e] /= z
                    for t in 0..<hd {
                        dv[j * kvd + kh + t] += a[e] * dAtt[qh + t]
                        da[e] += dAtt[qh + t] * v[j * kvd + kh + t]
                    }
                    mean += a[e] * da[e]
                }
                for (e, j) in rows.enumerated() {
                    let ds = a[e] * (da[e] - mean) * scale
                    for t in 0..<hd {
                        dq[qh + t] += ds * k[j * kvd + kh + t]
                        dk[j * kvd + kh + t] += ds * q[qh + t]
                    }
                }
            }
        }
        unrotate(&dq, heads: c.nHead, positions: cap.rows.map { cap.positions[$0] })
        unrotate(&dk, heads: c.nHeadKV, positions: cap.positions)
        return (dq, dk, dv)
    }

    /// x ← Rᵀ x for rows of [rows, heads·head_dim] at `positions`: RoPE's pairs turned back.
    private func unrotate(_ x: inout [Float], heads: Int, positions: [Int]) {
        let c = model.config, hd = c.headDim, ld = heads * hd
        for (r, pos) in positions.enumerated() {
            for i in 0..<(c.ropeDim / 2) {
                let theta = Double(pos) * Double(model.rope.invFreq[i])
                let co = Float(cos(theta)), si = Float(sin(theta))
                for h in 0..<heads {
                    let e = r * ld + h * hd + 2 * i
                    let d0 = x[e], d1 = x[e + 1]
                    x[e] = co * d0 + si * d1
                    x[e + 1] = co * d1 - si * d0
                }
            }
        }
    }

    /// Wᵀ·δ for each of n rows of δ [n, W.rows]: [n, W.cols].
    private func transposedProduct(_ w: QMatrix, _ delta: [Float], n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n * w.cols)
        delta.withUnsafeBufferPointer { d in
            out.withUnsafeMutableBufferPointer { o in matmulTransposed(d.baseAddress!, w, o.baseAddress!, rows: n) }
        }
        return out
    }
}

/// g[j, k] = scale · Σ_i dy[i, j] · ax[i, k]: dy [n, dOut], ax [n, r], g [dOut, r] (B's layout).
private func outer(_ dy: [Float], _ ax: [Float], n: Int, dOut: Int, r: Int, scale: Float, into g: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
        for j in 0..<dOut {
            let v = scale * dy[i * dOut + j]
            for k in 0..<r { g[j * r + k] += v * ax[i * r + k] }
        }
    }
}

/// B ← B − coef · u for a direction u over all slots (LoRAAdapter.flatOffsets order).
public func applyDirection(_ u: [Float], coef: Float, to adapter: LoRAAdapter) {
    let offsets = adapter.flatOffsets
    precondition(u.count == offsets.last!, "applyDirection: direction of \(u.count) for \(offsets.last!) entries")
    for s in adapter.slots {
        let o = offsets[s.index]
        s.b.withUnsafeMutableBufferPointer { b in for j in 0..<b.count { b[j] -= coef * u[o + j] } }
    }
}
