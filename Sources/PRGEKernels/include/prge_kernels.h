// prge_kernels.h: the hot loops of prge, in C so the SIMD paths (AVX-512 / VNNI / BF16 today,
// NEON later) live in a few well-named files. Internal to libprge: not part of the public ABI.
// Everything here trusts its arguments: the Swift layer validates sizes and types first.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- ggml element types (numbers as in GGUF) --------------------------------------------
enum {
    PRGE_T_F32 = 0, PRGE_T_F16 = 1, PRGE_T_Q4_0 = 2, PRGE_T_Q4_1 = 3, PRGE_T_Q5_0 = 6,
    PRGE_T_Q5_1 = 7, PRGE_T_Q8_0 = 8, PRGE_T_Q2_K = 10, PRGE_T_Q3_K = 11, PRGE_T_Q4_K = 12,
    PRGE_T_Q5_K = 13, PRGE_T_Q6_K = 14, PRGE_T_BF16 = 30,
};

// ---- dequant.c: exact dequantization (bit-identical to ggml's reference dequantizers) -----
// Dequantize n elements (a whole number of blocks of `type`) from src to dst.
// Returns 0, or -1 if the type is not supported.
int prge_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
float prge_f16_to_f32(uint16_t h);
uint16_t prge_f32_to_f16(float f);       // round to nearest even, like ggml
float prge_bf16_to_f32(uint16_t h);
uint16_t prge_f32_to_bf16(float f);      // round to nearest even, NaN kept quiet

// ---- pool.c: one layer of parallelism --------------------------------------------------------
typedef struct prge_pool prge_pool;
// n_threads >= 1 (the calling thread is one of them). NULL on failure.
prge_pool *prge_pool_create(int n_threads);
void prge_pool_free(prge_pool *pool);
int prge_pool_threads(const prge_pool *pool);
// Runs fn(ctx, i) for i in [0, n_tasks) across the pool's threads and returns when all are
// done. Not reentrant: one prge_pool_run at a time per pool.
typedef void (*prge_task_fn)(void *ctx, int64_t task);
void prge_pool_run(prge_pool *pool, prge_task_fn fn, void *ctx, int64_t n_tasks);

// ---- matmul.c: Y = X · Wᵀ with W stored quantized ------------------------------------------
// X: [M, K] f32, row stride ldx (floats). W: N rows of K elements of ggml `wtype`, row stride
// w_row_bytes. Y: [M, N] f32, row stride ldy. If accumulate != 0, Y += X·Wᵀ, else Y = X·Wᵀ.
// Weights are dequantized on the fly into cache-sized tiles, reused across all M rows.
// mode PRGE_MM_F32: fp32 products and accumulation (the reference path).
// mode PRGE_MM_BF16: X and the weight tile rounded to bf16, products accumulated in fp32.
// mode PRGE_MM_INT8: for W of any quantized type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K: one
//   scale d and offset m per 32 or 16 weights, w = d·u + m with integer codes u), M > 24, on
//   AVX512-VNNI CPUs: each
//   32-element block of an X row quantized to int8 (dx = max|x|/127, round to nearest, so
//   |x − dx·q| ≤ dx/2), exact int32 dot products with W's codes as stored (vpdpbusd), scaled per
//   block (or 16-element half) in fp32: y = Σ_blk dx·d·Σ q_x·u_w + m·dx·Σ q_x. Everything else
//   (f16 / bf16 / f32 W, the f32 products of a multi call, small M, the portable path, CPUs
//   without VNNI) runs as PRGE_MM_BF16 where
//   prge_matmul_bf16_pays(), else as PRGE_MM_F32.
// On the AVX-512 path with M > 24, an f32 W of at most 16 rows (a layer's stacked LoRA A's) is
// fp32 in every mode: a 32-column tile would be mostly padding; dot products are not.
enum { PRGE_MM_F32 = 0, PRGE_MM_BF16 = 1, PRGE_MM_INT8 = 2 };
void prge_matmul(prge_pool *pool, int mode,
                 const float *X, int64_t ldx,
                 const void *W, uint32_t wtype, int64_t w_row_bytes,
                 float *Y, int64_t ldy,
                 int64_t M, int64_t N, int64_t K, int accumulate);
// Several products of the same X, Y_i (+)= X·W_iᵀ, with X converted once and (up to 4 at a time)
// one parallel region for all their tiles: q, k, v or gate, up of a layer. Each Y_i is bit for
// bit what prge_matmul gives; the Y_i must not overlap X or each other.
// lora != NULL: then Y_i += the LoRA term (lora.c), bit for bit what prge_lora_b after the
// product gives, added by each tile of the product while it is in cache (one pass over Y_i, not
// two). Products with a term run after those without one in the same call, so a term's H may
// be the output of another product of the call (the stacked x·Aᵀ).
typedef struct prge_lora_term prge_lora_term;   // lora.c, below
typedef struct {
    const void *W; uint32_t wtype; int64_t w_row_bytes;
    float *Y; int64_t ldy;
    int64_t N;
    int accumulate;
    const prge_lora_term *lora;
} prge_mm_out;
void prge_matmul_multi(prge_pool *pool, int mode, const float *X, int64_t ldx,
                       const prge_mm_out *outs, int n_outs, int64_t M, int64_t K);
// The transposed product Y = D·W ([n, K] = [n, N]·[N, K], W as above: N rows of K elements):
// the guide's Wᵀ·δ for each row of δ. fp32 in one thread (the caller's task: the guide runs a
// layer per task); Y[i, k] sums its N products in row order. Returns 0, or -1 for a W type
// neither path decodes (Y is then partly written). mode: 0, or PRGE_MM_GENERIC.
int prge_matmul_t(int mode, const float *D, int64_t ldd, const void *W, uint32_t wtype, int64_t w_row_bytes,
                  float *Y, int64_t ldy, int64_t n, int64_t N, int64_t K);
// Added (matmul.c):
// OR into `mode` to force the portable C path (tests, benchmarks).
enum { PRGE_MM_GENERIC = 0x100 };
// Results are bit-identical for any pool size (each output element is computed by one task in a
// fixed order). They may differ in the last bits between paths and between M <= 8 and M > 8.
// Which kernels this CPU uses: "avx512-bf16" (AVX-512 with AVX512-BF16), "avx512" (without it:
// bf16 mode then runs the portable path) or "generic" (env PRGE_MM_PATH=generic forces it).
const char *prge_matmul_path(void);
// 1 when PRGE_MM_INT8 has its own kernel on this CPU (the avx512 path and AVX512-VNNI), else 0.
int prge_matmul_int8(void);
// Measured peaks of this CPU on `threads` threads (about 0.1 s each): fp32 FMA GFLOP/s (zmm
// FMAs on AVX-512 CPUs, else auto-vectorized C) and bf16 dot GFLOP/s (vdpbf16ps, 4 flops a
// lane; 0 where the CPU lacks AVX512-BF16).
double prge_bench_fma_peak_gflops(int threads);
double prge_bench_bf16_peak_gflops(int threads);
// And vpdpbusd's u8×s8 products (2 ops each, 128 a zmm instruction; 0 without the int8 kernel).
double prge_bench_int8_peak_gops(int threads);
// 1 when bf16 products are worth it here: the AVX-512 BF16 path, and vdpbf16ps measured (once
// per process, ~10 ms) at >= 1.25x the fp32 FMA rate in flops. Zen 4 runs vdpbf16ps at the FMA
// instruction rate (2x the flops); some Xeons at half of it, where bf16 is slower than fp32.
int prge_matmul_bf16_pays(void);

// ---- rng.c: the counter-based generator's bulk (layout and formulas: CounterRNG.swift) -----
// out[0, count) = elements start ..< start + count of the stream whose words are
// stream = (k0, k1, s2, s3): N(0, 1) normals, or uniforms lo + (hi − lo)·u. The same bits on
// every path; mode: 0, or PRGE_MM_GENERIC for the portable C path.
enum { PRGE_RNG_NORMAL = 0, PRGE_RNG_UNIFORM = 1 };
void prge_rng_fill(int mode, int kind, const uint32_t stream[4], int64_t start, int64_t count, float lo, float hi,
                   float *out);

// ---- lora.c: the LoRA-FA B term of all copies of a batch ---------------------------------------
// Fills out[0, count) with elements start ..< start + count of the N(0, 1) stream of `query`
// (the caller's ctx fixes the rest of the key). Called from the pool's threads.
typedef void (*prge_normal_fn)(void *ctx, int32_t query, int64_t start, int64_t count, float *out);
// The term of one adapted projection for every copy c of a P-RGE batch: rows c·T ..< (c+1)·T of
// H ([copies·T, r], row stride ldh) and of the output Y get
//   Y[rows] += s · H[rows] · (B + e[c] · Z)ᵀ,   B: [N, r] row-major,
// Z = elements of query[c]'s stream in B's element order (drawn only where e[c] != 0).
struct prge_lora_term {
    const float *H; int64_t ldh;
    const float *B; int64_t r;
    int64_t T, copies;
    const int32_t *query;
    const float *e;
    prge_normal_fn normal; void *normal_ctx;
    float s;
};
// Adds term t to Y ([copies·T, N], stride ldy) in one parallel region. prge_matmul_multi adds
// it inside the base product's tiles instead (prge_mm_out.lora) with the same bits. Bit-identical
// for any pool size and copy count; mode: 0, or PRGE_MM_GENERIC for the C path.
void prge_lora_b(prge_pool *pool, int mode, const prge_lora_term *t, float *Y, int64_t ldy, int64_t N);

// ---- ops.c: row-wise ops of the Llama block, one parallel region each ------------------------
// Bit-identical for any pool size; mode: 0, or PRGE_MM_GENERIC for the C path.
// out[r, i] = x[r, i] / sqrt(mean_i(x[r, i]²) + eps) · w[i] for `rows` rows of n (out may be x).
void prge_rms_norm(prge_pool *pool, int mode, const float *x, int64_t ldx, const float *w,
                   float *out, int64_t ldo, int64_t rows, int64_t n, float eps);
// gate[i] = silu(gate[i]) · up[i] for i < n, silu(g) = g / (1 + e^-g); e^x within 2 ulp.
void prge_swiglu(prge_pool *pool, int mode, float *gate, const float *up, int64_t n);
// RoPE in place: row r of x ([rows, heads·head_dim], stride ldx) is at table row r % T (copies
// share positions); pairs (x[2i], x[2i+1]) of each head, i < half, turn by (cs, sn)[r % T, i]:
// (a·c − b·s, a·s + b·c), each product rounded before the sum (the Swift path's bits).
void prge_rope(prge_pool *pool, int mode, float *x, int64_t ldx, int64_t rows, int64_t T, int64_t heads,
               int64_t head_dim, int64_t half, const float *cs, const float *sn);

// ---- attention.c: causal attention of a ragged batch, all heads, one parallel region ---------
// Sequence s has len[s] query rows q_row[s] ..< q_row[s] + len[s] of q and out, at positions
// p0 ..< p0 + len[s]; its keys and values are rows kv_row[s] ..< kv_row[s] + p0 + len[s] of k and
// v (kv_row[s] = q_row[s] without a KV cache). Query head h (columns h·head_dim ..< (h+1)·head_dim)
// reads KV head h / (n_head / n_head_kv). Row strides ldq, ldkv, ldo (floats). fp32 throughout:
// softmax(scale · q·kᵀ) · v with the row max subtracted. A row's bits depend only on its own
// data (not the pool size, the batch, or p0 splitting a sequence); mode: 0, or PRGE_MM_GENERIC.
void prge_attention(prge_pool *pool, int mode, const float *q, int64_t ldq, const float *k,
                    const float *v, int64_t ldkv, float *out, int64_t ldo, const int64_t *q_row,
                    const int64_t *kv_row, const int64_t *len, int64_t n_seq, int64_t p0,
                    int64_t n_head, int64_t n_head_kv, int64_t head_dim, float scale);

#ifdef __cplusplus
}
#endif
