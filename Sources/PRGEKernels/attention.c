// attention.c: causal attention of a ragged batch of sequences, all heads, one parallel region.
//
// Tasks are (sequence, head, block of AT_QB query rows). A row attends to every key at or before
// its position, so later blocks cost more; the pool hands tasks out dynamically, and handing out
// the most expensive first keeps every thread busy to the end (512 rows, 9 heads: 144 tasks).
//
// A row's arithmetic depends only on the row, never on its block, lane or neighbours: each score
// is one fma chain over head_dim, the softmax sum and the P·V accumulation run over keys in
// ascending order, and rows that share a register block still get exactly their own keys. So
// results are bit-identical for any thread count, and a row computed in a prefill has the bits
// it gets in a KV-cache continuation (p0 > 0).
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <math.h>
#include <stdlib.h>

enum {
    AT_QB = 32,   // query rows per task: two lane groups of 16 (AVX-512: a lane is a query row)
    AT_KB = 8,    // keys per score micro-kernel: 8 accumulators hide the FMA latency
    AT_RB = 4,    // rows per P·V micro-kernel: 4 rows × 4 vectors of head_dim 64 = 16 accumulators
};

typedef struct { int64_t seq, head, r0, cost; } at_task;

typedef struct {
    const float *q, *k, *v; float *out;
    int64_t ldq, ldkv, ldo;
    const int64_t *q_row, *kv_row, *len;
    int64_t p0, group, head_dim;   // group: query heads per KV head
    float scale;
    const at_task *tasks;
    int avx512;
} at_ctx;

// ---- portable path ---------------------------------------------------------------------------
static float at_dot(const float *a, const float *b, int64_t n) {
    float s = 0.f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// n query rows; row t sits at position pos0 + t and attends to keys 0..pos0+t.
// e: scratch of pos0 + n floats.
static void at_block_generic(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv,
                             float *out, int64_t ldo, int64_t n, int64_t pos0, int64_t hd, float scale, float *e) {
    for (int64_t t = 0; t < n; t++) {
        const float *qt = q + t * ldq;
        const int64_t n_ctx = pos0 + t + 1;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n_ctx; j++) {
            e[j] = at_dot(qt, k + j * ldkv, hd) * scale;
            if (e[j] > mx) mx = e[j];
        }
        float sum = 0.f;
        for (int64_t j = 0; j < n_ctx; j++) { e[j] = expf(e[j] - mx); sum += e[j]; }
        const float inv = 1.f / sum;
        float *o = out + t * ldo;
        for (int64_t d = 0; d < hd; d++) o[d] = 0.f;
        for (int64_t j = 0; j < n_ctx; j++) {
            const float p = e[j] * inv;
            const float *vj = v + j * ldkv;
            for (int64_t d = 0; d < hd; d++) o[d] += p * vj[d];
        }
    }
}

#if PRGE_X86
// ---- AVX-512 path: a lane group of 16 query rows, transposed so that a lane is a row ----------
// Scores of KB keys: st[b][i] = scale · Σ_d qt[d][i] · k_b[d], one fma chain over d per score.
PRGE_AVX512 PRGE_INLINE void at_scores_ukr(const int KB, const float *qt, const float *k, int64_t ldkv,
                                           int64_t hd, __m512 scale, float *st) {
    __m512 acc[AT_KB];
    for (int b = 0; b < KB; b++) acc[b] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const __m512 qd = _mm512_load_ps(qt + d * 16);       // dimension d of the 16 rows
        for (int b = 0; b < KB; b++) acc[b] = _mm512_fmadd_ps(qd, _mm512_set1_ps(k[b * ldkv + d]), acc[b]);
    }
    for (int b = 0; b < KB; b++) _mm512_store_ps(st + b * 16, _mm512_mul_ps(acc[b], scale));
}

// st: [n_keys][16] scores of the group's rows against keys 0..n_keys-1. qt: [hd][16].
PRGE_AVX512 static void at_scores(const float *qt, const float *k, int64_t ldkv, int64_t n_keys,
                                  int64_t hd, float scale, float *st) {
    const __m512 sc = _mm512_set1_ps(scale);
    int64_t j = 0;
    for (; j + AT_KB <= n_keys; j += AT_KB) at_scores_ukr(AT_KB, qt, k + j * ldkv, ldkv, hd, sc, st + j * 16);
    for (; j < n_keys; j++) at_scores_ukr(1, qt, k + j * ldkv, ldkv, hd, sc, st + j * 16);
}

// Lanes (rows at positions pos0 + i) that see key j: those with pos0 + i >= j.
PRGE_AVX512 PRGE_INLINE __mmask16 at_visible(int64_t j, int64_t pos0) {
    return j <= pos0 ? (__mmask16)0xffff : (__mmask16)(0xffffu << (j - pos0));
}

// In place over st [n_keys][16]: e^(s − row max) where the row sees the key, +0 where it does
// not (those zeros come after all of the row's keys, so they never change its sum's bits).
// Returns the 16 row sums, each one chain over keys in ascending order.
PRGE_AVX512 static __m512 at_softmax(float *st, int64_t n_keys, int64_t pos0) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n_keys; j++)
        mx = _mm512_mask_max_ps(mx, at_visible(j, pos0), mx, _mm512_load_ps(st + j * 16));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n_keys; j++) {
        const __m512 e = _mm512_maskz_mov_ps(at_visible(j, pos0), prge_exp512(_mm512_sub_ps(_mm512_load_ps(st + j * 16), mx)));
        _mm512_store_ps(st + j * 16, e);
        sum = _mm512_add_ps(sum, e);
    }
    return sum;
}

// acc[r] += e[j][lane0 + r] · v_j over dims [c0, c0 + 64) (masks m) for keys j in [j0, j1).
PRGE_AVX512 PRGE_INLINE void at_pv_keys(const int R, __m512 (*acc)[4], const float *st, int lane0,
                                        const float *v, int64_t ldkv, int64_t j0, int64_t j1, const __mmask16 *m) {
    for (int64_t j = j0; j < j1; j++) {
        const float *vj = v + j * ldkv;
        __m512 vv[4];
        for (int c = 0; c < 4; c++) vv[c] = _mm512_maskz_loadu_ps(m[c], vj + 16 * c);
        for (int r = 0; r < R; r++) {
            const __m512 p = _mm512_set1_ps(st[j * 16 + lane0 + r]);
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(p, vv[c], acc[r][c]);
        }
    }
}

// Rows lane0 ..< lane0 + R of the group: out_r = Σ_{j ≤ pos_r} e[j][r] · v_j / sum_r. Row r sees
// r more keys than the first row; it takes them alone, after the shared ones, so its chain
// over keys is the same as if it ran alone (R = 1).
PRGE_AVX512 PRGE_INLINE void at_pv_rows(const int R, const float *st, int lane0, const float *sums,
                                        const float *v, int64_t ldkv, int64_t pos0, int64_t hd,
                                        float *out, int64_t ldo) {
    const int64_t n_shared = pos0 + lane0 + 1;               // keys of the first row
    for (int64_t c0 = 0; c0 < hd; c0 += 64) {                // dims in chunks of 4 vectors
        __mmask16 m[4];
        for (int c = 0; c < 4; c++) m[c] = prge_mask16(hd - c0 - 16 * c);
        __m512 acc[AT_RB][4];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
        at_pv_keys(R, acc, st, lane0, v + c0, ldkv, 0, n_shared, m);
        for (int r = 1; r < R; r++)
            at_pv_keys(1, acc + r, st, lane0 + r, v + c0, ldkv, n_shared, n_shared + r, m);
        for (int r = 0; r < R; r++) {
            const __m512 s = _mm512_set1_ps(sums[lane0 + r]);
            for (int c = 0; c < 4; c++)
                _mm512_mask_storeu_ps(out + r * ldo + c0 + 16 * c, m[c], _mm512_div_ps(acc[r][c], s));
        }
    }
}

// n ≤ 16 query rows at positions pos0 ..< pos0 + n (strides as in at_block_generic).
PRGE_AVX512 static void at_group_avx512(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv,
                                        float *out, int64_t ldo, int64_t n, int64_t pos0, int64_t hd, float scale) {
    const int64_t n_keys = pos0 + n;
    float *qt = (float *)prge_scratch(1, (size_t)(hd + n_keys) * 16 * sizeof(float));   // [hd][16]
    float *st = qt + hd * 16;                                                          // [n_keys][16]
    for (int64_t d = 0; d < hd; d++)
        for (int64_t i = 0; i < 16; i++) qt[d * 16 + i] = i < n ? q[i * ldq + d] : 0.0f;
    at_scores(qt, k, ldkv, n_keys, hd, scale, st);
    float sums[16] __attribute__((aligned(64)));
    _mm512_store_ps(sums, at_softmax(st, n_keys, pos0));
    int64_t r = 0;
    for (; r + AT_RB <= n; r += AT_RB) at_pv_rows(AT_RB, st, (int)r, sums, v, ldkv, pos0, hd, out + r * ldo, ldo);
    for (; r < n; r++) at_pv_rows(1, st, (int)r, sums, v, ldkv, pos0, hd, out + r * ldo, ldo);
}
#endif

static void at_task_run(void *vctx, int64_t i) {
    const at_ctx *c = (const at_ctx *)vctx;
    const at_task *t = &c->tasks[i];
    const int64_t hd = c->head_dim, len = c->len[t->seq];
    const int64_t n = len - t->r0 < AT_QB ? len - t->r0 : AT_QB;
    const int64_t row = c->q_row[t->seq] + t->r0, kv_off = c->kv_row[t->seq] * c->ldkv + (t->head / c->group) * hd;
    const float *q = c->q + row * c->ldq + t->head * hd, *k = c->k + kv_off, *v = c->v + kv_off;
    float *out = c->out + row * c->ldo + t->head * hd;
    const int64_t pos0 = c->p0 + t->r0;
#if PRGE_X86
    if (c->avx512) {
        for (int64_t g = 0; g < n; g += 16)
            at_group_avx512(q + g * c->ldq, c->ldq, k, v, c->ldkv, out + g * c->ldo, c->ldo,
                            n - g < 16 ? n - g : 16, pos0 + g, hd, c->scale);
        return;
    }
#endif
    float *e = (float *)prge_scratch(1, (size_t)(pos0 + n) * sizeof(float));
    at_block_generic(q, c->ldq, k, v, c->ldkv, out, c->ldo, n, pos0, hd, c->scale, e);
}

// Most expensive first; ties in table order, so the order is the same on every run.
static int at_task_cmp(const void *a, const void *b) {
    const at_task *x = (const at_task *)a, *y = (const at_task *)b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    if (x->r0 != y->r0) return x->r0 < y->r0 ? -1 : 1;
    return x->head < y->head ? -1 : x->head > y->head;
}

// The task table (caller's scratch), sorted most expensive first. Returns its length.
static int64_t at_tasks(const int64_t *len, int64_t n_seq, int64_t p0, int64_t n_head, at_task **out) {
    int64_t n = 0;
    for (int64_t s = 0; s < n_seq; s++) n += (len[s] + AT_QB - 1) / AT_QB * n_head;
    at_task *t = (at_task *)prge_scratch(0, (size_t)(n > 0 ? n : 1) * sizeof(at_task));
    int64_t i = 0;
    for (int64_t s = 0; s < n_seq; s++)
        for (int64_t r0 = 0; r0 < len[s]; r0 += AT_QB) {
            const int64_t rows = len[s] - r0 < AT_QB ? len[s] - r0 : AT_QB;
            for (int64_t h = 0; h < n_head; h++)
                t[i++] = (at_task){s, h, r0, rows * (p0 + r0 + (rows + 1) / 2)};   // ≈ scores
        }
    qsort(t, (size_t)n, sizeof(at_task), at_task_cmp);
    *out = t;
    return n;
}

void prge_attention(prge_pool *pool, int mode, const float *q, int64_t ldq, const float *k,
                    const float *v, int64_t ldkv, float *out, int64_t ldo, const int64_t *q_row,
                    const int64_t *kv_row, const int64_t *len, int64_t n_seq, int64_t p0,
                    int64_t n_head, int64_t n_head_kv, int64_t head_dim, float scale) {
    at_task *tasks;
    const int64_t n_tasks = at_tasks(len, n_seq, p0, n_head, &tasks);
    at_ctx c = {q, k, v, out, ldq, ldkv, ldo, q_row, kv_row, len, p0, n_head / n_head_kv, head_dim,
                scale, tasks, (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512()};
    prge_pool_run(pool, at_task_run, &c, n_tasks);
}
