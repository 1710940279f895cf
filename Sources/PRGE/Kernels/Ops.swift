#if canImport(Glibc)
import Glibc
#endif

import PRGEKernels

// Row-wise ops of the Llama block: RMSNorm and SwiGLU are C kernels (ops.c, vectorized, one
// parallel region each); RoPE's tables are here.

/// out[r, i] = x[r, i] / sqrt(mean(x[r]²) + eps) · w[i] for `rows` rows of n.
@inline(__always)
func rmsNorm(_ pool: ThreadPool, _ x: UnsafePointer<Float>, ldx: Int, _ w: UnsafePointer<Float>,
             _ out: UnsafeMutablePointer<Float>, ldo: Int, rows: Int, n: Int, eps: Float) {
    prge_rms_norm(pool.raw, 0, x, Int64(ldx), w, out, Int64(ldo), Int64(rows), Int64(n), eps)
}

/// gate[i] = silu(gate[i]) · up[i]  (SwiGLU), in place, over n elements.
@inline(__always)
func swiglu(_ pool: ThreadPool, _ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, n: Int) {
    prge_swiglu(pool.raw, 0, gate, up, Int64(n))
}

/// RoPE tables for one position: cos/sin of pos · base^(-2i/ropeDim), i < ropeDim/2.
struct Rope {
    let invFreq: [Float]     // [ropeDim/2]

    init(ropeDim: Int, base: Float) {
        invFreq = (0..<ropeDim / 2).map { i in powf(base, -Float(2 * i) / Float(ropeDim)) }
    }

    /// Rotate adjacent pairs (x[2i], x[2i+1]) of each of `heads` heads (GGUF's llama layout:
    /// the converter permuted q/k rows so that this "normal" rotation matches HF's).
    @inline(__always)
    func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, pos: Int) {
        for i in 0..<invFreq.count {
            // Angle and cos/sin in double: at positions in the thousands a float angle
            // already loses the low digits that the logits tolerance cares about.
            let theta = Double(pos) * Double(invFreq[i])
            let c = Float(cos(theta)), s = Float(sin(theta))
            for h in 0..<heads {
                let p = x + h * headDim + 2 * i
                let a = p[0], b = p[1]
                p[0] = a * c - b * s
                p[1] = a * s + b * c
            }
        }
    }
}
