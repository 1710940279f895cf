// lora.c: the LoRA-FA B term of every copy of a P-RGE batch in one parallel region.
//
// Copy c owns rows c·T ..< (c+1)·T of H and Y and adds s · H_c · (B + e_c · z_{q_c})ᵀ.
// One task per 32 output columns runs all copies for them: it transposes its columns of B
// into a k-major [r, 32] panel once, draws each query's z for those columns once (into L1),
// and for each copy builds the panel of B + e·z and streams the copy's rows past it.
// Every output element is computed by exactly one task as
//     acc = Σ_j h[m, j] · p[j, n]  (j ascending, one FMA chain),   y[m, n] += s · acc
// so results do not depend on the thread count, on the row blocking or on the copy count
// (sequential RGE, one copy per forward, gets the same bits per copy as fused P-RGE). The
// matmul's panel tasks build the same panels per tile and add each row's term
// (prge_lora_rows32) before they store the row.
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <stdlib.h>
#include <string.h>

enum { LB_NC = PRGE_LORA_NC };   // output columns per task: two zmm of fp32

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
PRGE_AVX512 static void lb_panel_avx512(const float *bT, const float *zT, float e, int64_t r, float *pan) {
    const __m512 ev = _mm512_set1_ps(e);
    for (int64_t i = 0; i < r * LB_NC; i += 16)
        _mm512_store_ps(pan + i, _mm512_fmadd_ps(ev, _mm512_load_ps(zT + i), _mm512_load_ps(bT + i)));
}

// Rows [m0, m1) of the task's columns (masks cover the nc valid ones).
PRGE_AVX512 static void lb_rows_avx512(const lb_ctx *c, const float *pan, int64_t m0, int64_t m1, int64_t n0, int64_t nc) {
    const __mmask16 k0 = prge_mask16(nc), k1 = prge_mask16(nc - 16);
    const __m512 s = _mm512_set1_ps(c->t->s);
    for (int64_t m = m0; m < m1; m++) {
        float *y = c->Y + m * c->ldy + n0;
        // Y's rows are d_out floats apart, too far apart for the hardware prefetcher: ask for
        // a row 8 ahead (a prefetch past the end of Y is harmless: prefetches never fault).
        _mm_prefetch((const char *)(y + 8 * c->ldy), _MM_HINT_T0);
        _mm_prefetch((const char *)(y + 8 * c->ldy + 16), _MM_HINT_T0);
        __m512 y0 = _mm512_maskz_loadu_ps(k0, y), y1 = _mm512_maskz_loadu_ps(k1, y + 16);
        prge_lora_rows32(1, c->t->H + m * c->t->ldh, 0, pan, c->t->r, s, &y0, &y1);
        _mm512_mask_storeu_ps(y, k0, y0);
        _mm512_mask_storeu_ps(y + 16, k1, y1);
    }
}
#endif

// ---- columns [n0, n0 + nc), nc <= 32: every copy's panel, then its rows ---------------------
// buf: prge_lora_panels_floats(t) floats; copy c's [r, 32] panel B + e_c·z (B itself where
// e_c = 0) lands at buf + c·r·32, each query's z drawn once (copies in `order`), then scratch.
size_t prge_lora_panels_floats(const prge_lora_term *t) { return (size_t)((t->copies + 3) * t->r * LB_NC); }

void prge_lora_panels(const prge_lora_term *t, const int32_t *order, int avx512, int64_t n0, int64_t nc,
                      float *buf) {
    const int64_t r = t->r;
    const size_t panel = (size_t)(r * LB_NC);
    float *bT = buf + (size_t)t->copies * panel, *zT = bT + panel, *z = zT + panel;   // z: [nc, r] as drawn
    lb_transpose(t->B + n0 * r, r, nc, bT);
    int32_t drawn = -1;   // query whose z is in zT
    for (int64_t k = 0; k < t->copies; k++) {
        const int64_t cp = order[k];
        float *pan = buf + cp * panel;
        const float e = t->e[cp];
        if (e == 0.0f) { memcpy(pan, bT, panel * sizeof(float)); continue; }
        if (t->query[cp] != drawn) {
            drawn = t->query[cp];
            t->normal(t->normal_ctx, drawn, n0 * r, nc * r, z);   // B's row-major element order
            lb_transpose(z, r, nc, zT);
        }
#if PRGE_X86
        if (avx512) { lb_panel_avx512(bT, zT, e, r, pan); continue; }
#endif
        lb_panel_generic(bT, zT, e, r, pan);
    }
}

// The term on rows [row0, row1) (clipped to the copies' rows) of columns [n0, n0 + nc) of Y,
// from prge_lora_panels' buf of those columns.
static void lb_rows(const prge_lora_term *t, const float *buf, int avx512, float *Y, int64_t ldy, int64_t n0,
                    int64_t nc, int64_t row0, int64_t row1) {
    const lb_ctx c = {t, NULL, Y, ldy, n0 + nc, avx512};
    const int64_t end = t->copies * t->T < row1 ? t->copies * t->T : row1;
    for (int64_t m0 = row0; m0 < end;) {
        const int64_t cp = m0 / t->T, m1 = (cp + 1) * t->T < end ? (cp + 1) * t->T : end;
        const float *pan = buf + cp * t->r * LB_NC;
#if PRGE_X86
        if (avx512) lb_rows_avx512(&c, pan, m0, m1, n0, nc);
        else
#endif
            lb_rows_generic(&c, pan, m0, m1, n0, nc);
        m0 = m1;
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

static void lb_task(void *vctx, int64_t task) {
    const lb_ctx *c = (const lb_ctx *)vctx;
    const int64_t n0 = task * LB_NC, nc = c->N - n0 < LB_NC ? c->N - n0 : LB_NC;
    float *buf = (float *)prge_scratch(1, prge_lora_panels_floats(c->t) * sizeof(float));
    prge_lora_panels(c->t, c->order, c->avx512, n0, nc, buf);
    lb_rows(c->t, buf, c->avx512, c->Y, c->ldy, n0, nc, 0, c->t->copies * c->t->T);
}

void prge_lora_b(prge_pool *pool, int mode, const prge_lora_term *t, float *Y, int64_t ldy, int64_t N) {
    if (N <= 0 || t->r <= 0 || t->T <= 0 || t->copies <= 0) return;
    int32_t *order = (int32_t *)prge_scratch(3, (size_t)t->copies * sizeof(int32_t));
    prge_lora_order(t, order);
    const lb_ctx c = {t, order, Y, ldy, N, (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512()};
    prge_pool_run(pool, lb_task, (void *)&c, (N + LB_NC - 1) / LB_NC);
}
