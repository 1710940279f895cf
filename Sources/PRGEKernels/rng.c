// rng.c: the bulk of the counter-based generator (Sources/PRGE/ZO/CounterRNG.swift documents
// the stream layout and the Box–Muller arithmetic; this file computes exactly that).
//
// A batch is 32 elements = 8 Philox blocks; element 32j + 8l + i is lane l of block 8j + i.
// The portable path computes a batch with scalar code; the AVX-512 path two batches at once,
// 16 blocks in the lanes of a zmm, and stores the halves 32 elements apart. Both use only
// +, −, ·, / (correctly rounded, never fused: no FMA here), integer and bit operations, in
// the same order, so they give the same bits, and the same bits as any other conforming
// implementation of the documented formulas.
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <string.h>

#pragma clang fp contract(off)

enum { RNG_BATCH = 32 };

static const float RNG_LN2 = 0.693147180559945f;
static const float RNG_2PI_2M24 = (float)(6.28318530717959 * 0x1p-24);

// ---- portable path: one block at a time -----------------------------------------------------
static void rng_philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n1 = (uint32_t)p1;
        const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1, n3 = (uint32_t)p0;
        c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
    }
}

static inline float rng_bits_f(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t rng_f_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

static float rng_log_unit(float u) {
    const uint32_t bits = rng_f_bits(u), mant = bits & 0x007FFFFFu;
    const uint32_t big = (0x003504F3u - mant) >> 31;
    const float e = (float)((int32_t)((bits >> 23) + big) - 127);
    const float m = rng_bits_f((mant | 0x3F800000u) - (big << 23));
    const float s = (m - 1) / (m + 1), s2 = s * s;
    float p = s2 * (float)(1.0 / 9) + (float)(1.0 / 7);
    p = p * s2 + (float)(1.0 / 5);
    p = p * s2 + (float)(1.0 / 3);
    p = p * s2 + 1;
    return e * RNG_LN2 + 2 * s * p;
}

static float rng_rsqrt(float y) {
    float r = rng_bits_f(0x5F375A86u - (rng_f_bits(y) >> 1));
    const float half = y * 0.5f;
    for (int i = 0; i < 3; i++) r = r * (1.5f - half * r * r);
    return r;
}

static void rng_cos_sin_2pi(uint32_t k, float *c, float *s) {
    const uint32_t q = (k + (1u << 21)) >> 22;
    const float x = (float)((int32_t)k - (int32_t)(q << 22)) * RNG_2PI_2M24, x2 = x * x;
    float sn = x2 * (float)(1.0 / 362880) - (float)(1.0 / 5040);
    sn = sn * x2 + (float)(1.0 / 120);
    sn = sn * x2 - (float)(1.0 / 6);
    sn = (sn * x2 + 1) * x;
    float cs = x2 * (float)(-1.0 / 3628800) + (float)(1.0 / 40320);
    cs = cs * x2 - (float)(1.0 / 720);
    cs = cs * x2 + (float)(1.0 / 24);
    cs = cs * x2 - 0.5f;
    cs = cs * x2 + 1;
    const uint32_t swap = 0u - (q & 1), sb = rng_f_bits(sn), cb = rng_f_bits(cs);
    const uint32_t cr = (cb & ~swap) | (sb & swap), sr = (sb & ~swap) | (cb & swap);
    *c = rng_bits_f(cr ^ (((q ^ (q >> 1)) & 1) << 31));
    *s = rng_bits_f(sr ^ (((q >> 1) & 1) << 31));
}

static void rng_box_muller(uint32_t wu, uint32_t wt, float *a, float *b) {
    const float u = (float)((wu >> 8) + 1) * 0x1p-24f;
    float c, s;
    rng_cos_sin_2pi(wt >> 8, &c, &s);
    const float y = rng_log_unit(u) * -2;
    const float r = y * rng_rsqrt(y);
    *a = r * c;
    *b = r * s;
}

// Batch j (blocks 8j ..< 8j + 8) into out[0 ..< 32].
static void rng_batch_generic(int kind, const uint32_t st[4], uint64_t j, float lo, float width, float *out) {
    for (int i = 0; i < 8; i++) {
        const uint64_t block = 8 * j + (uint64_t)i;
        uint32_t w[4] = {(uint32_t)block, (uint32_t)(block >> 32), st[2], st[3]};
        rng_philox(w, st[0], st[1]);
        float v[4];
        if (kind == PRGE_RNG_NORMAL) {
            rng_box_muller(w[0], w[1], &v[0], &v[1]);
            rng_box_muller(w[2], w[3], &v[2], &v[3]);
        } else {
            for (int l = 0; l < 4; l++) v[l] = (float)(w[l] >> 8) * 0x1p-24f * width + lo;
        }
        for (int l = 0; l < 4; l++) out[8 * l + i] = v[l];
    }
}

#if PRGE_X86
// ---- AVX-512 path: batches j and j + 1 (blocks 8j ..< 8j + 16) -------------------------------
PRGE_AVX512 PRGE_INLINE __m512i rng_mulhi(__m512i x, uint32_t m) {
    const __m512i mv = _mm512_set1_epi32((int)m);
    const __m512i ev = _mm512_srli_epi64(_mm512_mul_epu32(x, mv), 32);                     // even lanes
    const __m512i od = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), mv);                     // odd lanes
    return _mm512_mask_mov_epi32(ev, 0xAAAA, od);
}

PRGE_AVX512 PRGE_INLINE __m512 rng_log_unit16(__m512 u) {
    const __m512i bits = _mm512_castps_si512(u), mant = _mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF));
    const __m512i big = _mm512_srli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(0x003504F3), mant), 31);
    const __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_add_epi32(_mm512_srli_epi32(bits, 23), big),
                                                         _mm512_set1_epi32(127)));
    const __m512 m = _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_or_si512(mant, _mm512_set1_epi32(0x3F800000)),
                                                          _mm512_slli_epi32(big, 23)));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 s = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one)), s2 = _mm512_mul_ps(s, s);
    __m512 p = _mm512_add_ps(_mm512_mul_ps(s2, _mm512_set1_ps((float)(1.0 / 9))), _mm512_set1_ps((float)(1.0 / 7)));
    p = _mm512_add_ps(_mm512_mul_ps(p, s2), _mm512_set1_ps((float)(1.0 / 5)));
    p = _mm512_add_ps(_mm512_mul_ps(p, s2), _mm512_set1_ps((float)(1.0 / 3)));
    p = _mm512_add_ps(_mm512_mul_ps(p, s2), one);
    return _mm512_add_ps(_mm512_mul_ps(e, _mm512_set1_ps(RNG_LN2)),
                         _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), s), p));
}

PRGE_AVX512 PRGE_INLINE __m512 rng_rsqrt16(__m512 y) {
    __m512 r = _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_set1_epi32(0x5F375A86),
                                                    _mm512_srli_epi32(_mm512_castps_si512(y), 1)));
    const __m512 half = _mm512_mul_ps(y, _mm512_set1_ps(0.5f)), th = _mm512_set1_ps(1.5f);
    for (int i = 0; i < 3; i++) r = _mm512_mul_ps(r, _mm512_sub_ps(th, _mm512_mul_ps(_mm512_mul_ps(half, r), r)));
    return r;
}

PRGE_AVX512 PRGE_INLINE void rng_cos_sin16(__m512i k, __m512 *c, __m512 *s) {
    const __m512i q = _mm512_srli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(1 << 21)), 22);
    const __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(k, _mm512_slli_epi32(q, 22))),
                                   _mm512_set1_ps(RNG_2PI_2M24));
    const __m512 x2 = _mm512_mul_ps(x, x);
#define RNG_HORNER(acc, cst) acc = _mm512_add_ps(_mm512_mul_ps(acc, x2), _mm512_set1_ps(cst))
    __m512 sn = _mm512_sub_ps(_mm512_mul_ps(x2, _mm512_set1_ps((float)(1.0 / 362880))), _mm512_set1_ps((float)(1.0 / 5040)));
    RNG_HORNER(sn, (float)(1.0 / 120));
    sn = _mm512_sub_ps(_mm512_mul_ps(sn, x2), _mm512_set1_ps((float)(1.0 / 6)));
    sn = _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(sn, x2), _mm512_set1_ps(1.0f)), x);
    __m512 cs = _mm512_add_ps(_mm512_mul_ps(x2, _mm512_set1_ps((float)(-1.0 / 3628800))), _mm512_set1_ps((float)(1.0 / 40320)));
    cs = _mm512_sub_ps(_mm512_mul_ps(cs, x2), _mm512_set1_ps((float)(1.0 / 720)));
    RNG_HORNER(cs, (float)(1.0 / 24));
    cs = _mm512_sub_ps(_mm512_mul_ps(cs, x2), _mm512_set1_ps(0.5f));
    RNG_HORNER(cs, 1.0f);
#undef RNG_HORNER
    const __mmask16 odd = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
    const __m512i sb = _mm512_castps_si512(sn), cb = _mm512_castps_si512(cs);
    const __m512i cr = _mm512_mask_mov_epi32(cb, odd, sb), sr = _mm512_mask_mov_epi32(sb, odd, cb);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i negc = _mm512_slli_epi32(_mm512_and_si512(_mm512_xor_si512(q, _mm512_srli_epi32(q, 1)), one), 31);
    const __m512i negs = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(q, 1), one), 31);
    *c = _mm512_castsi512_ps(_mm512_xor_si512(cr, negc));
    *s = _mm512_castsi512_ps(_mm512_xor_si512(sr, negs));
}

PRGE_AVX512 PRGE_INLINE void rng_box_muller16(__m512i wu, __m512i wt, __m512 *a, __m512 *b) {
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_srli_epi32(wu, 8), _mm512_set1_epi32(1))),
                                   _mm512_set1_ps(0x1p-24f));
    __m512 c, s;
    rng_cos_sin16(_mm512_srli_epi32(wt, 8), &c, &s);
    const __m512 y = _mm512_mul_ps(rng_log_unit16(u), _mm512_set1_ps(-2.0f));
    const __m512 r = _mm512_mul_ps(y, rng_rsqrt16(y));
    *a = _mm512_mul_ps(r, c);
    *b = _mm512_mul_ps(r, s);
}

// out[0 ..< 32] = batch j, out[32 ..< 64] = batch j + 1.
PRGE_AVX512 static void rng_batch2_avx512(int kind, const uint32_t st[4], uint64_t j, float lo, float width, float *out) {
    const uint64_t block = 8 * j;
    __m512i x0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)block),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    // Word 1 is block >> 32 for each lane's own block (a lane past a 2^32 boundary carries).
    const __mmask16 carry = _mm512_cmplt_epu32_mask(x0, _mm512_set1_epi32((int)(uint32_t)block));
    __m512i x1 = _mm512_mask_add_epi32(_mm512_set1_epi32((int)(uint32_t)(block >> 32)), carry,
                                       _mm512_set1_epi32((int)(uint32_t)(block >> 32)), _mm512_set1_epi32(1));
    __m512i x2 = _mm512_set1_epi32((int)st[2]), x3 = _mm512_set1_epi32((int)st[3]);
    uint32_t k0 = st[0], k1 = st[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const __m512i hi0 = rng_mulhi(x0, 0xD2511F53u), lo0 = _mm512_mullo_epi32(x0, _mm512_set1_epi32((int)0xD2511F53u));
        const __m512i hi1 = rng_mulhi(x2, 0xCD9E8D57u), lo1 = _mm512_mullo_epi32(x2, _mm512_set1_epi32((int)0xCD9E8D57u));
        x0 = _mm512_xor_si512(_mm512_xor_si512(hi1, x1), _mm512_set1_epi32((int)k0));
        x1 = lo1;
        x2 = _mm512_xor_si512(_mm512_xor_si512(hi0, x3), _mm512_set1_epi32((int)k1));
        x3 = lo0;
    }
    __m512 v[4];
    if (kind == PRGE_RNG_NORMAL) {
        rng_box_muller16(x0, x1, &v[0], &v[1]);
        rng_box_muller16(x2, x3, &v[2], &v[3]);
    } else {
        const __m512i w[4] = {x0, x1, x2, x3};
        for (int l = 0; l < 4; l++)
            v[l] = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w[l], 8)),
                                                             _mm512_set1_ps(0x1p-24f)), _mm512_set1_ps(width)),
                                 _mm512_set1_ps(lo));
    }
    for (int l = 0; l < 4; l++) {
        _mm256_storeu_ps(out + 8 * l, _mm512_castps512_ps256(v[l]));
        _mm256_storeu_ps(out + RNG_BATCH + 8 * l, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[l]), 1)));
    }
}
#endif

void prge_rng_fill(int mode, int kind, const uint32_t stream[4], int64_t start, int64_t count, float lo, float hi,
                   float *out) {
    if (count <= 0 || start < 0) return;
    const float width = hi - lo;
    const int64_t end = start + count;
#if PRGE_X86
    const int avx512 = (mode & PRGE_MM_GENERIC) == 0 && prge_cpu_avx512() == 1;
#endif
    float tmp[2 * RNG_BATCH];
    for (int64_t first = start / RNG_BATCH * RNG_BATCH; first < end;) {
        const uint64_t j = (uint64_t)(first / RNG_BATCH);
        int64_t n = RNG_BATCH;   // elements produced in tmp from `first`
#if PRGE_X86
        if (avx512 && first + RNG_BATCH < end) {
            rng_batch2_avx512(kind, stream, j, lo, width, tmp);
            n = 2 * RNG_BATCH;
        } else
#endif
            rng_batch_generic(kind, stream, j, lo, width, tmp);
        const int64_t a = first > start ? first : start, b = first + n < end ? first + n : end;
        memcpy(out + (a - start), tmp + (a - first), (size_t)(b - a) * sizeof(float));
        first += n;
    }
}
