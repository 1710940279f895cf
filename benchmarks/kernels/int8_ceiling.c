// int8_ceiling.c: what the Q4_1 × int8 micro-kernel's structure allows on this core, apart from
// memory, tiling and X quantization. Against prge's measured int8 peak (one thread: independent
// vpdpbusd chains, register operands; what prge bench calls the peak), two loops over data that
// stays in L1, one thread:
//   dot only   the micro-kernel's inner loop alone: 6 rows x 32 columns, per 32-k block 8 quads x
//              (2 W loads, 6 X broadcasts, 12 vpdpbusd) — the kernel without its fp32 tail
//   kernel     matmul.c's mm_ukr_int8 itself (6 rows, 18 blocks: K = 576), which adds per block
//              and row a convert, a multiply and two FMAs per 16 columns (d·dx and the Q4_1
//              minimum m·sx), then stores its 6 x 32 outputs
// matmul.c is included, not linked: its micro-kernel is static.
// Build and run (AVX512-VNNI CPUs only):
//   S=Sources/PRGEKernels
//   clang -O3 -I$S/include -I$S benchmarks/kernels/int8_ceiling.c $S/pool.c $S/dequant.c \
//         $S/lora.c $S/rng.c -lpthread -lm -o /tmp/i8c && /tmp/i8c
#include "matmul.c"
#include <stdio.h>
#include <time.h>

#define VNNI PRGE_AVX512_VNNI __attribute__((noinline))
enum { ROWS = MR8, BLOCKS = 18 };   // K = 576: the reference model's d_model

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static uint32_t X[BLOCKS * 8 * ROWS] __attribute__((aligned(64)));    // [block][quad][row] int8 quads
static uint32_t W[BLOCKS * 8 * 32] __attribute__((aligned(64)));      // [block][quad][column] 4-bit codes
static float XS[BLOCKS * MM_XS * ROWS] __attribute__((aligned(64)));  // [block][dx, sx, sx0, sx1][row]
static float WS[BLOCKS * 2 * 32] __attribute__((aligned(64)));        // [block][d, m][column]
static float Y[ROWS * 32] __attribute__((aligned(64)));               // the kernel's outputs

VNNI static int64_t dot_only(int64_t iters) {
    __m512i s[ROWS][2];
    for (int i = 0; i < ROWS; i++) s[i][0] = s[i][1] = _mm512_setzero_si512();
    for (int64_t it = 0; it < iters; it++)
        for (int b = 0; b < BLOCKS; b++) {
            const uint32_t *xp = X + b * 8 * ROWS, *pan = W + b * 8 * 32;
            for (int q = 0; q < 8; q++) {
                const __m512i w0 = _mm512_load_si512(pan + q * 32), w1 = _mm512_load_si512(pan + q * 32 + 16);
                for (int i = 0; i < ROWS; i++) {
                    const __m512i a = _mm512_set1_epi32((int)xp[q * ROWS + i]);
                    s[i][0] = _mm512_dpbusd_epi32(s[i][0], w0, a);
                    s[i][1] = _mm512_dpbusd_epi32(s[i][1], w1, a);
                }
            }
        }
    for (int i = 0; i < ROWS; i++) s[0][0] = _mm512_add_epi32(s[0][0], _mm512_add_epi32(s[i][0], s[i][1]));
    return _mm512_reduce_add_epi32(s[0][0]);
}

VNNI static float kernel(int64_t iters) {
    const mm_lora_blk none = {NULL, NULL, 0};
    for (int64_t it = 0; it < iters; it++)
        mm_ukr_int8(ROWS, 1, X, XS, W, WS, BLOCKS, Y, 32, ROWS, 0xffff, 0xffff, 1, &none);
    return Y[0];
}

int main(void) {
    if (!__builtin_cpu_supports("avx512vnni")) { fprintf(stderr, "int8_ceiling: needs AVX512-VNNI\n"); return 1; }
    // Data the compiler cannot see through (all-zero static arrays would let it drop the dots).
    for (size_t i = 0; i < sizeof X / 4; i++) X[i] = 0x01ff02feu * (uint32_t)(i + 1);
    for (size_t i = 0; i < sizeof W / 4; i++) W[i] = 0x0f0a0503u ^ (uint32_t)i;
    for (size_t i = 0; i < sizeof XS / 4; i++) XS[i] = 1e-3f * (float)(i % 7);
    for (size_t i = 0; i < sizeof WS / 4; i++) WS[i] = 1e-3f * (float)(i % 5);
    const int64_t per_pass = (int64_t)BLOCKS * 8 * ROWS * 2, passes = 140000;   // vpdpbusd per pass over K
    const int64_t n = per_pass * passes;                                           // per loop
    for (int round = 0; round < 3; round++) {
        const double peak = prge_bench_int8_peak_gops(1);
        double t0 = now();
        volatile int64_t r = dot_only(passes);
        const double dot = n * 128.0 / (now() - t0) * 1e-9;
        t0 = now();
        volatile float f = kernel(passes);
        const double scaled = n * 128.0 / (now() - t0) * 1e-9;
        (void)r, (void)f;
        printf("round %d: peak %.0f GOP/s; dot only %.0f (%.2f of peak); mm_ukr_int8 %.0f (%.2f)\n", round,
               peak, dot, dot / peak, scaled, scaled / peak);
    }
    return 0;
}
