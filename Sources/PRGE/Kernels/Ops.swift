#if canImport(Glibc)
import Glibc
#endif

// Row-wise elementwise ops of the Llama block. Cheap next to the matmuls: plain Swift.

/// out[i] = x[i] / sqrt(mean(x²) + eps) · w[i] for one row of n.
@inline(__always)
func rmsNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int, eps: Float) {
    var ss: Float = 0
    for i in 0..<n { ss += x[i] * x[i] }
    let inv = 1 / (ss / Float(n) + eps).squareRoot()
    for i in 0..<n { out[i] = x[i] * inv * w[i] }
}

/// gate[i] = silu(gate[i]) · up[i]  (SwiGLU), in place.
@inline(__always)
func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, n: Int) {
    for i in 0..<n {
        let g = gate[i]
        gate[i] = g / (1 + expf(-g)) * up[i]
    }
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
