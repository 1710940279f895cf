import PRGEKernels

/// How the linear layers multiply. fp32 is the reference; bf16 rounds activations and weights
/// to bf16 and accumulates in fp32 (AVX512-BF16), used only where training is shown to learn as well.
/// int8 quantizes activations to int8 per 32-element block for quantized weights (Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, Q2_K … Q6_K, multiplied as stored) in calls with more than 24 rows
/// (AVX512-VNNI; prge_kernels.h), and bf16 or fp32, whichever is faster here, everywhere else
/// (f16 / bf16 / f32 weights, small calls).
/// Its rounding is coarser than bf16's and not smooth, so P-RGE needs a larger ε with it (Recipe).
public enum NumericMode: String, Sendable, CaseIterable {
    case fp32, bf16, int8
    var kernelMode: Int32 {
        switch self {
        case .fp32: Int32(PRGE_MM_F32)
        case .bf16: Int32(PRGE_MM_BF16)
        case .int8: Int32(PRGE_MM_INT8)
        }
    }

    /// The fastest mode that trains as well as fp32 (BENCHMARKS.md, with the recipe's ε): int8
    /// where its VNNI kernel runs; else bf16 where the CPU's bf16 dot products outrun its fp32
    /// FMAs (prge_matmul_bf16_pays: Zen 4 yes, Xeons that run vdpbf16ps at half rate no); else fp32.
    public static var fastest: NumericMode {
        prge_matmul_int8() == 1 ? .int8 : prge_matmul_bf16_pays() == 1 ? .bf16 : .fp32
    }
}

/// y[m, n] (+)= Σ_k x[m, k] · W[n, k] over `m` rows. Shapes are the caller's contract.
@inline(__always)
func matmul(_ pool: ThreadPool, _ mode: NumericMode,
            _ x: UnsafePointer<Float>, ldx: Int, _ w: QMatrix,
            _ y: UnsafeMutablePointer<Float>, ldy: Int, rows m: Int, accumulate: Bool = false) {
    prge_matmul(pool.raw, mode.kernelMode, x, Int64(ldx), w.data, w.type.rawValue, Int64(w.rowBytes),
                y, Int64(ldy), Int64(m), Int64(w.rows), Int64(w.cols), accumulate ? 1 : 0)
}

/// One product of a multi-matmul: y (+)= x · Wᵀ, W `n` rows of `type` (a model matrix, or a
/// row-major f32 matrix such as a stack of LoRA A's), then y += its LoRA term if it has one
/// (prge_kernels.h: added inside the product's tiles).
struct MatmulOut {
    let w: UnsafeRawPointer, type: GGMLType, rowBytes: Int, n: Int
    let y: UnsafeMutablePointer<Float>, ldy: Int
    let accumulate: Bool
    let lora: UnsafePointer<prge_lora_term>?

    init(_ w: QMatrix, _ y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool,
         lora: UnsafePointer<prge_lora_term>? = nil) {
        self.w = w.data; type = w.type; rowBytes = w.rowBytes; n = w.rows
        self.y = y; self.ldy = ldy; self.accumulate = accumulate; self.lora = lora
    }

    init(f32 w: UnsafePointer<Float>, n: Int, k: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int) {
        self.w = UnsafeRawPointer(w); type = .f32; rowBytes = k * 4; self.n = n
        self.y = y; self.ldy = ldy; accumulate = false; lora = nil
    }
}

/// y_i (+)= x · W_iᵀ for several matrices that read the same x [m, k] (q, k, v and their
/// stacked A's; gate, up and theirs): x converted once, one parallel region (two when some have
/// a LoRA term: those run second, as their H is the A stack's output). Each y_i gets the bits
/// the single-matrix call gives (the order of operations depends on m and k, not on W).
func matmul(_ pool: ThreadPool, _ mode: NumericMode, _ x: UnsafePointer<Float>, ldx: Int, k: Int,
            _ outs: [MatmulOut], rows m: Int) {
    let o = outs.map {
        prge_mm_out(W: $0.w, wtype: $0.type.rawValue, w_row_bytes: Int64($0.rowBytes), Y: $0.y, ldy: Int64($0.ldy),
                    N: Int64($0.n), accumulate: $0.accumulate ? 1 : 0, lora: $0.lora)
    }
    prge_matmul_multi(pool.raw, mode.kernelMode, x, Int64(ldx), o, Int32(o.count), Int64(m), Int64(k))
}

/// The same for a plain row-major f32 matrix w [n, k] (LoRA A and B): always fp32.
@inline(__always)
func matmulF32(_ pool: ThreadPool, _ x: UnsafePointer<Float>, ldx: Int, _ w: UnsafePointer<Float>, n: Int, k: Int,
               _ y: UnsafeMutablePointer<Float>, ldy: Int, rows m: Int, accumulate: Bool) {
    prge_matmul(pool.raw, Int32(PRGE_MM_F32), x, Int64(ldx), w, GGMLType.f32.rawValue, Int64(k * 4),
                y, Int64(ldy), Int64(m), Int64(n), Int64(k), accumulate ? 1 : 0)
}

/// y [n, W.cols] = d [n, W.rows] · W: the transposed product (the guide's Wᵀ·δ for each of n rows
/// of δ), fp32, on the calling thread (the guide runs one layer per pool task).
func matmulTransposed(_ d: UnsafePointer<Float>, _ w: QMatrix, _ y: UnsafeMutablePointer<Float>, rows n: Int) {
    let rc = prge_matmul_t(0, d, Int64(w.rows), w.data, w.type.rawValue, Int64(w.rowBytes), y, Int64(w.cols),
                           Int64(n), Int64(w.rows), Int64(w.cols))
    precondition(rc == 0, "matmulTransposed: \(w.name) has type \(w.type.name), which no kernel decodes")
}
