// ops.c: the row-wise ops of the Llama block (RMSNorm, SwiGLU, RoPE), one parallel region each.
//
// An element's arithmetic depends only on its row (RMSNorm) or on itself (SwiGLU), never on
// how the work is split into tasks: the AVX-512 path covers row tails with masked lanes of the
// same vector code, not a scalar loop. So results are bit-identical for any thread count.
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <math.h>

enum { OPS_NORM_ROWS = 16, OPS_SWIGLU_ELEMS = 16384, OPS_ROPE_ROWS = 32 };   // work per task

typedef struct {
    const float *x; int64_t ldx;
    const float *w;
    float *out; int64_t ldo;
    int64_t rows, n;
    float eps;
    int avx512;
} ops_norm_ctx;

typedef struct {
    float *gate; const float *up;
    int64_t n;
    int avx512;
} ops_swiglu_ctx;

typedef struct {
    float *x; int64_t ldx;
    int64_t rows, T, heads, head_dim, half;
    const float *cs, *sn;   // [T, half]
    int avx512;
} ops_rope_ctx;

// ---- portable path ---------------------------------------------------------------------------
static void ops_norm_row_generic(const float *x, const float *w, float *out, int64_t n, float eps) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

static void ops_swiglu_generic(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

// One row: pairs (a, b) = (x[2i], x[2i+1]) of each head -> (a·c − b·s, a·s + b·c), unfused.
static void ops_rope_row_generic(float *x, const float *cs, const float *sn, int64_t heads, int64_t hd, int64_t half) {
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < half; i++) {
            float *e = x + h * hd + 2 * i;
            const float a = e[0], b = e[1];
            e[0] = a * cs[i] - b * sn[i];
            e[1] = a * sn[i] + b * cs[i];
        }
}

#if PRGE_X86
// ---- AVX-512 path ----------------------------------------------------------------------------
PRGE_AVX512 static void ops_norm_row_avx512(const float *x, const float *w, float *out, int64_t n, float eps) {
    __m512 ss = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(prge_mask16(n - i), x + i);
        ss = _mm512_fmadd_ps(v, v, ss);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(ss) / (float)n + eps));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = prge_mask16(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv);
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, w + i)));
    }
}

PRGE_AVX512 static void ops_swiglu_avx512(float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = prge_mask16(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, prge_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm512_mask_storeu_ps(gate + i, k, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(k, up + i)));
    }
}

// 8 pairs a step: c and s spread to both lanes of a pair, the pair swapped for the cross terms;
// even lanes a·c − b·s, odd lanes b·c + a·s, each product rounded as the generic path's are.
PRGE_AVX512 static void ops_rope_row_avx512(float *x, const float *cs, const float *sn, int64_t heads, int64_t hd,
                                            int64_t half) {
    const __m512i spread = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    for (int64_t i = 0; i < half; i += 8) {
        const __mmask16 k = prge_mask16(2 * (half - i));           // the pairs' lanes
        const __mmask8 kt = (__mmask8)prge_mask16(half - i);        // their table entries
        const __m512 c = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(kt, cs + i)));
        const __m512 s = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(kt, sn + i)));
        for (int64_t h = 0; h < heads; h++) {
            float *e = x + h * hd + 2 * i;
            const __m512 v = _mm512_maskz_loadu_ps(k, e);
            const __m512 p = _mm512_mul_ps(v, c), q = _mm512_mul_ps(_mm512_permute_ps(v, 0xb1), s);
            _mm512_mask_storeu_ps(e, k, _mm512_mask_sub_ps(_mm512_add_ps(p, q), 0x5555, p, q));
        }
    }
}
#endif

static void ops_norm_task(void *vctx, int64_t task) {
    const ops_norm_ctx *c = (const ops_norm_ctx *)vctx;
    const int64_t r0 = task * OPS_NORM_ROWS;
    const int64_t r1 = r0 + OPS_NORM_ROWS < c->rows ? r0 + OPS_NORM_ROWS : c->rows;
    for (int64_t r = r0; r < r1; r++) {
#if PRGE_X86
        if (c->avx512) { ops_norm_row_avx512(c->x + r * c->ldx, c->w, c->out + r * c->ldo, c->n, c->eps); continue; }
#endif
        ops_norm_row_generic(c->x + r * c->ldx, c->w, c->out + r * c->ldo, c->n, c->eps);
    }
}

static void ops_swiglu_task(void *vctx, int64_t task) {
    const ops_swiglu_ctx *c = (const ops_swiglu_ctx *)vctx;
    const int64_t i0 = task * OPS_SWIGLU_ELEMS;
    const int64_t n = c->n - i0 < OPS_SWIGLU_ELEMS ? c->n - i0 : OPS_SWIGLU_ELEMS;
#if PRGE_X86
    if (c->avx512) { ops_swiglu_avx512(c->gate + i0, c->up + i0, n); return; }
#endif
    ops_swiglu_generic(c->gate + i0, c->up + i0, n);
}

static void ops_rope_task(void *vctx, int64_t task) {
    const ops_rope_ctx *c = (const ops_rope_ctx *)vctx;
    const int64_t r0 = task * OPS_ROPE_ROWS;
    const int64_t r1 = r0 + OPS_ROPE_ROWS < c->rows ? r0 + OPS_ROPE_ROWS : c->rows;
    for (int64_t r = r0; r < r1; r++) {
        float *x = c->x + r * c->ldx;
        const float *cs = c->cs + (r % c->T) * c->half, *sn = c->sn + (r % c->T) * c->half;
#if PRGE_X86
        if (c->avx512) { ops_rope_row_avx512(x, cs, sn, c->heads, c->head_dim, c->half); continue; }
#endif
        ops_rope_row_generic(x, cs, sn, c->heads, c->head_dim, c->half);
    }
}

void prge_rms_norm(prge_pool *pool, int mode, const float *x, int64_t ldx, const float *w,
                   float *out, int64_t ldo, int64_t rows, int64_t n, float eps) {
    if (rows <= 0 || n <= 0) return;
    ops_norm_ctx c = {x, ldx, w, out, ldo, rows, n, eps, (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512()};
    prge_pool_run(pool, ops_norm_task, &c, (rows + OPS_NORM_ROWS - 1) / OPS_NORM_ROWS);
}

void prge_swiglu(prge_pool *pool, int mode, float *gate, const float *up, int64_t n) {
    if (n <= 0) return;
    ops_swiglu_ctx c = {gate, up, n, (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512()};
    prge_pool_run(pool, ops_swiglu_task, &c, (n + OPS_SWIGLU_ELEMS - 1) / OPS_SWIGLU_ELEMS);
}

void prge_rope(prge_pool *pool, int mode, float *x, int64_t ldx, int64_t rows, int64_t T, int64_t heads,
               int64_t head_dim, int64_t half, const float *cs, const float *sn) {
    if (rows <= 0 || heads <= 0 || half <= 0) return;
    ops_rope_ctx c = {x, ldx, rows, T, heads, head_dim, half, cs, sn,
                      (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512()};
    prge_pool_run(pool, ops_rope_task, &c, (rows + OPS_ROPE_ROWS - 1) / OPS_ROPE_ROWS);
}
