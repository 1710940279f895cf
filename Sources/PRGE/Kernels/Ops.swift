#if canImport(Glibc)
import Glibc
#endif

import PRGEKernels

// Row-wise ops of the Llama block: RMSNorm, SwiGLU and RoPE are C kernels (ops.c, vectorized,
// one parallel region each); RoPE's frequencies are here.

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

/// RoPE in place on rows [R, heads·headDim] of x: pairs (x[2i], x[2i+1]), i < half, of each head
/// turn by (cs, sn)[r % T, i] (copies share positions; GGUF's llama layout: the converter permuted
/// q/k rows so that this "normal" rotation matches HF's).
@inline(__always)
func rope(_ pool: ThreadPool, _ x: UnsafeMutablePointer<Float>, rows R: Int, T: Int, heads: Int, headDim: Int,
          half: Int, cos cs: UnsafePointer<Float>, sin sn: UnsafePointer<Float>) {
    prge_rope(pool.raw, 0, x, Int64(heads * headDim), Int64(R), Int64(T), Int64(heads), Int64(headDim), Int64(half), cs, sn)
}

/// RoPE's frequencies scale·base^(-2i/ropeDim) / factor_i, i < ropeDim/2 (scale: linear
/// scaling's 1/factor; factor_i: Llama 3.1+'s rope_freqs, else 1), as llama.cpp's rope computes
/// them: the forward's cos/sin tables and the guide's turning back are made from them.
struct Rope {
    let invFreq: [Float]     // [ropeDim/2]

    init(ropeDim: Int, base: Float, positionScale: Float = 1, freqFactors: [Float]? = nil) {
        invFreq = (0..<ropeDim / 2).map { i in
            positionScale * (powf(base, -Float(2 * i) / Float(ropeDim)) / (freqFactors?[i] ?? 1))
        }
    }
}
