// dequant.c: ggml blocks -> f32, bit-identical to ggml's reference dequantizers (and to the
// `gguf` Python package, which mirrors them). Each block type is a struct of bytes read with
// memcpy, because blocks are packed (a Q4_0 block is 18 bytes) and so never aligned.
//
// Exactness rests on evaluating every value as ggml writes it: the same products in the same
// order, each rounded to f32. So contraction into FMA is off here: `d*q + m` fused would round
// once instead of twice and differ in the last bit on machines with FMA.
#include "prge_kernels.h"
#include "kernels_internal.h"
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define QK 32      // elements per block of the legacy types (Q4_0 ... Q8_0)
#define QK_K 256   // elements per super-block of the k-quants

// ---- f16 / bf16 ------------------------------------------------------------------------------

static float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float prge_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) {   // inf, or NaN: payload kept and made quiet, as the hardware converts
        return f32_from_bits(sign | 0x7f800000 | man << 13 | (man ? 0x400000 : 0));
    }
    if (exp != 0) return f32_from_bits(sign | (exp + 112) << 23 | man << 13); // rebias 15 -> 127
    if (man == 0) return f32_from_bits(sign);                                // ±0
    // Subnormal: man * 2^-24 exactly. Normalize by shifting the leading 1 into the implicit bit.
    int e = -1;
    do { man <<= 1; e++; } while (!(man & 0x400));
    return f32_from_bits(sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13);
}

uint16_t prge_f32_to_f16(float f) {
    uint32_t u = bits_from_f32(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return sign | 0x7e00;                 // NaN: canonical quiet NaN, as ggml
    if (a >= 0x477ff000) return sign | 0x7c00;                // rounds past 65504: inf
    if (a >= 0x38800000) {                                     // normal half (≥ 2^-14)
        uint32_t r = a + 0x0fff + ((a >> 13) & 1);             // round to nearest even at bit 13
        return sign | (uint16_t)((r >> 13) - (112 << 10));     // rebias 127 -> 15
    }
    if (a < 0x33000000) return sign;                           // below half the smallest subnormal
    // Subnormal half: value = m * 2^-24. Put the implicit 1 back, then shift right with
    // round-to-nearest-even; a carry into bit 10 correctly yields the smallest normal.
    uint32_t m = (a & 0x7fffff) | 0x800000;
    int shift = 126 - (int)(a >> 23);                          // 14..24
    uint32_t half = 1u << (shift - 1);
    uint32_t rest = m & ((1u << shift) - 1);
    uint32_t q = m >> shift;
    if (rest > half || (rest == half && (q & 1))) q++;
    return sign | (uint16_t)q;
}

float prge_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t prge_f32_to_bf16(float f) {
    uint32_t u = bits_from_f32(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN, quiet
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);                  // nearest even
}

static float load_f16(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return prge_f16_to_f32(h); }

// ---- legacy 32-element blocks -----------------------------------------------------------------
// Nibble layout shared by Q4/Q5: byte j holds element j (low nibble) and element j+16 (high).

static void dq_q4_0(const uint8_t *b, float *y) {      // f16 d | 16 B nibbles;  y = d*(q-8)
    float d = load_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {      // f16 d | f16 m | 16 B;  y = d*q + m
    float d = load_f16(b), m = load_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)(qs[j] & 0x0f) * d + m;
        y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
    }
}

// Q5: bit j of the little-endian u32 qh is the fifth bit of element j.
static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void dq_q5_0(const uint8_t *b, float *y) {      // f16 d | u32 qh | 16 B;  y = d*(q-16)
    float d = load_f16(b);
    uint32_t qh = load_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)(lo - 16) * d;
        y[j + QK / 2] = (float)(hi - 16) * d;
    }
}

static void dq_q5_1(const uint8_t *b, float *y) {      // f16 d | f16 m | u32 qh | 16 B
    float d = load_f16(b), m = load_f16(b + 2);
    uint32_t qh = load_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)lo * d + m;
        y[j + QK / 2] = (float)hi * d + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y) {      // f16 d | 32 int8;  y = d*q
    float d = load_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < QK; j++) y[j] = (float)qs[j] * d;
}

// ---- k-quants: 256-element super-blocks of 16 or 8 sub-blocks with their own scales --------

// Q2_K: 16 B scales (low nibble scale, high nibble min) | 64 B 2-bit quants | f16 d | f16 dmin.
// Each 32 bytes of qs hold 128 elements: bit pair 2s of byte l is element 32s + l.
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = load_f16(b + 80), dmin = load_f16(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++, is++) {      // two 16-element sub-blocks
                float dl = d * (float)(sc[is] & 0x0f), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)((q[l] >> shift) & 3) - ml;
            }
        }
    }
}

// Q3_K's 16 six-bit scales, packed in 12 bytes: the low 4 bits of scale i are nibble i of
// bytes 0..7 (low nibbles first), the high 2 bits are bit pair i/4 of byte 8 + i%4.
void prge_q3k_scales(const uint8_t *s, int *out) {
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s[i] & 0x0f : s[i - 8] >> 4;
        int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (lo | hi << 4) - 32;
    }
}

// Q3_K: 32 B hmask | 64 B 2-bit quants | 12 B scales | f16 d. The third bit comes from hmask:
// bit b of hmask[l] belongs to the b-th group of 32; a clear bit subtracts 4 (values -4..3).
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    int scales[16];
    prge_q3k_scales(b + 96, scales);
    float d = load_f16(b + 108);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int half = 0; half < 2; half++, is++) {
                float dl = d * (float)scales[is];
                for (int l = 16 * half; l < 16 * half + 16; l++) {
                    int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
        }
    }
}

// Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes. For j < 4 they are the low 6
// bits of bytes j and j+4; for j ≥ 4 the low 4 bits sit in byte j+4 (scale: low nibble,
// min: high nibble) and the top 2 bits are the spare top bits of bytes j-4 and j.
void prge_k4_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
        *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

// Q4_K: f16 d | f16 dmin | 12 B scales | 128 B nibbles. Each 32 bytes of nibbles hold 64
// elements: low nibbles the first sub-block of 32, high nibbles the second.
static void dq_q4_k(const uint8_t *b, float *y) {
    float d = load_f16(b), dmin = load_f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0; j < 8; j += 2, q += 32) {
        int sc, mn;
        prge_k4_scale_min(j, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        prge_k4_scale_min(j + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

// Q5_K: Q4_K plus 32 B qh before the nibbles; bit j of qh[l] is the fifth bit of element
// 32j + l.
static void dq_q5_k(const uint8_t *b, float *y) {
    float d = load_f16(b), dmin = load_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
    for (int j = 0; j < 8; j += 2, q += 32) {
        int sc, mn;
        prge_k4_scale_min(j, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        prge_k4_scale_min(j + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0x0f) | ((qh[l] >> j) & 1) << 4) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) | ((qh[l] >> (j + 1)) & 1) << 4) - m2;
    }
}

// Q6_K: 128 B low nibbles | 64 B high bit pairs | 16 int8 scales | f16 d; y = d*scale*(q-32).
// Per 128 elements: ql[0..63] and qh[0..31]; element 32k + l (k = 0..3) takes nibble k/2 of
// ql[l + 32*(k%2)] and bit pair k of qh[l]. Scales cover 16 elements each.
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = load_f16(b + 208);
    for (int n = 0; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                int lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0f;
                int q = (lo | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
                y[32 * k + l] = d * (float)sc[2 * k + l / 16] * (float)q;
            }
        }
    }
}

// ---- dispatch --------------------------------------------------------------------------------

typedef void (*block_fn)(const uint8_t *block, float *y);

static int dequantize_blocks(block_fn fn, int block_size, int type_size,
                             const uint8_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n / block_size; i++) fn(src + i * type_size, dst + i * block_size);
    return 0;
}

int prge_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (type) {
    case PRGE_T_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case PRGE_T_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = load_f16(s + 2 * i);
        return 0;
    case PRGE_T_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = prge_bf16_to_f32(h);
        }
        return 0;
    case PRGE_T_Q4_0: return dequantize_blocks(dq_q4_0, QK, 18, s, dst, n);
    case PRGE_T_Q4_1: return dequantize_blocks(dq_q4_1, QK, 20, s, dst, n);
    case PRGE_T_Q5_0: return dequantize_blocks(dq_q5_0, QK, 22, s, dst, n);
    case PRGE_T_Q5_1: return dequantize_blocks(dq_q5_1, QK, 24, s, dst, n);
    case PRGE_T_Q8_0: return dequantize_blocks(dq_q8_0, QK, 34, s, dst, n);
    case PRGE_T_Q2_K: return dequantize_blocks(dq_q2_k, QK_K, 84, s, dst, n);
    case PRGE_T_Q3_K: return dequantize_blocks(dq_q3_k, QK_K, 110, s, dst, n);
    case PRGE_T_Q4_K: return dequantize_blocks(dq_q4_k, QK_K, 144, s, dst, n);
    case PRGE_T_Q5_K: return dequantize_blocks(dq_q5_k, QK_K, 176, s, dst, n);
    case PRGE_T_Q6_K: return dequantize_blocks(dq_q6_k, QK_K, 210, s, dst, n);
    default: return -1;
    }
}
