// matmul.c: Y = X · Wᵀ with W stored quantized.
//
// Paths (chosen per call; every output element is computed by exactly one task, with a fixed
// order of operations that depends only on M, K and the path, never on the thread count or on
// the tiling, so results are bit-identical for any number of threads):
//   generic   portable C (any CPU): a W row at a time dequantized to fp32, 8-lane dot products.
//   avx512    (AVX-512F/BW/VL/DQ: Skylake-SP and later, Zen 4), selected at run time; its bf16
//     mode needs AVX512-BF16 too (Cooper Lake, Sapphire Rapids, Zen 4) and runs the generic
//     path where that is missing (Ice Lake, Skylake-SP):
//     "panel" (M > MM_SMALL_M): X is packed once per call into blocks of MR rows; each task
//       dequantizes NC output columns of W into a k-major panel (fp32, or bf16 pairs for
//       vdpbf16ps) and runs an MR×32 register-blocked micro-kernel over its range of rows.
//       Every lane accumulates its dot product sequentially over k (one FMA / dpbf16 chain).
//     "int8 panel" (PRGE_MM_INT8, W of a type with one scale and offset per 32 weights: Q4_0,
//       Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, or per 16: Q2_K, Q3_K, Q6_K; AVX512-VNNI): the same tiling with
//       MR8-row X blocks quantized to int8 per 32-k block and panels of W's integer codes as
//       stored; per block (or 16-k half), exact int32 vpdpbusd sums, then one fp32
//       scale-and-add chain per lane.
//     "dot" (M <= MM_SMALL_M: generation, short prompts): each task dequantizes W rows into
//       L1 and takes dot products with all M rows of X (streams W once, memory-bound).
//     "skinny" (M > MM_SMALL_M, f32 W of <= 64 rows: the stacked LoRA A's): Wᵀ packed once,
//       rows of X read in place, fp32 in every mode; in int8 mode beside coded products, each
//       6-row block right after the int8 panel path has quantized it.
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <stdio.h>
#include <time.h>
#include <stdatomic.h>
#include <pthread.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

// dequant.c is written in parallel; keep linking even while it is absent.
#pragma weak prge_dequantize_row

static inline float mm_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: normalize
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float mm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float mm_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u;  // NaN: keep quiet
    else u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static inline uint16_t mm_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

// Decode one row of K elements to fp32. Returns 0, or -1 when the type is unsupported.
static int mm_decode_row(uint32_t type, const void *src, float *dst, int64_t K) {
    const uint8_t *b = (const uint8_t *)src;
    switch (type) {
    case PRGE_T_F32: memcpy(dst, src, (size_t)K * 4); return 0;
    case PRGE_T_F16:
        for (int64_t i = 0; i < K; i++) dst[i] = mm_f16_to_f32(mm_rd16(b + 2 * i));
        return 0;
    case PRGE_T_BF16:
        for (int64_t i = 0; i < K; i++) dst[i] = mm_bf16_to_f32(mm_rd16(b + 2 * i));
        return 0;
    case PRGE_T_Q4_0:
        for (int64_t i = 0; i < K / 32; i++, b += 18, dst += 32) {
            const float d = mm_f16_to_f32(mm_rd16(b));
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((b[2 + j] & 0xf) - 8) * d;
                dst[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
            }
        }
        return 0;
    case PRGE_T_Q4_1:
        for (int64_t i = 0; i < K / 32; i++, b += 20, dst += 32) {
            const float d = mm_f16_to_f32(mm_rd16(b)), m = mm_f16_to_f32(mm_rd16(b + 2));
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)(b[4 + j] & 0xf) * d + m;
                dst[j + 16] = (float)(b[4 + j] >> 4) * d + m;
            }
        }
        return 0;
    case PRGE_T_Q8_0:
        for (int64_t i = 0; i < K / 32; i++, b += 34, dst += 32) {
            const float d = mm_f16_to_f32(mm_rd16(b));
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)b[2 + j] * d;
        }
        return 0;
    default:
        if (!prge_dequantize_row) return -1;
        return prge_dequantize_row(type, src, dst, K);
    }
}

// Per-thread scratch (kernels_internal.h), one allocation per slot, freed when the thread exits
// (a pthread key destructor: host threads come and go). prge_matmul's slot 0 is its packed X.
typedef struct { void *p; size_t n; } mm_buf;
static _Thread_local mm_buf mm_tls[4];
static pthread_key_t mm_tls_key;
static pthread_once_t mm_tls_once = PTHREAD_ONCE_INIT;
static void mm_tls_free(void *v) {
    mm_buf *b = (mm_buf *)v;
    for (int i = 0; i < 4; i++) {
        free(b[i].p);
        b[i].p = NULL;
        b[i].n = 0;
    }
}
static void mm_tls_key_create(void) { (void)pthread_key_create(&mm_tls_key, mm_tls_free); }
void *prge_scratch(int slot, size_t bytes) {
    mm_buf *b = &mm_tls[slot];
    if (b->n < bytes) {
        if (b->n == 0) {   // the thread's first buffer in this slot: make sure the destructor runs
            pthread_once(&mm_tls_once, mm_tls_key_create);
            if (!pthread_getspecific(mm_tls_key)) (void)pthread_setspecific(mm_tls_key, mm_tls);
        }
        free(b->p);
        size_t n = (bytes + 4095) & ~(size_t)4095;
        b->p = aligned_alloc(64, n);
        if (!b->p) abort();
        b->n = n;
    }
    return b->p;
}

// ---- generic path ----------------------------------------------------------------------------
#define MM_GEN_NT 16   // W rows per task

typedef struct {
    int mode;
    const float *X; int64_t ldx;
    const uint8_t *W; uint32_t wtype; int64_t wrb;
    float *Y; int64_t ldy;
    int64_t M, N, K;
    int accumulate;
} mm_job;

static inline float mm_dot(const float *a, const float *b, int64_t K) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[k + j];
    float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}

static void mm_generic_task(void *vctx, int64_t task) {
    const mm_job *j = (const mm_job *)vctx;
    const int64_t n0 = task * MM_GEN_NT;
    const int64_t nn = (j->N - n0) < MM_GEN_NT ? (j->N - n0) : MM_GEN_NT;
    const int64_t K = j->K;
    float *w = (float *)prge_scratch(1, (size_t)(nn * K + K) * sizeof(float));
    float *xr = w + nn * K;
    for (int64_t n = 0; n < nn; n++) {
        if (mm_decode_row(j->wtype, j->W + (n0 + n) * j->wrb, w + n * K, K) != 0) abort();
        if (j->mode == PRGE_MM_BF16)
            for (int64_t k = 0; k < K; k++) w[n * K + k] = mm_round_bf16(w[n * K + k]);
    }
    for (int64_t m = 0; m < j->M; m++) {
        const float *x = j->X + m * j->ldx;
        if (j->mode == PRGE_MM_BF16) {
            for (int64_t k = 0; k < K; k++) xr[k] = mm_round_bf16(x[k]);
            x = xr;
        }
        float *y = j->Y + m * j->ldy + n0;
        for (int64_t n = 0; n < nn; n++) {
            const float d = mm_dot(x, w + n * K, K);
            y[n] = j->accumulate ? y[n] + d : d;
        }
    }
}


static void mm_generic(prge_pool *pool, const mm_job *j) {
    prge_pool_run(pool, mm_generic_task, (void *)j, (j->N + MM_GEN_NT - 1) / MM_GEN_NT);
}

#if PRGE_X86
// What int8 mode runs where its kernel does not: the faster of bf16 and fp32 on this CPU.
static int mm_int8_rest(void) { return prge_matmul_bf16_pays() == 1 ? PRGE_MM_BF16 : PRGE_MM_F32; }

// =============================================================================================
// AVX-512 (F/BW/VL/DQ + BF16) path.
// =============================================================================================
// The int8 kernel's functions also use AVX512-VNNI (vpdpbusd); they run only where it exists.
#define PRGE_AVX512_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

#ifndef MM_TUNE
enum { MR = 14, NR = 32, NC = 64, MM_SMALL_M = 24 };
#else   // benchmarks/kernels: -DMM_TUNE -DMM_MR=.. -DMM_NC=.. -DMM_SMALLM=..
enum { MR = MM_MR, NR = 32, NC = MM_NC, MM_SMALL_M = MM_SMALLM };
#endif

// Decode one row of K elements of `type` to fp32 (bit-identical to dequant.c's reference).
PRGE_AVX512 static void mm_decode_row_avx512(uint32_t type, const uint8_t *b, float *dst, int64_t K) {
    int64_t i = 0;
    switch (type) {
    case PRGE_T_F32: memcpy(dst, b, (size_t)K * 4); return;
    case PRGE_T_F16:
        for (; i + 16 <= K; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 2 * i))));
        for (; i < K; i++) dst[i] = mm_f16_to_f32(mm_rd16(b + 2 * i));
        return;
    case PRGE_T_BF16:
        for (; i + 16 <= K; i += 16)
            _mm512_storeu_si512(dst + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(
                                   _mm256_loadu_si256((const __m256i *)(b + 2 * i))), 16));
        for (; i < K; i++) dst[i] = mm_bf16_to_f32(mm_rd16(b + 2 * i));
        return;
    case PRGE_T_Q8_0:
        for (; i < K; i += 32, b += 34) {
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(mm_rd16(b)));
            const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)));
            const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)));
            _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
            _mm512_storeu_ps(dst + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
        }
        return;
    case PRGE_T_Q4_0:
        for (; i < K; i += 32, b += 18) {
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(mm_rd16(b)));
            const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)));
            const __m512i e8 = _mm512_set1_epi32(8), m4 = _mm512_set1_epi32(0xf);
            const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(q, m4), e8);
            const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), e8);
            _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
            _mm512_storeu_ps(dst + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
        }
        return;
    case PRGE_T_Q4_1:
        for (; i < K; i += 32, b += 20) {
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(mm_rd16(b)));
            const __m512 m = _mm512_set1_ps(_cvtsh_ss(mm_rd16(b + 2)));
            const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + 4)));
            const __m512i lo = _mm512_and_si512(q, _mm512_set1_epi32(0xf));
            const __m512i hi = _mm512_srli_epi32(q, 4);
            // d*q + m, unfused like the reference dequantizer
            _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), m));
            _mm512_storeu_ps(dst + i + 16, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(hi), d), m));
        }
        return;
    default:
        if (mm_decode_row(type, b, dst, K) != 0) abort();
        return;
    }
}

// The bf16 mode's row conversion, out of line: only it and bf16's micro-kernels use
// AVX512-BF16, so the code around them runs on AVX-512 CPUs without it. x[0, K) -> n dwords
// (n a multiple of 16), dword p the bf16 pair (x[2p], x[2p+1]) rounded to nearest even, zero past K.
PRGE_AVX512_BF16 static void mm_pairs_bf16(const float *x, int64_t K, uint32_t *dst, int64_t n) {
    for (int64_t p = 0; p < n; p += 16) {
        const int64_t k0 = 2 * p;
        const __m512 lo = _mm512_maskz_loadu_ps(prge_mask16(K - k0), x + k0);
        const __m512 hi = _mm512_maskz_loadu_ps(prge_mask16(K - k0 - 16), x + k0 + 16);
        _mm512_storeu_si512(dst + p, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

// One product X·Wᵀ of a panel-path call, and how its tasks split it (column tiles × M chunks).
typedef struct {
    const uint8_t *W; uint32_t wtype; int64_t wrb;
    float *Y; int64_t ldy;
    int64_t N;
    int accumulate;
    const prge_lora_term *lora; const int32_t *order;   // the LoRA term each tile adds, or NULL
    int64_t first_task, n_tiles, m_chunks, mb_per_chunk;
} mm_part;

enum { MM_MAX_PARTS = 4 };   // products sharing one packed X per region (q, k, v; gate, up)

// int8 kernel: 6 rows × 32 columns = 12 int32 + 12 fp32 accumulators + 2 W vectors (of 32 zmm).
#ifndef MM_TUNE
enum { MR8 = 6 };
#else
enum { MR8 = MM_MR8 };
#endif
// Floats per 32-k block and packed X row: dx, sx = dx·Σq, and dx·Σq of each 16-k half (the
// kernel for W with a scale per 16 weights takes those two instead of sx).
enum { MM_XS = 4 };

typedef struct mm_skinny_ctx mm_skinny_ctx;

typedef struct {
    int mode;            // PRGE_MM_F32, PRGE_MM_BF16 or PRGE_MM_INT8
    const float *X; int64_t ldx;
    int64_t M, K;
    int64_t KP;          // fp32: K; bf16: number of k pairs (K+1)/2; int8: k quads K/4
    int64_t KD;          // decode length: K rounded up to 32 (decode buffer, zero tail)
    int mr;              // rows per X block: MR, or MR8 (int8)
    int64_t xstride;     // 4-byte words per X block
    void *xp;            // packed X: [M/mr blocks][KP][mr] (floats or bf16-pair / int8-quad
                         // dwords); int8: then [K/32][MM_XS][mr] floats: dx, sx = dx·Σq, dx·Σq per half
    int64_t mblocks, xpack_per_task;
    mm_part part[MM_MAX_PARTS];   // the products of the call; their tasks follow each other
    int n_parts;
    const mm_skinny_ctx *sk;      // int8: skinny products computed as X is quantized
    int n_sk;
} mm_ctx;

// In-register 16x16 transpose of 32-bit elements: r[i] holds row i; afterwards r[k] holds column k.
PRGE_AVX512 PRGE_INLINE void mm_tr16(__m512 *r) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

// ---- skinny path: f32 W of at most 64 rows (a layer's stacked LoRA A's, [r·targets, d_in]) ----
// A panel tile is 32 columns wide and needs X packed, so N = 2..64 would pay for padding and a
// second copy of X. X's rows are read in place, fp32 in every mode (these products are ~2 % of a
// step's flops), in one of two layouts:
//   N <= 8 (the recipe's rank 2: N = 2..6): each output a dot product of an X row and a W row,
//     16 lanes over k, then one fixed reduction (lanes over N would be mostly empty);
//   N > 8: Wᵀ packed once per call ([K][NP], NP = N rounded up to 16, zero columns past N), blocks
//     of 6 rows × all NP columns (6–24 FMA chains), each lane one FMA chain over k, as the panel
//     path's.
enum { MM_SKINNY_N = 64, MM_SKINNY_DOT_N = 8, MM_SKINNY_ROWS = 8 * MR8 };

struct mm_skinny_ctx { const float *X; int64_t ldx; const prge_mm_out *o; const float *wt; int64_t M, K, NP; };

static int mm_skinny_fits(const prge_mm_out *o) { return o->wtype == PRGE_T_F32 && o->N <= MM_SKINNY_N && !o->lora; }

// wt[k·NP + n] = W[n][k]: 16 W rows by 16 k at a time through mm_tr16.
PRGE_AVX512 static void mm_skinny_pack(const prge_mm_out *o, int64_t K, int64_t NP, float *wt) {
    const int64_t ldw = o->w_row_bytes / (int64_t)sizeof(float);
    for (int64_t n0 = 0; n0 < NP; n0 += 16)
        for (int64_t k0 = 0; k0 < K; k0 += 16) {
            const __mmask16 km = prge_mask16(K - k0);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = n0 + i < o->N ? _mm512_maskz_loadu_ps(km, (const float *)o->W + (n0 + i) * ldw + k0)
                                     : _mm512_setzero_ps();
            mm_tr16(r);
            const int64_t nk = K - k0 < 16 ? K - k0 : 16;
            for (int i = 0; i < nk; i++) _mm512_store_ps(wt + (k0 + i) * NP + n0, r[i]);
        }
}

// N <= G <= MM_SKINNY_DOT_N: row m's columns (the rest of the G load row 0 and are not stored):
// full 16-lane steps over k, a masked tail, then one fixed reduction per column.
PRGE_AVX512 PRGE_INLINE void mm_skinny_dot_row(const int G, const mm_skinny_ctx *c, int64_t m) {
    const prge_mm_out *o = c->o;
    const int64_t ldw = o->w_row_bytes / (int64_t)sizeof(float), K16 = c->K & ~(int64_t)15;
    const float *x = c->X + m * c->ldx, *w[MM_SKINNY_DOT_N];
    __m512 acc[MM_SKINNY_DOT_N];
    for (int g = 0; g < G; g++) {
        w[g] = (const float *)o->W + (g < o->N ? g : 0) * ldw;
        acc[g] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < K16; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k);
        for (int g = 0; g < G; g++) acc[g] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[g] + k), acc[g]);
    }
    if (K16 < c->K) {
        const __mmask16 km = prge_mask16(c->K - K16);
        const __m512 xv = _mm512_maskz_loadu_ps(km, x + K16);
        for (int g = 0; g < G; g++) acc[g] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(km, w[g] + K16), acc[g]);
    }
    float *y = o->Y + m * o->ldy;
    for (int g = 0; g < G && g < o->N; g++) {
        const float d = _mm512_reduce_add_ps(acc[g]);
        y[g] = o->accumulate ? y[g] + d : d;
    }
}

// Rows [m, m + R) by all NP = 16·G columns; the columns past N are not stored.
PRGE_AVX512 PRGE_INLINE void mm_skinny_rows(const int R, const int G, const mm_skinny_ctx *c, int64_t m) {
    const prge_mm_out *o = c->o;
    const float *x = c->X + m * c->ldx;
    __m512 acc[16][4];
    for (int i = 0; i < R; i++)
        for (int g = 0; g < G; g++) acc[i][g] = _mm512_setzero_ps();
    for (int64_t k = 0; k < c->K; k++) {
        __m512 w[4];
        for (int g = 0; g < G; g++) w[g] = _mm512_load_ps(c->wt + k * c->NP + 16 * g);
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(x[i * c->ldx + k]);
            for (int g = 0; g < G; g++) acc[i][g] = _mm512_fmadd_ps(a, w[g], acc[i][g]);
        }
    }
    for (int i = 0; i < R; i++) {
        float *y = o->Y + (m + i) * o->ldy;
        for (int g = 0; g < G; g++) {
            const __mmask16 km = prge_mask16(o->N - 16 * g);
            __m512 v = acc[i][g];
            if (o->accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(km, y + 16 * g), v);
            _mm512_mask_storeu_ps(y + 16 * g, km, v);
        }
    }
}

// Rows [m, m1) of a skinny product: blocks of MR8 rows (2–4 FMA chains per row of 32 zmm; the
// int8 X quantization hands over one such block at a time), then one row at a time.
#define MM_SKINNY_RANGE(G)                                                                       \
    do {                                                                                         \
        for (; m + MR8 <= m1; m += MR8) mm_skinny_rows(MR8, G, c, m);                            \
        for (; m < m1; m++) mm_skinny_rows(1, G, c, m);                                          \
    } while (0)

PRGE_AVX512 static void mm_skinny_range(const mm_skinny_ctx *c, int64_t m, int64_t m1) {
    if (c->o->N <= MM_SKINNY_DOT_N) {
        for (; m < m1; m++) {
            if (c->o->N <= 4) mm_skinny_dot_row(4, c, m);
            else mm_skinny_dot_row(MM_SKINNY_DOT_N, c, m);
        }
        return;
    }
    switch (c->NP / 16) {
    case 1: MM_SKINNY_RANGE(1); break;
    case 2: MM_SKINNY_RANGE(2); break;
    case 3: MM_SKINNY_RANGE(3); break;
    default: MM_SKINNY_RANGE(4); break;
    }
}

PRGE_AVX512 static void mm_skinny_task(void *vctx, int64_t task) {
    const mm_skinny_ctx *c = (const mm_skinny_ctx *)vctx;
    const int64_t m = task * MM_SKINNY_ROWS;
    mm_skinny_range(c, m, m + MM_SKINNY_ROWS < c->M ? m + MM_SKINNY_ROWS : c->M);
}

// Skinny product o's context, its Wᵀ packed at wt (mm_skinny_floats(o, K) floats; none for N <= 8).
static int64_t mm_skinny_floats(const prge_mm_out *o, int64_t K) {
    return o->N <= MM_SKINNY_DOT_N ? 0 : K * ((o->N + 15) & ~(int64_t)15);
}

PRGE_AVX512 static mm_skinny_ctx mm_skinny_prepare(const float *X, int64_t ldx, const prge_mm_out *o, int64_t M,
                                                   int64_t K, float *wt) {
    const mm_skinny_ctx c = {X, ldx, o, wt, M, K, (o->N + 15) & ~(int64_t)15};
    if (o->N > MM_SKINNY_DOT_N) mm_skinny_pack(o, K, c.NP, wt);
    return c;
}

// On its own (fp32 and bf16 modes, or no int8 product beside it): Wᵀ in the caller's scratch
// slot 0 (the panel paths' packed X, not in use until this returns).
PRGE_AVX512 static void mm_skinny(prge_pool *pool, const float *X, int64_t ldx, const prge_mm_out *o, int64_t M,
                                  int64_t K) {
    float *wt = (float *)prge_scratch(0, (size_t)mm_skinny_floats(o, K) * sizeof(float));
    const mm_skinny_ctx c = mm_skinny_prepare(X, ldx, o, M, K, wt);
    prge_pool_run(pool, mm_skinny_task, (void *)&c, (M + MM_SKINNY_ROWS - 1) / MM_SKINNY_ROWS);
}

// ---- X packing (once per call; parallel over groups of MR-row blocks) ----
// int8: row i of block mb (zeros past M) -> quads xp[q·MR8 + i] (4 consecutive k as int8) and,
// per 32-k block, dx = max|x|/127, sx = dx·Σq and dx·Σq over each 16-k half. Rounding to
// nearest: |x − dx·q| ≤ dx/2.
// A NaN in the block makes dx NaN (max would drop it), so the row's outputs are NaN as in fp32.
PRGE_AVX512 static void mm_xquant_row(const mm_ctx *c, int64_t mb, int i) {
    uint32_t *xp = (uint32_t *)c->xp + mb * c->xstride + i;
    float *xs = (float *)c->xp + mb * c->xstride + c->KP * MR8 + i;
    const int64_t m = mb * MR8 + i;
    const float *x = m < c->M ? c->X + m * c->ldx : NULL;
    for (int64_t b = 0; b < c->K / 32; b++, xp += 8 * MR8, xs += MM_XS * MR8) {
        const __m512 v0 = x ? _mm512_loadu_ps(x + 32 * b) : _mm512_setzero_ps();
        const __m512 v1 = x ? _mm512_loadu_ps(x + 32 * b + 16) : _mm512_setzero_ps();
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        if (_mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q)) amax = NAN;
        const __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        const __m512i q0 =
            _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512i q1 =
            _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        uint32_t qd[8];
        _mm_storeu_si128((__m128i *)qd, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(qd + 4), _mm512_cvtepi32_epi8(q1));
        for (int t = 0; t < 8; t++) xp[t * MR8] = qd[t];
        const float dx = amax / 127.0f;
        xs[0] = dx;
        xs[MR8] = dx * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        xs[2 * MR8] = dx * (float)_mm512_reduce_add_epi32(q0);
        xs[3 * MR8] = dx * (float)_mm512_reduce_add_epi32(q1);
    }
}

// fp32 / bf16: rows [mb·MR, mb·MR + MR) of X (zeros past M) -> dwords xp[p·MR + i], p < KP: the
// float x[p], or the bf16 pair (x[2p], x[2p+1]) (zero past K; bf16 rows are converted into
// scratch first). Each row's next 16 dwords are loaded, transposed in registers and stored as
// 16 runs of MR: a row's dwords land MR apart, which one store (or a scatter) per dword made
// ~5 % of the int8 step (its A-stack products).
PRGE_AVX512 static void mm_xpack_block(const mm_ctx *c, int64_t mb) {
    _Static_assert(MR <= 16, "one transposed register per packed k");
    uint32_t *xp = (uint32_t *)c->xp + mb * c->xstride;
    const int64_t m0 = mb * MR;
    const int live = (int)(c->M - m0 < MR ? c->M - m0 : MR);
    const float *src[MR];   // each live row as KP dwords (readable up to `len`)
    int64_t len = c->K;
    if (c->mode == PRGE_MM_F32) {
        for (int i = 0; i < live; i++) src[i] = c->X + (m0 + i) * c->ldx;
    } else {
        const int64_t RSW = (c->KP + 15) & ~(int64_t)15;
        uint32_t *pairs = (uint32_t *)prge_scratch(2, (size_t)(MR * RSW) * 4);
        for (int i = 0; i < live; i++) {
            mm_pairs_bf16(c->X + (m0 + i) * c->ldx, c->K, pairs + i * RSW, RSW);
            src[i] = (const float *)(pairs + i * RSW);
        }
        len = c->KP;
    }
    for (int64_t p0 = 0; p0 < c->KP; p0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < live ? _mm512_maskz_loadu_ps(prge_mask16(len - p0), src[i] + p0) : _mm512_setzero_ps();
        mm_tr16(r);
        const int64_t np = c->KP - p0 < 16 ? c->KP - p0 : 16;
        for (int64_t t = 0; t < np; t++) _mm512_mask_storeu_ps((float *)xp + (p0 + t) * MR, prge_mask16(MR), r[t]);
    }
}

PRGE_AVX512 static void mm_xpack_task(void *vctx, int64_t task) {
    const mm_ctx *c = (const mm_ctx *)vctx;
    const int64_t b0 = task * c->xpack_per_task;
    const int64_t b1 = b0 + c->xpack_per_task < c->mblocks ? b0 + c->xpack_per_task : c->mblocks;
    for (int64_t mb = b0; mb < b1; mb++) {
        if (c->mode == PRGE_MM_INT8) {
            for (int i = 0; i < MR8; i++) mm_xquant_row(c, mb, i);
            // The skinny products of these rows while they are in L1: X is read from memory once.
            const int64_t m1 = (mb + 1) * MR8 < c->M ? (mb + 1) * MR8 : c->M;
            for (int s = 0; s < c->n_sk; s++) mm_skinny_range(&c->sk[s], mb * MR8, m1);
        } else {
            mm_xpack_block(c, mb);
        }
    }
}

// ---- W panel packing: columns [n0, n0+32) -> k-major panel (zero for columns >= N) ----
// 16 rows of RS 32-bit elements (tmp, one per column) -> columns [h, h+16) of a k-major panel.
PRGE_AVX512 static void mm_panel_transpose(const void *tmp, int64_t RS, int64_t KP, uint32_t *panel, int h) {
    for (int64_t k0 = 0; k0 < KP; k0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps((const float *)tmp + i * RS + k0);
        mm_tr16(r);
        const int64_t nk = KP - k0 < 16 ? KP - k0 : 16;
        for (int i = 0; i < nk; i++) _mm512_store_ps((float *)panel + (k0 + i) * NR + h, r[i]);
    }
}

// tmp: scratch of 16 rows x RS 32-bit elements, RS = KP rounded up to 16 (+ conversion slack).
PRGE_AVX512 static void mm_pack_panel(const mm_ctx *c, const mm_part *w, int64_t n0, uint32_t *panel, float *tmp) {
    const int64_t RS = ((c->KP + 15) & ~(int64_t)15);
    float *dec = tmp + 16 * RS;      // one decoded fp32 row (bf16 mode)
    for (int h = 0; h < NR; h += 16) {
        for (int r = 0; r < 16; r++) {
            const int64_t n = n0 + h + r;
            uint32_t *row = (uint32_t *)tmp + r * RS;
            if (n >= w->N) { memset(row, 0, (size_t)RS * 4); continue; }
            if (c->mode == PRGE_MM_F32) {
                mm_decode_row_avx512(w->wtype, w->W + n * w->wrb, (float *)row, c->K);
                memset(row + c->K, 0, (size_t)(RS - c->K) * 4);
            } else {
                mm_decode_row_avx512(w->wtype, w->W + n * w->wrb, dec, c->K);
                mm_pairs_bf16(dec, c->K, row, RS);
            }
        }
        mm_panel_transpose(tmp, RS, c->KP, panel, h);
    }
}

// The W types the int8 kernels multiply as they are stored: those whose every 32-element block
// holds w = d·u + m with unsigned integer codes u <= 255 and one d, m per block, or (Q2_K, Q3_K,
// Q6_K) one d, m per 16-element half of it. (f16 / f32 have no codes.)
static int mm_int8_halves(uint32_t t) { return t == PRGE_T_Q2_K || t == PRGE_T_Q3_K || t == PRGE_T_Q6_K; }
static int mm_int8_type(uint32_t t) {
    return t == PRGE_T_Q4_0 || t == PRGE_T_Q4_1 || t == PRGE_T_Q5_0 || t == PRGE_T_Q5_1 || t == PRGE_T_Q8_0 ||
           t == PRGE_T_Q4_K || t == PRGE_T_Q5_K || mm_int8_halves(t);
}

// Block b (elements [32b, 32b+32)) of a W row of an mm_int8_type: its 32 codes u in element
// order (the unsigned bytes of vpdpbusd), and dm = {d, d', m, m'} with w = d·u + m in the
// block's first 16 elements and d'·u + m' in the others (equal pairs but for Q6_K): the value
// prge_dequantize_row computes (up to its own rounding). Q4_0 u = q, m = −8d; Q4_1 u = q; Q5_0
// u = q (5 bits), m = −16d; Q5_1 u = q; Q8_0 u = q + 128, m = −128d; Q4_K / Q5_K sub-block b % 8
// of super-block b / 8: d = d_sb·scale, m = −dmin·min; per 16-element half: Q6_K u = q (6 bits),
// d = d_sb·scale, m = −32d; Q3_K u = q (3 bits), d = d_sb·scale, m = −4d; Q2_K u = q (2 bits),
// d = d_sb·scale, m = −dmin·min (scales and mins are f16 × small integers: exact in fp32).
PRGE_AVX512 static void mm_block_codes(uint32_t type, const uint8_t *row, int64_t b, uint8_t *u, float *dm) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    float *d = dm, *m = dm + 2;
    __m256i c;
    if (type == PRGE_T_Q2_K || type == PRGE_T_Q3_K) {
        // 128-element half n = j / 4 of super-block b / 8: element l of block j is bit pair
        // 2·(j % 4) of q[32n + l] (Q3_K: plus bit j of hmask[l] as its third bit); the scale
        // of elements [16h, 16h + 16) is number 2j + h.
        const int j = (int)(b % 8), n = j / 4, sh = 2 * (j % 4), q3 = type == PRGE_T_Q3_K;
        const uint8_t *s = row + b / 8 * (q3 ? 110 : 84);
        const __m256i q = _mm256_loadu_si256((const __m256i *)(s + (q3 ? 32 : 16) + 32 * n));
        c = _mm256_and_si256(_mm256_srli_epi16(q, sh), _mm256_set1_epi8(3));
        if (q3) {
            const __m256i hm = _mm256_loadu_si256((const __m256i *)s);
            c = _mm256_or_si256(c, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hm, j), 2), _mm256_set1_epi8(4)));
            int sc[16];
            prge_q3k_scales(s + 96, sc);
            const float dsb = _cvtsh_ss(mm_rd16(s + 108));
            for (int h = 0; h < 2; h++) {
                d[h] = dsb * (float)sc[2 * j + h];
                m[h] = -4.0f * d[h];
            }
        } else {
            const float dsb = _cvtsh_ss(mm_rd16(s + 80)), dmin = _cvtsh_ss(mm_rd16(s + 82));
            for (int h = 0; h < 2; h++) {
                d[h] = dsb * (float)(s[2 * j + h] & 0x0f);
                m[h] = -(dmin * (float)(s[2 * j + h] >> 4));
            }
        }
        _mm256_storeu_si256((__m256i *)u, c);
        return;
    }
    if (type == PRGE_T_Q6_K) {
        // 128-element half n = j / 4 of super-block b / 8, k = j % 4: element l of the block
        // has nibble k / 2 of ql[l + 32·(k % 2)], bit pair k of qh[l], scale sc[2k + l / 16].
        const int j = (int)(b % 8), n = j / 4, k = j % 4;
        const uint8_t *s = row + b / 8 * 210, *ql = s + 64 * n, *qh = s + 128 + 32 * n;
        const int8_t *sc = (const int8_t *)(s + 192) + 8 * n;
        const float dsb = _cvtsh_ss(mm_rd16(s + 208));
        const __m256i lo = _mm256_loadu_si256((const __m256i *)(ql + 32 * (k % 2)));
        const __m256i hi = _mm256_loadu_si256((const __m256i *)qh);
        c = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo, 4 * (k / 2)), m4),
                            _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hi, 2 * k), 4), _mm256_set1_epi8(0x30)));
        for (int h = 0; h < 2; h++) {
            d[h] = dsb * (float)sc[2 * k + h];
            m[h] = -32.0f * d[h];
        }
        _mm256_storeu_si256((__m256i *)u, c);
        return;
    }
    if (type == PRGE_T_Q4_K || type == PRGE_T_Q5_K) {
        const int q5 = type == PRGE_T_Q5_K, j = (int)(b % 8);
        const uint8_t *s = row + b / 8 * (q5 ? 176 : 144);
        int sc, mn;
        prge_k4_scale_min(j, s + 4, &sc, &mn);
        *d = _cvtsh_ss(mm_rd16(s)) * (float)sc;
        *m = -(_cvtsh_ss(mm_rd16(s + 2)) * (float)mn);
        // 32 bytes hold sub-blocks 2p (low nibbles) and 2p + 1 (high nibbles), p = j / 2.
        const __m256i q = _mm256_loadu_si256((const __m256i *)(s + (q5 ? 48 : 16) + 32 * (j / 2)));
        c = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
        if (q5) {   // bit j of qh[l] is element l's fifth bit
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(s + 16));
            c = _mm256_or_si256(c, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, j), 4), b4));
        }
    } else if (type == PRGE_T_Q8_0) {
        const uint8_t *s = row + b * 34;
        *d = _cvtsh_ss(mm_rd16(s));
        *m = -128.0f * *d;
        c = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(s + 2)), _mm256_set1_epi8((char)0x80));
    } else {
        // Q4_0 / Q4_1 / Q5_0 / Q5_1: f16 d [| f16 m] [| u32 qh] | 16 B of nibbles, elements 0..15 in
        // the low ones, 16..31 in the high ones; bit j of qh is element j's fifth bit.
        const int has_m = type == PRGE_T_Q4_1 || type == PRGE_T_Q5_1, q5 = type == PRGE_T_Q5_0 || type == PRGE_T_Q5_1;
        const uint8_t *s = row + b * (18 + 2 * has_m + 4 * q5);
        *d = _cvtsh_ss(mm_rd16(s));
        *m = has_m ? _cvtsh_ss(mm_rd16(s + 2)) : (q5 ? -16.0f : -8.0f) * *d;
        const __m128i q = _mm_loadu_si128((const __m128i *)(s + 2 + 2 * has_m + 4 * q5));
        c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
        if (q5) {
            uint32_t qh;
            memcpy(&qh, s + 2 + 2 * has_m, 4);
            c = _mm256_or_si256(c, _mm256_and_si256(_mm256_movm_epi8(qh), b4));
        }
    }
    d[1] = d[0];
    m[1] = m[0];
    _mm256_storeu_si256((__m256i *)u, c);
}

// Scale floats per 32-k block and panel column: d, m; or d, d', m, m' for a W with a scale per
// 16 weights.
static int mm_int8_scales(uint32_t t) { return mm_int8_halves(t) ? 4 : 2; }

// Columns [n0, n0+32) of an mm_int8_type W -> [KQ][32] dwords of codes (4 consecutive k), then
// per 32-k block mm_int8_scales() runs of [32] floats: d and m, or d, d', m, m'.
PRGE_AVX512 static void mm_pack_panel_codes(const mm_ctx *c, const mm_part *w, int64_t n0, uint32_t *panel,
                                            uint32_t *tmp) {
    const int64_t RS = ((c->KP + 15) & ~(int64_t)15), nblk = c->K / 32;
    const int ns = mm_int8_scales(w->wtype);
    float *ps = (float *)(panel + c->KP * NR);
    for (int h = 0; h < NR; h += 16) {
        for (int r = 0; r < 16; r++) {
            const int64_t n = n0 + h + r;
            uint32_t *row = tmp + r * RS;
            float dm[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (n >= w->N) memset(row, 0, (size_t)RS * 4);
            else memset(row + c->KP, 0, (size_t)(RS - c->KP) * 4);
            for (int64_t b = 0; b < nblk; b++) {
                if (n < w->N) mm_block_codes(w->wtype, w->W + n * w->wrb, b, (uint8_t *)(row + 8 * b), dm);
                float *pb = ps + b * ns * NR + h + r;
                if (ns == 2) { pb[0] = dm[0]; pb[NR] = dm[2]; }
                else for (int i = 0; i < 4; i++) pb[i * NR] = dm[i];
            }
        }
        mm_panel_transpose(tmp, RS, c->KP, panel, h);
    }
}

// ---- micro-kernels: MRC rows (of a packed block with stride MR) x 32 columns ----
// The LoRA term of a micro-kernel's rows (t == NULL: none): row m0 + i of copy c = m / T adds
// its term from copy c's panel at pan + c·r·32 (lora.c), before the row is stored.
typedef struct { const prge_lora_term *t; const float *pan; int64_t m0; } mm_lora_blk;

// Rows [0, rows) of a tile, PRGE_LORA_ROWS at a time: y (+)= acc, plus each row's LoRA term
// (one pass over the copy's panel for a group of rows of one copy; row by row where a group
// straddles two copies, is cut short, or runs past the copies' rows).
PRGE_AVX512 PRGE_INLINE void mm_store_tile(const int MRC, __m512 (*acc)[2], float *y, int64_t ldy,
                                      int rows, __mmask16 k0, __mmask16 k1, int accumulate,
                                      const mm_lora_blk *lb) {
    const prge_lora_term *t = lb->t;
    for (int i0 = 0; i0 < MRC && i0 < rows; i0 += PRGE_LORA_ROWS) {
        const int n = MRC - i0 < PRGE_LORA_ROWS ? MRC - i0 : PRGE_LORA_ROWS;
        const int live = rows - i0 < n ? rows - i0 : n;
        __m512 a0[PRGE_LORA_ROWS], a1[PRGE_LORA_ROWS];
        for (int i = 0; i < n; i++) {
            a0[i] = acc[i0 + i][0];
            a1[i] = acc[i0 + i][1];
            if (accumulate && i < live) {
                a0[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(k0, y + (i0 + i) * ldy), a0[i]);
                a1[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(k1, y + (i0 + i) * ldy + 16), a1[i]);
            }
        }
        if (t) {
            const int64_t m = lb->m0 + i0, end = t->copies * t->T;
            const __m512 s = _mm512_set1_ps(t->s);
            if (live == n && m + n <= end && m / t->T == (m + n - 1) / t->T)
                prge_lora_rows32(n, t->H + m * t->ldh, t->ldh, lb->pan + m / t->T * t->r * PRGE_LORA_NC, t->r, s,
                                 a0, a1);
            else
                for (int i = 0; i < live && m + i < end; i++)
                    prge_lora_rows32(1, t->H + (m + i) * t->ldh, 0, lb->pan + (m + i) / t->T * t->r * PRGE_LORA_NC,
                                     t->r, s, a0 + i, a1 + i);
        }
        for (int i = 0; i < live; i++) {
            _mm512_mask_storeu_ps(y + (i0 + i) * ldy, k0, a0[i]);
            _mm512_mask_storeu_ps(y + (i0 + i) * ldy + 16, k1, a1[i]);
        }
    }
}

PRGE_AVX512 PRGE_INLINE void mm_ukr_f32(const int MRC, const float *xp, const float *pan, int64_t K,
                                   float *y, int64_t ldy, int rows, __mmask16 k0, __mmask16 k1,
                                   int accumulate, const mm_lora_blk *lb) {
    __m512 acc[MR][2];
    for (int i = 0; i < MRC; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_load_ps(pan + k * NR), b1 = _mm512_load_ps(pan + k * NR + 16);
        for (int i = 0; i < MRC; i++) {
            const __m512 a = _mm512_set1_ps(xp[k * MR + i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    mm_store_tile(MRC, acc, y, ldy, rows, k0, k1, accumulate, lb);
}

PRGE_AVX512_BF16 PRGE_INLINE void mm_ukr_bf16(const int MRC, const uint32_t *xp, const uint32_t *pan,
                                    int64_t KP, float *y, int64_t ldy, int rows, __mmask16 k0,
                                    __mmask16 k1, int accumulate, const mm_lora_blk *lb) {
    __m512 acc[MR][2];
    for (int i = 0; i < MRC; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < KP; p++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(pan + p * NR);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(pan + p * NR + 16);
        for (int i = 0; i < MRC; i++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)xp[p * MR + i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
        }
    }
    mm_store_tile(MRC, acc, y, ldy, rows, k0, k1, accumulate, lb);
}

// s[i] = the exact int32 sums of quads [q0, q1) of a block: row i's int8 x by 32 columns of codes.
PRGE_AVX512_VNNI PRGE_INLINE void mm_quad_sums(const int MRC, const uint32_t *xp, const uint32_t *pan, int q0, int q1,
                                          __m512i (*s)[2]) {
    for (int i = 0; i < MRC; i++) s[i][0] = s[i][1] = _mm512_setzero_si512();
    for (int q = q0; q < q1; q++) {
        const __m512i w0 = _mm512_load_si512(pan + q * NR), w1 = _mm512_load_si512(pan + q * NR + 16);
        for (int i = 0; i < MRC; i++) {
            const __m512i a = _mm512_set1_epi32((int)xp[q * MR8 + i]);
            s[i][0] = _mm512_dpbusd_epi32(s[i][0], w0, a);
            s[i][1] = _mm512_dpbusd_epi32(s[i][1], w1, a);
        }
    }
}

// MRC rows (of a packed block with stride MR8) x 32 columns of coded W, H scales per 32-k block
// (1; 2 for the 16-weight halves of Q2_K, Q3_K, Q6_K). Per block and part h < H: 8/H vpdpbusd per accumulator give
// the exact Σ_h q_x·u_w (|Σ| ≤ 32·127·255), then, in fp32 and this order, acc += float(Σ_h)·(d_h·dx)
// for each h, then acc += m_h·sx_h for each h (sx_h = dx·Σ_h q_x; for H = 1 the block's sx).
PRGE_AVX512_VNNI PRGE_INLINE void mm_ukr_int8(const int MRC, const int H, const uint32_t *xp, const float *xs,
                                         const uint32_t *pan, const float *ps, int64_t nblk, float *y,
                                         int64_t ldy, int rows, __mmask16 k0, __mmask16 k1, int accumulate,
                                         const mm_lora_blk *lb) {
    __m512 acc[MR8][2];
    for (int i = 0; i < MRC; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nblk; b++, pan += 8 * NR, xp += 8 * MR8, ps += 2 * H * NR, xs += MM_XS * MR8) {
        for (int h = 0; h < H; h++) {
            __m512i s[MR8][2];
            mm_quad_sums(MRC, xp, pan, 8 * h / H, 8 * (h + 1) / H, s);
            const __m512 d0 = _mm512_load_ps(ps + h * NR), d1 = _mm512_load_ps(ps + h * NR + 16);
            for (int i = 0; i < MRC; i++) {
                const __m512 dx = _mm512_set1_ps(xs[i]);
                acc[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][0]), _mm512_mul_ps(d0, dx), acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][1]), _mm512_mul_ps(d1, dx), acc[i][1]);
            }
        }
        for (int h = 0; h < H; h++) {
            const __m512 m0 = _mm512_load_ps(ps + (H + h) * NR), m1 = _mm512_load_ps(ps + (H + h) * NR + 16);
            const float *sxh = xs + (H == 1 ? 1 : 2 + h) * MR8;
            for (int i = 0; i < MRC; i++) {
                const __m512 sx = _mm512_set1_ps(sxh[i]);
                acc[i][0] = _mm512_fmadd_ps(m0, sx, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(m1, sx, acc[i][1]);
            }
        }
    }
    mm_store_tile(MRC, acc, y, ldy, rows, k0, k1, accumulate, lb);
}

#define MM_UKR_CASES(F, ...)                                                                     \
    switch (mrc) {                                                                               \
    case 1: F(1, __VA_ARGS__); break;  case 2: F(2, __VA_ARGS__); break;                         \
    case 3: F(3, __VA_ARGS__); break;  case 4: F(4, __VA_ARGS__); break;                         \
    case 5: F(5, __VA_ARGS__); break;  case 6: F(6, __VA_ARGS__); break;                         \
    case 7: F(7, __VA_ARGS__); break;  case 8: F(8, __VA_ARGS__); break;                         \
    case 9: F(9, __VA_ARGS__); break;  case 10: F(10, __VA_ARGS__); break;                       \
    case 11: F(11, __VA_ARGS__); break; case 12: F(12, __VA_ARGS__); break;                      \
    case 13: F(13, __VA_ARGS__); break; default: F(14, __VA_ARGS__); break;                      \
    }

// The bf16 micro-kernel for `mrc` rows, out of line (see mm_pairs_bf16).
PRGE_AVX512_BF16 static void mm_ukr_bf16_rows(int mrc, const uint32_t *xpb, const uint32_t *pan, int64_t KP,
                                              float *y, int64_t ldy, int rows, __mmask16 k0, __mmask16 k1,
                                              int accumulate, const mm_lora_blk *lb) {
#define BF16CALL(R, ...) mm_ukr_bf16(R, xpb, pan, KP, y, ldy, rows, k0, k1, accumulate, lb)
    MM_UKR_CASES(BF16CALL, 0)
}

// What one panel-path task computes: columns [n0, n0 + 32·nsub) of product w, X blocks [mb0, mb1).
typedef struct { const mm_part *w; int64_t n0, mb0, mb1; int nsub; } mm_tile;

static mm_tile mm_task_tile(const mm_ctx *c, int64_t task) {
    int pi = 0;
    while (pi + 1 < c->n_parts && task >= c->part[pi + 1].first_task) pi++;
    mm_tile t;
    t.w = &c->part[pi];
    task -= t.w->first_task;
    const int64_t ni = task / t.w->m_chunks, mi = task % t.w->m_chunks;
    t.n0 = ni * NC;
    const int64_t ncols = t.w->N - t.n0 < NC ? t.w->N - t.n0 : NC;
    t.nsub = (int)((ncols + NR - 1) / NR);
    t.mb0 = mi * t.w->mb_per_chunk;
    t.mb1 = t.mb0 + t.w->mb_per_chunk < c->mblocks ? t.mb0 + t.w->mb_per_chunk : c->mblocks;
    return t;
}

// A tile's part of its product's LoRA term: every copy's panels of each 32-column sub-tile
// (scratch slot 2: free once W's panels are packed); the micro-kernels add each row's term
// before they store it. t == NULL: no term.
typedef struct { const prge_lora_term *t; float *buf; size_t stride; } mm_lora_tile;

static mm_lora_tile mm_lora_panels(const mm_tile *t) {
    mm_lora_tile l = {t->w->lora, NULL, 0};
    if (!l.t) return l;
    l.stride = prge_lora_panels_floats(l.t);
    l.buf = (float *)prge_scratch(2, (size_t)t->nsub * l.stride * sizeof(float));
    for (int s = 0; s < t->nsub; s++) {
        const int64_t cn0 = t->n0 + s * NR;
        prge_lora_panels(l.t, t->w->order, 1, cn0, t->w->N - cn0 < NR ? t->w->N - cn0 : NR, l.buf + s * l.stride);
    }
    return l;
}

// Store masks of the two 16-column halves of a 32-column sub-tile with `cols` live columns.
PRGE_AVX512 PRGE_INLINE void mm_col_masks(int64_t cols, __mmask16 *k0, __mmask16 *k1) {
    *k0 = prge_mask16(cols);
    *k1 = prge_mask16(cols - 16);
}

// Sub-tile s of tile t for the X block at row m0: its output, its panel, its column masks, the
// LoRA term of its rows.
typedef struct { float *y; const uint32_t *pan; __mmask16 k0, k1; mm_lora_blk lb; } mm_sub;

PRGE_AVX512 PRGE_INLINE mm_sub mm_subtile(const mm_tile *t, const mm_lora_tile *l, int s, int64_t m0,
                                          const uint32_t *panel, size_t sub_elems) {
    const int64_t cn0 = t->n0 + s * NR;
    mm_sub u;
    mm_col_masks(t->w->N - cn0, &u.k0, &u.k1);
    u.y = t->w->Y + m0 * t->w->ldy + cn0;
    u.pan = panel + s * sub_elems;
    u.lb = (mm_lora_blk){l->t, l->t ? l->buf + s * l->stride : NULL, m0};
    return u;
}

PRGE_AVX512 static void mm_panel_task(void *vctx, int64_t task) {
    const mm_ctx *c = (const mm_ctx *)vctx;
    const mm_tile t = mm_task_tile(c, task);
    const mm_part *w = t.w;
    const size_t sub_elems = (size_t)c->KP * NR;   // floats or dwords, both 4 bytes
    uint32_t *panel = (uint32_t *)prge_scratch(1, (size_t)t.nsub * sub_elems * 4);
    const int64_t RS = ((c->KP + 15) & ~(int64_t)15);
    float *tmp = (float *)prge_scratch(2, (size_t)(16 * RS + c->KD + 32) * sizeof(float));
    for (int s = 0; s < t.nsub; s++) mm_pack_panel(c, w, t.n0 + s * NR, panel + s * sub_elems, tmp);
    const mm_lora_tile l = mm_lora_panels(&t);

    for (int64_t mb = t.mb0; mb < t.mb1; mb++) {
        const int64_t m0 = mb * MR;
        const int rows = (int)(c->M - m0 < MR ? c->M - m0 : MR);
        const int mrc = rows;
        const uint32_t *xpb = (const uint32_t *)c->xp + mb * c->xstride;
        for (int s = 0; s < t.nsub; s++) {
            const mm_sub u = mm_subtile(&t, &l, s, m0, panel, sub_elems);
            if (c->mode == PRGE_MM_F32) {
#define F32CALL(R, ...) mm_ukr_f32(R, (const float *)xpb, (const float *)u.pan, c->KP, u.y, w->ldy, rows, u.k0, u.k1, w->accumulate, &u.lb)
                MM_UKR_CASES(F32CALL, 0)
            } else {
                mm_ukr_bf16_rows(mrc, xpb, u.pan, c->KP, u.y, w->ldy, rows, u.k0, u.k1, w->accumulate, &u.lb);
            }
        }
    }
}

// The int8 kernel's tasks: as mm_panel_task, on code panels and MR8-row int8 X blocks.
PRGE_AVX512_VNNI static void mm_panel_task_int8(void *vctx, int64_t task) {
    const mm_ctx *c = (const mm_ctx *)vctx;
    const mm_tile t = mm_task_tile(c, task);
    const mm_part *w = t.w;
    const int64_t nblk = c->K / 32;
    const int halves = mm_int8_halves(w->wtype);
    const size_t sub_elems = (size_t)(c->KP * NR + mm_int8_scales(w->wtype) * nblk * NR);   // codes, then scales
    uint32_t *panel = (uint32_t *)prge_scratch(1, (size_t)t.nsub * sub_elems * 4);
    const int64_t RS = ((c->KP + 15) & ~(int64_t)15);
    uint32_t *tmp = (uint32_t *)prge_scratch(2, (size_t)(16 * RS) * 4);
    for (int s = 0; s < t.nsub; s++) mm_pack_panel_codes(c, w, t.n0 + s * NR, panel + s * sub_elems, tmp);
    const mm_lora_tile l = mm_lora_panels(&t);

    for (int64_t mb = t.mb0; mb < t.mb1; mb++) {
        const int64_t m0 = mb * MR8;
        const int rows = (int)(c->M - m0 < MR8 ? c->M - m0 : MR8);
        const uint32_t *xpb = (const uint32_t *)c->xp + mb * c->xstride;
        const float *xs = (const float *)(xpb + c->KP * MR8);
        for (int s = 0; s < t.nsub; s++) {
            const mm_sub u = mm_subtile(&t, &l, s, m0, panel, sub_elems);
            const float *ps = (const float *)(u.pan + c->KP * NR);
#define INT8CALL(H, R) mm_ukr_int8(R, H, xpb, xs, u.pan, ps, nblk, u.y, w->ldy, rows, u.k0, u.k1, w->accumulate, &u.lb)
#define INT8ROWS(H)                                                                                        \
    switch (rows) {                                                                                        \
    case 1: INT8CALL(H, 1); break; case 2: INT8CALL(H, 2); break; case 3: INT8CALL(H, 3); break;         \
    case 4: INT8CALL(H, 4); break; case 5: INT8CALL(H, 5); break; default: INT8CALL(H, MR8); break;      \
    }
            if (halves) INT8ROWS(2)
            else INT8ROWS(1)
        }
    }
}

// ---- small-M "dot" path ----
typedef struct {
    int bf16;
    const uint8_t *W; uint32_t wtype; int64_t wrb;
    float *Y; int64_t ldy;
    int64_t M, N, K, KD;
    const void *xs;      // [M][KD] floats, or [M][KD/2] bf16-pair dwords; zero tail
    int accumulate;
    int64_t rows_per_task;
} mm_dot_ctx;

// One output of R rows: the two half sums of each row's dot product, added and stored.
PRGE_AVX512 PRGE_INLINE void mm_dot_store(const int R, const mm_dot_ctx *c, const __m512 *a0, const __m512 *a1,
                                     int64_t m0, int64_t n) {
    for (int r = 0; r < R; r++) {
        const float d = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
        float *y = c->Y + (m0 + r) * c->ldy + n;
        *y = c->accumulate ? *y + d : d;
    }
}

PRGE_AVX512 PRGE_INLINE void mm_dot_rows_f32(const int R, const mm_dot_ctx *c, const float *w, int64_t m0, int64_t n) {
    __m512 a0[4], a1[4];
    for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    const float *x = (const float *)c->xs + m0 * c->KD;
    for (int64_t k = 0; k < c->KD; k += 32) {
        const __m512 w0 = _mm512_load_ps(w + k), w1 = _mm512_load_ps(w + k + 16);
        for (int r = 0; r < R; r++) {
            a0[r] = _mm512_fmadd_ps(_mm512_load_ps(x + r * c->KD + k), w0, a0[r]);
            a1[r] = _mm512_fmadd_ps(_mm512_load_ps(x + r * c->KD + k + 16), w1, a1[r]);
        }
    }
    mm_dot_store(R, c, a0, a1, m0, n);
}

PRGE_AVX512_BF16 PRGE_INLINE void mm_dot_rows_bf16(const int R, const mm_dot_ctx *c, const uint32_t *w, int64_t m0,
                                              int64_t n) {
    __m512 a0[4], a1[4];
    for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    const int64_t KW = c->KD / 2;
    const uint32_t *x = (const uint32_t *)c->xs + m0 * KW;
    for (int64_t k = 0; k < KW; k += 32) {
        const __m512bh w0 = (__m512bh)_mm512_load_si512(w + k);
        const __m512bh w1 = (__m512bh)_mm512_load_si512(w + k + 16);
        for (int r = 0; r < R; r++) {
            a0[r] = _mm512_dpbf16_ps(a0[r], (__m512bh)_mm512_load_si512(x + r * KW + k), w0);
            a1[r] = _mm512_dpbf16_ps(a1[r], (__m512bh)_mm512_load_si512(x + r * KW + k + 16), w1);
        }
    }
    mm_dot_store(R, c, a0, a1, m0, n);
}

// Output column n for all M rows: blocks of 4 rows, then the rest. ROWS: mm_dot_rows_f32 / _bf16.
#define MM_DOT_ALL(ROWS, c, w, n)                                                                \
    do {                                                                                         \
        int64_t m_ = 0;                                                                          \
        for (; m_ + 4 <= (c)->M; m_ += 4) ROWS(4, c, w, m_, n);                                  \
        switch ((c)->M - m_) {                                                                   \
        case 3: ROWS(3, c, w, m_, n); break;                                                     \
        case 2: ROWS(2, c, w, m_, n); break;                                                     \
        case 1: ROWS(1, c, w, m_, n); break;                                                     \
        default: break;                                                                          \
        }                                                                                        \
    } while (0)

// bf16 mode's column, out of line (see mm_pairs_bf16): w is the row as bf16 pairs.
PRGE_AVX512_BF16 static void mm_dot_column_bf16(const mm_dot_ctx *c, const uint32_t *w, int64_t n) {
    MM_DOT_ALL(mm_dot_rows_bf16, c, w, n);
}

PRGE_AVX512 static void mm_dot_task(void *vctx, int64_t task) {
    const mm_dot_ctx *c = (const mm_dot_ctx *)vctx;
    const int64_t n0 = task * c->rows_per_task;
    const int64_t n1 = n0 + c->rows_per_task < c->N ? n0 + c->rows_per_task : c->N;
    float *tmp = (float *)prge_scratch(2, (size_t)(c->KD + 64) * sizeof(float));
    uint32_t *wb = (uint32_t *)prge_scratch(1, (size_t)(c->KD + 64) * 2);
    memset(tmp + c->K, 0, (size_t)(c->KD - c->K) * sizeof(float));
    for (int64_t n = n0; n < n1; n++) {
        mm_decode_row_avx512(c->wtype, c->W + n * c->wrb, tmp, c->K);
        if (c->bf16) {
            mm_pairs_bf16(tmp, c->K, wb, c->KD / 2);
            mm_dot_column_bf16(c, wb, n);
        } else {
            MM_DOT_ALL(mm_dot_rows_f32, c, tmp, n);
        }
    }
}

// The small-M path, one product at a time; X is converted once for all of them.
PRGE_AVX512 static void mm_avx512_dot(prge_pool *pool, int bf16, const float *X, int64_t ldx,
                                      const prge_mm_out *outs, int n_outs, int64_t M, int64_t K) {
    const int threads = prge_pool_threads(pool);
    const int64_t KD = (K + 63) & ~(int64_t)63;   // the dot path steps 32 floats / 64 bf16
    const int64_t KW = bf16 ? KD / 2 : KD;
    uint32_t *xs = (uint32_t *)prge_scratch(0, (size_t)(M * KW + 16) * 4);
    float *row = (float *)prge_scratch(2, (size_t)(KD + 64) * sizeof(float));
    for (int64_t m = 0; m < M; m++) {
        memcpy(row, X + m * ldx, (size_t)K * sizeof(float));
        memset(row + K, 0, (size_t)(KD - K) * sizeof(float));
        if (!bf16) memcpy(xs + m * KW, row, (size_t)KD * sizeof(float));
        else mm_pairs_bf16(row, K, xs + m * KW, KD / 2);
    }
    for (int i = 0; i < n_outs; i++) {
        const prge_mm_out *o = &outs[i];
        // ~8 tasks per thread at least, rows per task a multiple of 4 in [4, 64].
        int64_t rpt = o->N / (8 * threads);
        rpt = rpt < 4 ? 4 : rpt > 64 ? 64 : rpt;
        mm_dot_ctx c = {bf16, (const uint8_t *)o->W, o->wtype, o->w_row_bytes, o->Y, o->ldy, M, o->N, K, KD, xs,
                        o->accumulate, rpt};
        prge_pool_run(pool, mm_dot_task, &c, (o->N + rpt - 1) / rpt);
    }
}

// ---- transposed product (prge_matmul_t, below): jb decoded rows of W into each row of Y ----
// The types mm_decode_row_avx512 decodes itself.
static int mm_fast_type(uint32_t t) {
    return t == PRGE_T_F32 || t == PRGE_T_F16 || t == PRGE_T_BF16 || t == PRGE_T_Q4_0 || t == PRGE_T_Q4_1 ||
           t == PRGE_T_Q8_0;
}

PRGE_AVX512 static void mt_rows_avx512(const float *d, int64_t ldd, const float *w, int jb, float *Y, int64_t ldy,
                                       int64_t n, int64_t K) {
    for (int64_t i = 0; i < n; i++) {
        float *y = Y + i * ldy;
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 m = prge_mask16(K - k);
            __m512 acc = _mm512_maskz_loadu_ps(m, y + k);
            for (int j = 0; j < jb; j++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d[i * ldd + j]), _mm512_maskz_loadu_ps(m, w + j * K + k), acc);
            _mm512_mask_storeu_ps(y + k, m, acc);
        }
    }
}

// The tiles of products outs[0, n_outs) over c's packed X, in one parallel region.
static void mm_panel_region(prge_pool *pool, mm_ctx *c, const prge_mm_out *outs, const int32_t *const *orders,
                            int n_outs) {
    const int threads = prge_pool_threads(pool);
    int64_t tiles = 0;
    for (int i = 0; i < n_outs; i++) tiles += (outs[i].N + NC - 1) / NC;
    // Split M as well when there are few column tiles in all; keep >= 112 rows (8 blocks of MR)
    // per chunk so the panel packing stays amortized.
    const int64_t min_blocks = (8 * MR + c->mr - 1) / c->mr;
#ifdef MM_TUNE
    int64_t want = getenv("MM_WANT") ? atoi(getenv("MM_WANT")) : 6 * threads;
#else
    int64_t want = 6 * threads;
#endif
    int64_t tasks = 0;
    for (int i = 0; i < n_outs; i++) {
        const prge_mm_out *o = &outs[i];
        mm_part *w = &c->part[i];
        w->W = (const uint8_t *)o->W; w->wtype = o->wtype; w->wrb = o->w_row_bytes;
        w->Y = o->Y; w->ldy = o->ldy; w->N = o->N; w->accumulate = o->accumulate;
        w->lora = o->lora; w->order = orders[i];
        w->n_tiles = (o->N + NC - 1) / NC;
        int64_t m_chunks = tiles >= want ? 1 : (want + tiles - 1) / tiles;
        const int64_t max_chunks = c->mblocks / min_blocks > 0 ? c->mblocks / min_blocks : 1;
        if (m_chunks > max_chunks) m_chunks = max_chunks;
        w->mb_per_chunk = (c->mblocks + m_chunks - 1) / m_chunks;
        w->m_chunks = (c->mblocks + w->mb_per_chunk - 1) / w->mb_per_chunk;
        w->first_task = tasks;
        tasks += w->n_tiles * w->m_chunks;
    }
    c->n_parts = n_outs;
    prge_pool_run(pool, c->mode == PRGE_MM_INT8 ? mm_panel_task_int8 : mm_panel_task, c, tasks);
}

// The panel path for up to MM_MAX_PARTS products: X packed once; one region for the tiles of
// the products without a LoRA term, then one for those with one (whose H those may compute).
// mode: PRGE_MM_F32, PRGE_MM_BF16, or PRGE_MM_INT8 (then every W is an mm_int8_type, and the
// n_sk skinny products sk run inside the X quantization, before any tile).
PRGE_AVX512 static void mm_avx512_panel(prge_pool *pool, int mode, const float *X, int64_t ldx,
                                        const prge_mm_out *outs, int n_outs, const prge_mm_out *sk, int n_sk,
                                        int64_t M, int64_t K) {
    const int threads = prge_pool_threads(pool);
    const int int8 = mode == PRGE_MM_INT8;
    mm_ctx c;
    memset(&c, 0, sizeof c);
    c.mode = mode;
    c.X = X; c.ldx = ldx; c.M = M; c.K = K;
    c.KP = mode == PRGE_MM_F32 ? K : mode == PRGE_MM_BF16 ? (K + 1) / 2 : K / 4;
    c.KD = (K + 63) & ~(int64_t)63;
    c.mr = int8 ? MR8 : MR;
    c.xstride = c.KP * c.mr + (int8 ? MM_XS * (K / 32) * c.mr : 0);
    c.mblocks = (M + c.mr - 1) / c.mr;
    // The skinny products' Wᵀ (64-byte aligned) after packed X, in the same scratch.
    const int64_t x_words = (c.mblocks * c.xstride + 15) & ~(int64_t)15;
    int64_t wt_floats = 0;
    for (int i = 0; i < n_sk; i++) wt_floats += mm_skinny_floats(&sk[i], K);
    c.xp = prge_scratch(0, (size_t)(x_words + wt_floats) * 4);
    mm_skinny_ctx skc[MM_MAX_PARTS];
    float *wt = (float *)c.xp + x_words;
    for (int i = 0; i < n_sk; i++) {
        skc[i] = mm_skinny_prepare(X, ldx, &sk[i], M, K, wt);
        wt += mm_skinny_floats(&sk[i], K);
    }
    c.sk = skc; c.n_sk = n_sk;
    c.xpack_per_task = (c.mblocks + 4 * threads - 1) / (4 * threads);
    prge_pool_run(pool, mm_xpack_task, &c, (c.mblocks + c.xpack_per_task - 1) / c.xpack_per_task);

    prge_mm_out plain[MM_MAX_PARTS], with[MM_MAX_PARTS];
    const int32_t *no_order[MM_MAX_PARTS] = {0}, *order[MM_MAX_PARTS];
    int np = 0, nw = 0;
    int64_t n_order = 0;
    for (int i = 0; i < n_outs; i++)
        if (outs[i].lora) n_order += outs[i].lora->copies;
    int32_t *orders = n_order ? (int32_t *)prge_scratch(3, (size_t)n_order * sizeof(int32_t)) : NULL;
    for (int i = 0; i < n_outs; i++) {
        if (!outs[i].lora) { plain[np++] = outs[i]; continue; }
        prge_lora_order(outs[i].lora, orders);
        order[nw] = orders;
        orders += outs[i].lora->copies;
        with[nw++] = outs[i];
    }
    if (np > 0) mm_panel_region(pool, &c, plain, no_order, np);
    if (nw > 0) mm_panel_region(pool, &c, with, order, nw);
}

// int8 mode on the panel path: the coded products on the int8 kernel, the skinny ones (the f32
// LoRA A stacks) inside its X quantization, the others as mm_int8_rest() with their own packed
// X. The others run first: they may hold the H of the coded products' LoRA terms; where one of
// them has a term itself (its H may be a skinny output), the skinny products run before them.
PRGE_AVX512 static void mm_avx512_int8(prge_pool *pool, const float *X, int64_t ldx,
                                       const prge_mm_out *outs, int n_outs, int64_t M, int64_t K) {
    prge_mm_out coded[MM_MAX_PARTS], rest[MM_MAX_PARTS], sk[MM_MAX_PARTS];
    int nq = 0, nr = 0, ns = 0, rest_terms = 0;
    for (int i = 0; i < n_outs; i++) {
        if (mm_int8_type(outs[i].wtype)) coded[nq++] = outs[i];
        else if (mm_skinny_fits(&outs[i])) sk[ns++] = outs[i];
        else { rest_terms |= outs[i].lora != NULL; rest[nr++] = outs[i]; }
    }
    if (ns > 0 && (nq == 0 || rest_terms)) {
        for (int i = 0; i < ns; i++) mm_skinny(pool, X, ldx, &sk[i], M, K);
        ns = 0;
    }
    if (nr > 0) mm_avx512_panel(pool, mm_int8_rest(), X, ldx, rest, nr, NULL, 0, M, K);
    if (nq > 0) mm_avx512_panel(pool, PRGE_MM_INT8, X, ldx, coded, nq, sk, ns, M, K);
}
#endif  // PRGE_X86

// ---- transposed product: Y = D·W (the guide's Wᵀ·δ for each row of δ), one thread ----------
// Y[i, k] = Σ_j D[i, j]·W[j, k], j ascending from zero, fp32. W's rows are decoded MT_JB at a
// time into scratch, so each 16-lane piece of Y is loaded and stored once per MT_JB rows.
enum { MT_JB = 8 };

static void mt_rows_generic(const float *d, int64_t ldd, const float *w, int jb, float *Y, int64_t ldy, int64_t n,
                            int64_t K) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++) {
            float acc = Y[i * ldy + k];
            for (int j = 0; j < jb; j++) acc += d[i * ldd + j] * w[j * K + k];
            Y[i * ldy + k] = acc;
        }
}

int prge_matmul_t(int mode, const float *D, int64_t ldd, const void *W, uint32_t wtype, int64_t w_row_bytes,
                  float *Y, int64_t ldy, int64_t n, int64_t N, int64_t K) {
    const int avx512 = (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512() == 1;
    float *w = (float *)prge_scratch(1, (size_t)(MT_JB * K) * sizeof(float));   // [MT_JB, K] decoded rows
    for (int64_t i = 0; i < n; i++) memset(Y + i * ldy, 0, (size_t)K * sizeof(float));
    for (int64_t j0 = 0; j0 < N; j0 += MT_JB) {
        const int jb = (int)(N - j0 < MT_JB ? N - j0 : MT_JB);
        for (int j = 0; j < jb; j++) {
            const uint8_t *src = (const uint8_t *)W + (j0 + j) * w_row_bytes;
#if PRGE_X86
            if (avx512 && mm_fast_type(wtype)) { mm_decode_row_avx512(wtype, src, w + j * K, K); continue; }
#endif
            if (mm_decode_row(wtype, src, w + j * K, K) != 0) return -1;
        }
#if PRGE_X86
        if (avx512) { mt_rows_avx512(D + j0, ldd, w, jb, Y, ldy, n, K); continue; }
#endif
        mt_rows_generic(D + j0, ldd, w, jb, Y, ldy, n, K);
    }
    return 0;
}

int prge_cpu_avx512(void) {
    // Every thread computes the same value; atomic so the race is a defined one (ThreadSanitizer).
    static atomic_int path = -1;
    if (atomic_load_explicit(&path, memory_order_relaxed) < 0) {
        int p = 0;
#if PRGE_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
            p = 1;
#endif
        const char *e = getenv("PRGE_MM_PATH");
        if (e && strcmp(e, "generic") == 0) p = 0;
        atomic_store_explicit(&path, p, memory_order_relaxed);
    }
    return atomic_load_explicit(&path, memory_order_relaxed);
}

// The extensions beyond the avx512 path: no cache of their own, since prge_cpu_avx512() (first,
// by &&) has run __builtin_cpu_init and __builtin_cpu_supports then only reads its result.
#if PRGE_X86
#define MM_AVX512_AND(feature) (prge_cpu_avx512() == 1 && __builtin_cpu_supports(feature))
#else
#define MM_AVX512_AND(feature) 0
#endif
int prge_cpu_avx512_bf16(void) { return MM_AVX512_AND("avx512bf16"); }
int prge_matmul_int8(void) { return MM_AVX512_AND("avx512vnni"); }

// 1..MM_MAX_PARTS products with N > 0 and K > 0, on this CPU's path.
static void mm_run(prge_pool *pool, int mode, const float *X, int64_t ldx,
                   const prge_mm_out *outs, int n_outs, int64_t M, int64_t K) {
    int kind = mode & 0xff;
    const int avx512 = (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512() == 1;
    if (kind == PRGE_MM_INT8 && !(avx512 && prge_matmul_int8() && M > MM_SMALL_M)) kind = mm_int8_rest();
    const int fast = avx512 && (kind != PRGE_MM_BF16 || prge_cpu_avx512_bf16() == 1);
#if PRGE_X86
    if (fast && M > MM_SMALL_M) {   // the panel paths add the LoRA terms inside their tiles
        if (kind == PRGE_MM_INT8) { mm_avx512_int8(pool, X, ldx, outs, n_outs, M, K); return; }
        prge_mm_out tiled[MM_MAX_PARTS];
        int nt = 0;
        for (int i = 0; i < n_outs; i++) {   // skinny ones first: a term's H may be one of them
            if (mm_skinny_fits(&outs[i])) mm_skinny(pool, X, ldx, &outs[i], M, K);
            else tiled[nt++] = outs[i];
        }
        if (nt > 0) mm_avx512_panel(pool, kind, X, ldx, tiled, nt, NULL, 0, M, K);
        return;
    }
    if (fast) mm_avx512_dot(pool, kind != PRGE_MM_F32, X, ldx, outs, n_outs, M, K);
    else
#endif
        for (int i = 0; i < n_outs; i++) {
            const prge_mm_out *o = &outs[i];
            mm_job j = {kind, X, ldx, (const uint8_t *)o->W, o->wtype, o->w_row_bytes, o->Y, o->ldy,
                        M, o->N, K, o->accumulate};
            mm_generic(pool, &j);
        }
    for (int i = 0; i < n_outs; i++)
        if (outs[i].lora) prge_lora_b(pool, mode & PRGE_MM_GENERIC, outs[i].lora, outs[i].Y, outs[i].ldy, outs[i].N);
}

const char *prge_matmul_path(void) {
    return prge_cpu_avx512_bf16() == 1 ? "avx512-bf16" : prge_cpu_avx512() == 1 ? "avx512" : "generic";
}

void prge_matmul_multi(prge_pool *pool, int mode, const float *X, int64_t ldx,
                       const prge_mm_out *outs, int n_outs, int64_t M, int64_t K) {
    if (M <= 0) return;
    prge_mm_out live[MM_MAX_PARTS];   // the products with columns, in groups of MM_MAX_PARTS
    int n = 0;
    // Pass 0: the products without a LoRA term, pass 1: those with one (their H may be an
    // output of pass 0). A group can hold both: mm_run keeps the order inside it.
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_outs; i++) {
            const prge_mm_out *o = &outs[i];
            if (o->N <= 0 || (o->lora != NULL) != pass) continue;
            if (K <= 0) {
                if (!o->accumulate)
                    for (int64_t m = 0; m < M; m++) memset(o->Y + m * o->ldy, 0, (size_t)o->N * sizeof(float));
                if (o->lora) prge_lora_b(pool, mode & PRGE_MM_GENERIC, o->lora, o->Y, o->ldy, o->N);
                continue;
            }
            live[n++] = *o;
            if (n == MM_MAX_PARTS) {
                mm_run(pool, mode, X, ldx, live, n, M, K);
                n = 0;
            }
        }
    }
    if (n > 0) mm_run(pool, mode, X, ldx, live, n, M, K);
}

void prge_matmul(prge_pool *pool, int mode,
                 const float *X, int64_t ldx,
                 const void *W, uint32_t wtype, int64_t w_row_bytes,
                 float *Y, int64_t ldy,
                 int64_t M, int64_t N, int64_t K, int accumulate) {
    const prge_mm_out o = {W, wtype, w_row_bytes, Y, ldy, N, accumulate, NULL};
    prge_matmul_multi(pool, mode, X, ldx, &o, 1, M, K);
}

// =============================================================================================
// Peak micro-benchmarks (prge bench prints matmul GFLOP/s as a fraction of these).
// =============================================================================================
typedef struct {
    int threads;
    int kind;            // PRGE_MM_F32 (FMA), PRGE_MM_BF16 (vdpbf16ps) or PRGE_MM_INT8 (vpdpbusd)
    int64_t iters;
    _Atomic int arrived;
    double sink;
} mm_peak_ctx;

#if PRGE_X86
// vpdpbusd: 64 u8×s8 products a zmm (128 ops, counted like flops). Only where VNNI exists.
PRGE_AVX512_VNNI static double mm_peak_loop_vnni(int64_t iters) {
    __m512i a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_epi32(i);
    const __m512i b = _mm512_set1_epi32(0x01020304), cc = _mm512_set1_epi32(0x05060708);
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbusd_epi32(a[i], b, cc);
    __m512i s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_epi32(s, a[i]);
    return (double)_mm512_reduce_add_epi32(s);
}

PRGE_AVX512 PRGE_INLINE double mm_peak_sum(const __m512 *a) {
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

PRGE_AVX512 static double mm_peak_loop_fma(int64_t iters) {
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i * 1e-3f);
    const __m512 b = _mm512_set1_ps(0.999f), cc = _mm512_set1_ps(1e-6f);
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], b, cc);
    return mm_peak_sum(a);
}

PRGE_AVX512_BF16 static double mm_peak_loop_bf16(int64_t iters) {
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i * 1e-3f);
    const __m512bh hb = (__m512bh)_mm512_set1_epi32(0x3f803f80), hc = (__m512bh)_mm512_set1_epi32(0x33d633d6);
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbf16_ps(a[i], hb, hc);
    return mm_peak_sum(a);
}
#endif

static double mm_peak_loop_generic(int64_t iters) {
    float a[16][8];
    for (int i = 0; i < 16; i++)
        for (int l = 0; l < 8; l++) a[i][l] = (float)(i + l) * 1e-3f;
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++)
            for (int l = 0; l < 8; l++) a[i][l] = a[i][l] * 0.999f + 1e-6f;
    double s = 0;
    for (int i = 0; i < 16; i++)
        for (int l = 0; l < 8; l++) s += a[i][l];
    return s;
}

static void mm_peak_task(void *vctx, int64_t task) {
    mm_peak_ctx *c = (mm_peak_ctx *)vctx;
    (void)task;
    // Barrier: one task per thread (a thread takes a new task only after finishing one).
    atomic_fetch_add(&c->arrived, 1);
    while (atomic_load(&c->arrived) < c->threads) { }
    double r;
#if PRGE_X86
    if (prge_cpu_avx512() == 1)
        r = c->kind == PRGE_MM_INT8 ? mm_peak_loop_vnni(c->iters)
            : c->kind == PRGE_MM_BF16 ? mm_peak_loop_bf16(c->iters) : mm_peak_loop_fma(c->iters);
    else
#endif
        r = mm_peak_loop_generic(c->iters);
    c->sink += r;   // racy on purpose-less value; only keeps the loop alive
}

static double mm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// iters: 16 zmm ops each (2,000,000: ~32M ops per thread, about 0.1 s).
static double mm_peak(int threads, int kind, int64_t iters) {
    if (threads < 1) threads = 1;
    if (kind == PRGE_MM_BF16 && prge_cpu_avx512_bf16() != 1) return 0.0;
    if (kind == PRGE_MM_INT8 && prge_matmul_int8() != 1) return 0.0;
    prge_pool *pool = prge_pool_create(threads);
    if (!pool) return 0.0;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        mm_peak_ctx c = {threads, kind, iters, 0, 0.0};
        const double t0 = mm_now();
        prge_pool_run(pool, mm_peak_task, &c, threads);
        const double dt = mm_now() - t0;
        double flops_per_iter;
        if (prge_cpu_avx512() == 1) flops_per_iter = 16.0 * 16 * (kind == PRGE_MM_INT8 ? 8 : kind == PRGE_MM_BF16 ? 4 : 2);
        else flops_per_iter = 16.0 * 8 * 2;
        const double g = (double)threads * (double)iters * flops_per_iter / dt * 1e-9;
        if (g > best) best = g;
    }
    prge_pool_free(pool);
    return best;
}

double prge_bench_fma_peak_gflops(int threads) { return mm_peak(threads, PRGE_MM_F32, 2000000); }
double prge_bench_bf16_peak_gflops(int threads) { return mm_peak(threads, PRGE_MM_BF16, 2000000); }
double prge_bench_int8_peak_gops(int threads) { return mm_peak(threads, PRGE_MM_INT8, 2000000); }

int prge_matmul_bf16_pays(void) {
    static atomic_int pays = -1;
    if (atomic_load_explicit(&pays, memory_order_relaxed) < 0) {
        // ~10 ms: one thread, 200k iterations each. The ratio is far from 1.25 on the CPUs
        // measured (Zen 4: 1.9; Xeon with AVX512-BF16 but no AMX: 0.6), so load does not flip it.
        const int p = prge_cpu_avx512_bf16() == 1 && mm_peak(1, PRGE_MM_BF16, 200000) >= 1.25 * mm_peak(1, PRGE_MM_F32, 200000);
        atomic_store_explicit(&pays, p, memory_order_relaxed);
    }
    return atomic_load_explicit(&pays, memory_order_relaxed);
}
