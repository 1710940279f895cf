// kernels_internal.h: what the kernel files share (path choice, target attributes, scratch).
// Private to Sources/PRGEKernels: Swift sees only include/prge_kernels.h.
#pragma once
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PRGE_X86 1
// Skylake-SP and later (Ice Lake, Sapphire Rapids, Zen 4): AVX-512F/BW/VL/DQ.
#define PRGE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
// Only the bf16 mode's code (vdpbf16ps, vcvtne2ps2bf16): Cooper Lake, Sapphire Rapids, Zen 4.
#define PRGE_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c")))
#endif
#define PRGE_INLINE static inline __attribute__((always_inline))

#if PRGE_X86
// Lanes [0, left) of a 16-lane vector: all for left >= 16, none for left <= 0. Row tails use
// masked lanes of the same vector code, so an element's bits never depend on where a task ends.
PRGE_AVX512 PRGE_INLINE __mmask16 prge_mask16(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

// e^x to ~1 ulp: x = k·ln2 + f, |f| ≤ ln2/2 (ln2 in two parts, Cody–Waite), e^f by Cephes
// expf's polynomial, 2^k applied by scalef (which saturates to 0 and ∞). The clamp keeps k and
// f finite; e^x is already 0 or ∞ in fp32 beyond it.
PRGE_AVX512 PRGE_INLINE __m512 prge_exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    f = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, k);
}

// The LoRA B term of R <= PRGE_LORA_ROWS rows and 32 columns (a [r, PRGE_LORA_NC] panel of
// lora.c, shared by the rows; row i's h at h + i·ldh): per row, acc = Σ_j h[j]·pan[j] (j
// ascending, one FMA chain from zero), then y = s·acc + y. Written once, here: prge_lora_b and
// the term added inside the matmul's tiles give the same bits. Rows of one copy share the
// panel: one pass over it gives 2R independent FMA chains (one row alone has two, 4-cycle
// latency each, and loads the panel for every FMA).
enum { PRGE_LORA_NC = 32, PRGE_LORA_ROWS = 6 };
PRGE_AVX512 PRGE_INLINE void prge_lora_rows32(const int R, const float *h, int64_t ldh, const float *pan, int64_t r,
                                              __m512 s, __m512 *y0, __m512 *y1) {
    __m512 a0[PRGE_LORA_ROWS], a1[PRGE_LORA_ROWS];
    for (int i = 0; i < R; i++) a0[i] = a1[i] = _mm512_setzero_ps();
    for (int64_t j = 0; j < r; j++) {
        const __m512 p0 = _mm512_load_ps(pan + j * PRGE_LORA_NC), p1 = _mm512_load_ps(pan + j * PRGE_LORA_NC + 16);
        for (int i = 0; i < R; i++) {
            const __m512 hj = _mm512_set1_ps(h[i * ldh + j]);
            a0[i] = _mm512_fmadd_ps(hj, p0, a0[i]);
            a1[i] = _mm512_fmadd_ps(hj, p1, a1[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        y0[i] = _mm512_fmadd_ps(s, a0[i], y0[i]);
        y1[i] = _mm512_fmadd_ps(s, a1[i], y1[i]);
    }
}
#endif

// 1 when this CPU runs the AVX-512 paths, 0 for the portable C ones (env PRGE_MM_PATH=generic
// forces 0). Computed once.
int prge_cpu_avx512(void);
// 1 when it also has AVX512-BF16 (the bf16 mode's fast kernels), else 0.
int prge_cpu_avx512_bf16(void);

// dequant.c: sub-block j's 6-bit scale and min of a Q4_K / Q5_K super-block's 12 scale bytes q
// (the int8 kernel packs those sub-blocks as they are: matmul.c).
void prge_k4_scale_min(int j, const uint8_t *q, int *sc, int *mn);
// dequant.c: a Q3_K super-block's 16 signed scales (−32..31) from its 12 scale bytes.
void prge_q3k_scales(const uint8_t *s, int *out);

// Per-thread scratch of at least `bytes` (64-byte aligned), grown on demand and kept for the
// thread's life. Slot 0: buffers of a kernel's caller, outside its tasks. Slots 1, 2: per-task.
// Slot 3: the LoRA terms' copy orders of a call (caller side).
void *prge_scratch(int slot, size_t bytes);

// lora.c, for prge_matmul_multi's tiles (which add each row's term with prge_lora_rows32): the
// copies of term t in drawing order ([t->copies]); every copy's [r, 32] panel B + e·z of
// columns [n0, n0 + nc), nc <= 32, into buf (prge_lora_panels_floats(t) floats: copy c's
// panel at buf + c·r·32, then scratch).
struct prge_lora_term;
void prge_lora_order(const struct prge_lora_term *t, int32_t *order);
size_t prge_lora_panels_floats(const struct prge_lora_term *t);
void prge_lora_panels(const struct prge_lora_term *t, const int32_t *order, int avx512, int64_t n0, int64_t nc,
                      float *buf);
