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
// ignoring what later blocks do to the change) the loss's derivative at an o/down output is
// the derivative at the last hidden state, δ = dL/dx_final [d], the same for every layer; at an
// up/gate output it is δ through the block's own W_down and SwiGLU. With the candidate loss,
// δ needs the K label rows of the output matrix, and the guess for slot B [d_out, r] is
//     G = s · Σ_examples δ_out ⊗ (A·x)          (s = α/r; A·x at the example's last token).
// Nothing is propagated through attention or through another block, no activation is kept
// beyond the last token's, and the guess only chooses a direction: how far to move along it
// is measured by a forward finite difference, like every other step of the trainer.
// The guess is exact for the last block's MLP and weakens with depth (cos² with the true
// gradient ~0.5 three blocks down, < 0.1 ten blocks down); q, k and v get none.

/// Activations at the loss's output rows of one forward, averaged over `copies` (a ± pair of
/// one direction: the activations at B itself to O(ε²)).
final class ActivationCapture {
    let copies: [Int]
    var T = 0                          // rows of one copy
    var rows: [Int] = []               // each output's row within a copy
    var ax: [Int: [Float]] = [:]       // slot index → [outputs, r]: A·x
    var gate: [Int: [Float]] = [:]     // layer → [outputs, n_ff]: the gate projection, before SiLU
    var up: [Int: [Float]] = [:]       // layer → [outputs, n_ff]
    var final: [Float]?                // [outputs, d]: the residual stream before the final norm

    init(copies: [Int]) { self.copies = copies }

    /// [outputs, width]: columns offset ..< offset + width of each output's row, mean over copies.
    func take(_ src: UnsafeMutablePointer<Float>, ld: Int, offset: Int, width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count * width)
        let w = 1 / Float(copies.count)
        out.withUnsafeMutableBufferPointer { o in
            for c in copies {
                for (i, r) in rows.enumerated() {
                    let p = src + (c * T + r) * ld + offset
                    for j in 0..<width { o[i * width + j] += w * p[j] }
                }
            }
        }
        return out
    }
}

extension Context {
    /// The direct-path guide at `cap`'s activations for the candidate loss (`targets`: the
    /// label index of each output): a unit vector in LoRAAdapter.flatOffsets order, or nil
    /// when it is zero (no o/gate/up/down slot, or a loss already at its floor).
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
        let wn = model.outputNorm
        var delta = [Float](repeating: 0, count: n * d)
        var y = [Float](repeating: 0, count: d), wdy = [Float](repeating: 0, count: d)
        for i in 0..<n {
            let o = i * d                                           // this output's row
            var ss = 0.0
            for j in 0..<d { ss += Double(x[o + j]) * Double(x[o + j]) }
            let r = Float(1 / (ss / Double(d) + Double(c.rmsEps)).squareRoot())
            for j in 0..<d { y[j] = x[o + j] * r * wn[j] }
            var logit = [Double](repeating: 0, count: K)
            for k in 0..<K { for j in 0..<d { logit[k] += Double(wc[k * d + j]) * Double(y[j]) } }
            let mx = logit.max()!
            let e = logit.map { exp($0 - mx) }, z = e.reduce(0, +)
            // dL/dy = Σ_k (p_k − [k = target]) · w_k, over n outputs (the loss is their mean)
            for j in 0..<d { wdy[j] = 0 }
            for k in 0..<K {
                let coef = Float((e[k] / z - (k == Int(targets[i]) ? 1 : 0)) / Double(n))
                for j in 0..<d { wdy[j] += coef * wc[k * d + j] }
            }
            // through y = w ⊙ x·r: dL/dx = r · (w⊙dy − (x·r) · mean(x·r ⊙ w⊙dy))
            var m = 0.0
            for j in 0..<d { wdy[j] *= wn[j]; m += Double(x[o + j] * r) * Double(wdy[j]) }
            let mf = Float(m / Double(d))
            for j in 0..<d { delta[o + j] = r * (wdy[j] - x[o + j] * r * mf) }
        }
        return delta
    }

    /// The guess for the o, down, gate and up slots of layer `l`, written into g at their offsets.
    private func guideLayer(_ l: Int, _ cap: ActivationCapture, _ adapter: LoRAAdapter, _ delta: [Float],
                            into g: UnsafeMutablePointer<Float>, offsets: [Int]) {
        let c = model.config, d = c.nEmbd, ff = c.nFF, n = cap.rows.count
        for p in [Projection.o, .down] {
            if let s = adapter.slot(layer: l, p), let ax = cap.ax[s.index] {
                outer(delta, ax, n: n, dOut: d, r: s.rank, scale: adapter.scale, into: g + offsets[s.index])
            }
        }
        let sg = adapter.slot(layer: l, .gate), su = adapter.slot(layer: l, .up)
        guard sg != nil || su != nil, let gv = cap.gate[l], let uv = cap.up[l] else { return }
        // dL/dh at the SwiGLU output h = silu(gate)·up: W_downᵀ δ, row by row of W_down [d, ff]
        var dh = [Float](repeating: 0, count: n * ff)
        var row = [Float](repeating: 0, count: ff)
        let wd = model.layers[l].wDown
        dh.withUnsafeMutableBufferPointer { hp in
            row.withUnsafeMutableBufferPointer { rp in
                for j in 0..<d {
                    wd.dequantizeRow(j, into: rp.baseAddress!)
                    for i in 0..<n {
                        let cj = delta[i * d + j], h = hp.baseAddress! + i * ff
                        for m in 0..<ff { h[m] += cj * rp[m] }
                    }
                }
            }
        }
        var dOut = [Float](repeating: 0, count: n * ff)
        if let s = su, let ax = cap.ax[s.index] {                   // d h / d up = silu(gate)
            for e in 0..<(n * ff) { let a = gv[e]; dOut[e] = dh[e] * a / (1 + exp(-a)) }
            outer(dOut, ax, n: n, dOut: ff, r: s.rank, scale: adapter.scale, into: g + offsets[s.index])
        }
        if let s = sg, let ax = cap.ax[s.index] {                   // d h / d gate = up · silu'(gate)
            for e in 0..<(n * ff) {
                let a = gv[e], sig = 1 / (1 + exp(-a))
                dOut[e] = dh[e] * uv[e] * sig * (1 + a * (1 - sig))
            }
            outer(dOut, ax, n: n, dOut: ff, r: s.rank, scale: adapter.scale, into: g + offsets[s.index])
        }
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
