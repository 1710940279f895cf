// lora.c: the LoRA-FA B term of every copy of a P-RGE batch in one parallel region.
//
// Copy c owns rows c·T ..< (c+1)·T of H and Y and adds s · H_c · (B + e_c · z_{q_c})ᵀ.
// One task per 32 output columns runs all copies for them: it transposes its columns of B
// into a k-major [r, 32] panel once, draws each query's z for those columns once (into L1),
// and for each copy builds the panel of B + e·z and streams the copy's rows past it.
// Every output element is computed by exactly one task as
//     acc = Σ_j h[m, j] · p[j, n]  (j ascending, one FMA chain),   y[m, n] += s · acc
// so results do not depend on the thread count, on the row blocking or on the copy count
// (sequential RGE, one copy per forward, gets the same bits per copy as fused P-RGE).
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <stdlib.h>
#include <string.h>

enum { LB_NC = 32 };   // output columns per task: two zmm of fp32

// One call's term, its copies in drawing order, and where it adds: Y [copies·T, N], stride ldy.
typedef struct {
    const prge_lora_term *t;
    const int32_t *order;          // copies grouped by query, e = 0 first: each z drawn once
    float *Y; int64_t ldy, N;
    int avx512;
} lb_ctx;

// dst[j][i] = src[(n0 + i)·r + j] for the task's nc columns, zero for i >= nc: [r, LB_NC]
static void lb_transpose(const float *src, int64_t r, int64_t nc, float *dst) {
    for (int64_t j = 0; j < r; j++)
        for (int64_t i = 0; i < LB_NC; i++) dst[j * LB_NC + i] = i < nc ? src[i * r + j] : 0.0f;
}

// ---- portable path ---------------------------------------------------------------------------
static void lb_panel_generic(const float *bT, const float *zT, float e, int64_t r, float *pan) {
    for (int64_t i = 0; i < r * LB_NC; i++) pan[i] = bT[i] + e * zT[i];
}

static void lb_rows_generic(const lb_ctx *c, const float *pan, int64_t m0, int64_t m1, int64_t n0, int64_t nc) {
    const prge_lora_term *t = c->t;
    for (int64_t m = m0; m < m1; m++) {
        const float *h = t->H + m * t->ldh;
        float *y = c->Y + m * c->ldy + n0;
        for (int64_t i = 0; i < nc; i++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < t->r; j++) acc += h[j] * pan[j * LB_NC + i];
            y[i] += t->s * acc;
        }
    }
}

#if PRGE_X86
// ---- AVX-512 path ----------------------------------------------------------------------------
enum { LB_MR = 12 };   // rows per micro-kernel call: 24 accumulators + 2 panel registers

PRGE_AVX512 static void lb_panel_avx512(const float *bT, const float *zT, float e, int64_t r, float *pan) {
    const __m512 ev = _mm512_set1_ps(e);
    for (int64_t i = 0; i < r * LB_NC; i += 16)
        _mm512_store_ps(pan + i, _mm512_fmadd_ps(ev, _mm512_load_ps(zT + i), _mm512_load_ps(bT + i)));
}

// The tile's lines (columns n0 ..< n0 + 32) of rows m0 ..< m0 + LB_MR of Y.
PRGE_AVX512 PRGE_INLINE void lb_prefetch_y(const lb_ctx *c, int64_t m0, int64_t n0) {
    for (int i = 0; i < LB_MR; i++) {
        const char *y = (const char *)(c->Y + (m0 + i) * c->ldy + n0);
        _mm_prefetch(y, _MM_HINT_T0);
        _mm_prefetch(y + 64, _MM_HINT_T0);
    }
}

// R rows from m0, the task's columns (masks k0, k1 cover the nc valid ones).
PRGE_AVX512 PRGE_INLINE void lb_ukr(const int R, const lb_ctx *c, const float *pan, int64_t m0,
                                    int64_t n0, __mmask16 k0, __mmask16 k1) {
    __m512 acc[LB_MR][2];
    for (int i = 0; i < R; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    // Y's rows are d_out floats apart, too far apart for the hardware prefetcher: ask for the
    // next call's rows now, so that they are in L1 when its FMA chains are done (a prefetch
    // past the end of Y is harmless: prefetches never fault).
    lb_prefetch_y(c, m0 + LB_MR, n0);
    const int64_t ldh = c->t->ldh;
    const float *h = c->t->H + m0 * ldh;
    for (int64_t j = 0; j < c->t->r; j++) {
        const __m512 p0 = _mm512_load_ps(pan + j * LB_NC), p1 = _mm512_load_ps(pan + j * LB_NC + 16);
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(h[i * ldh + j]);
            acc[i][0] = _mm512_fmadd_ps(a, p0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, p1, acc[i][1]);
        }
    }
    const __m512 s = _mm512_set1_ps(c->t->s);
    for (int i = 0; i < R; i++) {
        float *y = c->Y + (m0 + i) * c->ldy + n0;
        _mm512_mask_storeu_ps(y, k0, _mm512_fmadd_ps(s, acc[i][0], _mm512_maskz_loadu_ps(k0, y)));
        _mm512_mask_storeu_ps(y + 16, k1, _mm512_fmadd_ps(s, acc[i][1], _mm512_maskz_loadu_ps(k1, y + 16)));
    }
}

PRGE_AVX512 static void lb_rows_avx512(const lb_ctx *c, const float *pan, int64_t m0, int64_t m1, int64_t n0, int64_t nc) {
    const __mmask16 k0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
    const __mmask16 k1 = nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    int64_t m = m0;
    lb_prefetch_y(c, m, n0);
    for (; m + LB_MR <= m1; m += LB_MR) lb_ukr(LB_MR, c, pan, m, n0, k0, k1);
    switch (m1 - m) {   // the remainder, in one call
    case 11: lb_ukr(11, c, pan, m, n0, k0, k1); break;
    case 10: lb_ukr(10, c, pan, m, n0, k0, k1); break;
    case 9: lb_ukr(9, c, pan, m, n0, k0, k1); break;
    case 8: lb_ukr(8, c, pan, m, n0, k0, k1); break;
    case 7: lb_ukr(7, c, pan, m, n0, k0, k1); break;
    case 6: lb_ukr(6, c, pan, m, n0, k0, k1); break;
    case 5: lb_ukr(5, c, pan, m, n0, k0, k1); break;
    case 4: lb_ukr(4, c, pan, m, n0, k0, k1); break;
    case 3: lb_ukr(3, c, pan, m, n0, k0, k1); break;
    case 2: lb_ukr(2, c, pan, m, n0, k0, k1); break;
    case 1: lb_ukr(1, c, pan, m, n0, k0, k1); break;
    default: break;
    }
}
#endif

// ---- columns [n0, n0 + nc), nc <= 32, of rows [row0, row1) of every copy ----------------------
static void lb_columns(const lb_ctx *c, int64_t n0, int64_t nc, int64_t row0, int64_t row1) {
    const prge_lora_term *t = c->t;
    const int64_t r = t->r;
    const size_t panel = (size_t)(r * LB_NC);
    float *bT = (float *)prge_scratch(1, (3 * panel + (size_t)(nc * r)) * sizeof(float));
    float *zT = bT + panel, *pan = zT + panel, *z = pan + panel;   // z: [nc, r] as drawn
    lb_transpose(t->B + n0 * r, r, nc, bT);
    int32_t drawn = -1;   // query whose z is in zT
    for (int64_t k = 0; k < t->copies; k++) {
        const int64_t cp = c->order[k];
        const int64_t m0 = cp * t->T > row0 ? cp * t->T : row0, m1 = (cp + 1) * t->T < row1 ? (cp + 1) * t->T : row1;
        if (m0 >= m1) continue;
        const float e = t->e[cp];
        const float *p = bT;   // e = 0: B itself
        if (e != 0.0f) {
            if (t->query[cp] != drawn) {
                drawn = t->query[cp];
                t->normal(t->normal_ctx, drawn, n0 * r, nc * r, z);   // B's row-major element order
                lb_transpose(z, r, nc, zT);
            }
#if PRGE_X86
            if (c->avx512) lb_panel_avx512(bT, zT, e, r, pan);
            else
#endif
                lb_panel_generic(bT, zT, e, r, pan);
            p = pan;
        }
#if PRGE_X86
        if (c->avx512) { lb_rows_avx512(c, p, m0, m1, n0, nc); continue; }
#endif
        lb_rows_generic(c, p, m0, m1, n0, nc);
    }
}

// Copy indices grouped by (e ≠ 0, query), ties by index: [copies]
void prge_lora_order(const prge_lora_term *t, int32_t *order) {
    for (int64_t k = 0; k < t->copies; k++) {   // insertion sort: copies are few (2q)
        const int64_t key = t->e[k] == 0.0f ? -1 : t->query[k];
        int64_t i = k;
        for (; i > 0; i--) {
            const int32_t o = order[i - 1];
            if ((t->e[o] == 0.0f ? -1 : t->query[o]) <= key) break;
            order[i] = o;
        }
        order[i] = (int32_t)k;
    }
}

void prge_lora_tile(const prge_lora_term *t, const int32_t *order, int avx512, float *Y, int64_t ldy,
                    int64_t n0, int64_t n1, int64_t row0, int64_t row1) {
    const lb_ctx c = {t, order, Y, ldy, n1, avx512};
    for (int64_t n = n0; n < n1; n += LB_NC) lb_columns(&c, n, n1 - n < LB_NC ? n1 - n : LB_NC, row0, row1);
}

static void lb_task(void *vctx, int64_t task) {
    const lb_ctx *c = (const lb_ctx *)vctx;
    const int64_t n0 = task * LB_NC;
    lb_columns(c, n0, c->N - n0 < LB_NC ? c->N - n0 : LB_NC, 0, c->t->copies * c->t->T);
}

void prge_lora_b(prge_pool *pool, int mode, const prge_lora_term *t, float *Y, int64_t ldy, int64_t N) {
    if (N <= 0 || t->r <= 0 || t->T <= 0 || t->copies <= 0) return;
    int32_t *order = (int32_t *)prge_scratch(3, (size_t)t->copies * sizeof(int32_t));
    prge_lora_order(t, order);
    const lb_ctx c = {t, order, Y, ldy, N, (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512()};
    prge_pool_run(pool, lb_task, (void *)&c, (N + LB_NC - 1) / LB_NC);
}
