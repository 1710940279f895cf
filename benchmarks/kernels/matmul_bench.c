// matmul_bench.c: GFLOP/s of prge_matmul per shape and mode vs the measured peaks of this CPU,
// plus a quick self-check (fast path vs portable path), the int8 kernel against bf16 on the
// training step's shapes, and each mode's error against float64. See README.md for how to build.
#include "prge_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)(rs >> 16); }
static float frnd(void) { return (float)(rnd() % 20001) / 10000.0f - 1.0f; }

static int64_t row_bytes(uint32_t t, int64_t K) {
    switch (t) {
    case PRGE_T_F32: return 4 * K;
    case PRGE_T_F16: case PRGE_T_BF16: return 2 * K;
    case PRGE_T_Q4_0: return K / 32 * 18;
    case PRGE_T_Q4_1: return K / 32 * 20;
    case PRGE_T_Q8_0: return K / 32 * 34;
    default: return 0;
    }
}
static void *rand_w(uint32_t t, int64_t N, int64_t K) {
    int64_t rb = row_bytes(t, K);
    uint8_t *w = malloc((size_t)(rb * N));
    for (int64_t i = 0; i < rb * N; i++) w[i] = (uint8_t)rnd();
    for (int64_t n = 0; n < N; n++) {
        uint8_t *r = w + n * rb;
        if (t == PRGE_T_F32) for (int64_t k = 0; k < K; k++) ((float *)r)[k] = frnd();
        if (t == PRGE_T_F16) for (int64_t k = 0; k < K; k++) { uint16_t h = prge_f32_to_f16(frnd()); memcpy(r + 2 * k, &h, 2); }
        if (t == PRGE_T_BF16) for (int64_t k = 0; k < K; k++) { uint16_t h = prge_f32_to_bf16(frnd()); memcpy(r + 2 * k, &h, 2); }
        int bs = t == PRGE_T_Q4_0 ? 18 : t == PRGE_T_Q4_1 ? 20 : t == PRGE_T_Q8_0 ? 34 : 0;
        for (int64_t b = 0; bs && b < K / 32; b++) {
            uint16_t d = prge_f32_to_f16(0.01f * frnd()), m = prge_f32_to_f16(0.05f * frnd());
            memcpy(r + b * bs, &d, 2);
            if (t == PRGE_T_Q4_1) memcpy(r + b * bs + 2, &m, 2);
        }
    }
    return w;
}

// Standard normal (Box-Muller).
static double grnd(void) {
    const double u = ((double)rnd() + 1.0) / 65537.0 / 65536.0, v = (double)(rnd() % 65536) / 65536.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

// N rows of K Gaussian weights quantized to Q4_1 as ggml does it (d = (max − min)/15, m = min):
// a model-like W, m ≈ −8d.
static void *q4_1_w(int64_t N, int64_t K) {
    uint8_t *w = malloc((size_t)(N * K / 32 * 20));
    for (int64_t b = 0; b < N * K / 32; b++) {
        float x[32], mn = 1e30f, mx = -1e30f;
        for (int j = 0; j < 32; j++) { x[j] = 0.02f * (float)grnd(); mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
        const float d = (mx - mn) / 15, id = d > 0 ? 1 / d : 0;
        uint8_t *o = w + b * 20;
        uint16_t hd = prge_f32_to_f16(d), hm = prge_f32_to_f16(mn);
        memcpy(o, &hd, 2); memcpy(o + 2, &hm, 2);
        for (int j = 0; j < 16; j++) {
            int lo = (int)((x[j] - mn) * id + 0.5f), hi = (int)((x[j + 16] - mn) * id + 0.5f);
            o[4 + j] = (uint8_t)((lo > 15 ? 15 : lo) | (hi > 15 ? 15 : hi) << 4);
        }
    }
    return w;
}

// M×K activations: 0 uniform [-1, 1]; 1 Gaussian; 2 Gaussian with 1 channel in 64 ×20 (the
// outlier channels of a normed residual stream); 3 heavy-tailed g·|g|·|g| (like SwiGLU's output).
static float *acts(int kind, int64_t M, int64_t K) {
    float *x = malloc((size_t)(M * K) * 4);
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            const double g = grnd();
            x[m * K + k] = kind == 0 ? frnd() : kind == 1 ? (float)g : kind == 2 ? (float)(k % 64 == 7 ? 20 * g : g)
                                                                            : (float)(g * fabs(g) * fabs(g));
        }
    return x;
}
static const char *aname[] = {"uniform", "gaussian", "outliers", "heavy"};

// ‖Y − X·Wᵀ‖ / ‖X·Wᵀ‖, the reference in float64 on W dequantized by prge_dequantize_row.
static double rel_err(const float *X, const void *W, uint32_t t, const float *Y, int64_t M, int64_t N, int64_t K) {
    float *wf = malloc((size_t)K * 4);
    double e2 = 0, r2 = 0;
    for (int64_t n = 0; n < N; n++) {
        prge_dequantize_row(t, (const uint8_t *)W + n * row_bytes(t, K), wf, K);
        for (int64_t m = 0; m < M; m++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)X[m * K + k] * wf[k];
            e2 += (Y[m * N + n] - s) * (Y[m * N + n] - s);
            r2 += s * s;
        }
    }
    free(wf);
    return sqrt(e2 / r2);
}

// Best-of time of one prge_matmul (after a warm-up call).
static double time_mm(prge_pool *pool, int mode, const float *X, const void *W, uint32_t t, float *Y, int64_t M,
                      int64_t N, int64_t K) {
    double t0 = now();
    prge_matmul(pool, mode, X, K, W, t, row_bytes(t, K), Y, N, M, N, K, 0);
    return now() - t0;
}

// The training step's products (M = 2q·b sequences × ~30 tokens) on Q4_1: fp32, bf16 and int8
// timed alternately in one run (the box is shared), best of each; then each mode's error.
static void int8_section(int threads, double reps_scale) {
    const int64_t Ms[] = {512, 1920}, NK[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};
    printf("\nint8 (vpdpbusd) vs bf16 and fp32 on Q4_1 (int8 kernel on this CPU: %s)\n", prge_matmul_int8() ? "yes" : "no");
    printf("%-3s %-6s %6s %6s %10s %10s %10s %10s %10s\n", "thr", "M", "N", "K", "fp32 GF/s", "bf16 GF/s", "int8 GF/s",
           "int8/bf16", "int8/fp32");
    for (int th = 1; th <= threads; th++) {
        prge_pool *pool = prge_pool_create(th);
        for (int mi = 0; mi < 2; mi++)
            for (int s = 0; s < 4; s++) {
                const int64_t M = Ms[mi], N = NK[s][0], K = NK[s][1];
                void *W = q4_1_w(N, K);
                float *X = acts(1, M, K), *Y = malloc((size_t)(M * N) * 4);
                const double flops = 2.0 * M * N * K;
                int reps = (int)(reps_scale * 4e9 / flops) + 5;
                double best[3] = {1e30, 1e30, 1e30};   // indexed by mode
                for (int m = 0; m < 3; m++) time_mm(pool, m, X, W, PRGE_T_Q4_1, Y, M, N, K);
                for (int r = 0; r < reps; r++)
                    for (int m = 0; m < 3; m++) best[m] = fmin(best[m], time_mm(pool, m, X, W, PRGE_T_Q4_1, Y, M, N, K));
                printf("%-3d %-6lld %6lld %6lld %10.1f %10.1f %10.1f %10.3f %10.3f\n", th, (long long)M, (long long)N,
                       (long long)K, flops / best[0] * 1e-9, flops / best[1] * 1e-9, flops / best[2] * 1e-9,
                       best[2] / best[1], best[2] / best[0]);
                free(W); free(X); free(Y);
            }
        prge_pool_free(pool);
    }
    printf("\nrelative error ||y - y_ref|| / ||y_ref|| vs float64 (Q4_1 W quantized from Gaussians, M 256)\n");
    printf("%-9s %6s %6s %10s %10s %10s\n", "X", "N", "K", "fp32", "bf16", "int8");
    prge_pool *pool = prge_pool_create(threads);
    for (int kind = 0; kind < 4; kind++)
        for (int s = 0; s < 4; s += 3) {
            const int64_t M = 256, N = NK[s][0], K = NK[s][1];
            void *W = q4_1_w(N, K);
            float *X = acts(kind, M, K), *Y = malloc((size_t)(M * N) * 4);
            double e[3];
            for (int mode = 0; mode < 3; mode++) {
                prge_matmul(pool, mode, X, K, W, PRGE_T_Q4_1, row_bytes(PRGE_T_Q4_1, K), Y, N, M, N, K, 0);
                e[mode] = rel_err(X, W, PRGE_T_Q4_1, Y, M, N, K);
            }
            printf("%-9s %6lld %6lld %10.2e %10.2e %10.2e\n", aname[kind], (long long)N, (long long)K, e[0], e[1], e[2]);
            free(W); free(X); free(Y);
        }
    prge_pool_free(pool);
}

static const char *tname(uint32_t t) {
    return t == 0 ? "F32" : t == 1 ? "F16" : t == 2 ? "Q4_0" : t == 3 ? "Q4_1" : t == 8 ? "Q8_0" : t == 30 ? "BF16" : "?";
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    double reps_scale = argc > 2 ? atof(argv[2]) : 1.0;
    printf("path: %s, threads: %d\n", prge_matmul_path(), threads);
    if (argc > 3 && strcmp(argv[3], "int8") == 0) {   // just the int8 section
        int8_section(threads, reps_scale);
        return 0;
    }
    double pf1 = prge_bench_fma_peak_gflops(1), pb1 = prge_bench_bf16_peak_gflops(1);
    double pf = prge_bench_fma_peak_gflops(threads), pb = prge_bench_bf16_peak_gflops(threads);
    printf("peak fp32 FMA: %.1f GFLOP/s (1 thread %.1f); peak bf16 dot: %.1f GFLOP/s (1 thread %.1f)\n", pf, pf1, pb, pb1);
    prge_pool *pool = prge_pool_create(threads);

    // Self-check: fast vs portable path, a few odd shapes.
    {
        int64_t shapes[][3] = {{1, 7, 64}, {5, 33, 96}, {9, 65, 128}, {37, 100, 576}, {200, 70, 33}};
        uint32_t types[] = {PRGE_T_F32, PRGE_T_F16, PRGE_T_BF16, PRGE_T_Q4_0, PRGE_T_Q4_1, PRGE_T_Q8_0};
        double worst = 0;
        for (int s = 0; s < 5; s++) for (int ti = 0; ti < 6; ti++) for (int mode = 0; mode < 3; mode++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            if (types[ti] >= 2 && types[ti] != 30 && K % 32) continue;
            void *W = rand_w(types[ti], N, K);
            float *X = malloc(M * K * 4), *Y0 = malloc(M * N * 4), *Y1 = malloc(M * N * 4);
            for (int64_t i = 0; i < M * K; i++) X[i] = frnd();
            prge_matmul(pool, mode, X, K, W, types[ti], row_bytes(types[ti], K), Y0, N, M, N, K, 0);
            prge_matmul(pool, mode | PRGE_MM_GENERIC, X, K, W, types[ti], row_bytes(types[ti], K), Y1, N, M, N, K, 0);
            double e = 0, mx = 0;
            for (int64_t i = 0; i < M * N; i++) { e = fmax(e, fabs(Y0[i] - Y1[i])); mx = fmax(mx, fabs(Y1[i])); }
            double rel = e / (mx + 1e-30);
            if (rel > worst) worst = rel;
            if (rel > (mode == 2 ? 5e-2 : mode ? 1e-2 : 1e-5)) printf("  MISMATCH %s mode %d M%lld N%lld K%lld: rel %.3g\n", tname(types[ti]), mode, (long long)M, (long long)N, (long long)K, rel);
            free(W); free(X); free(Y0); free(Y1);
        }
        printf("self-check vs portable path: worst rel diff %.3g\n", worst);
    }

    struct { int64_t M, N, K; uint32_t t; } sh[] = {
        {1024, 576, 576, PRGE_T_Q4_1}, {1024, 192, 576, PRGE_T_Q4_1}, {1024, 1536, 576, PRGE_T_Q4_1},
        {1024, 576, 1536, PRGE_T_Q4_1}, {512, 576, 576, PRGE_T_Q4_1}, {64, 49152, 576, PRGE_T_Q8_0},
        {16, 49152, 576, PRGE_T_Q8_0}, {4, 49152, 576, PRGE_T_Q8_0}, {1, 49152, 576, PRGE_T_Q8_0},
        {1, 1536, 576, PRGE_T_Q4_1}, {1, 576, 1536, PRGE_T_Q4_1}, {8, 1536, 576, PRGE_T_Q4_1},
        {32, 1536, 576, PRGE_T_Q4_1}, {1024, 576, 576, PRGE_T_F32},
        // the standard step's stacked LoRA A's (r = 16, 872 rows): o and down; gate + up; q + k + v
        {872, 16, 576, PRGE_T_F32}, {872, 16, 1536, PRGE_T_F32}, {872, 32, 576, PRGE_T_F32}, {872, 48, 576, PRGE_T_F32},
    };
    printf("%-6s %6s %6s %6s %-5s %12s %8s %12s %8s\n", "M", "N", "K", "type", "", "fp32 GF/s", "%peak", "bf16 GF/s", "%peak");
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        int64_t M = sh[s].M, N = sh[s].N, K = sh[s].K;
        void *W = rand_w(sh[s].t, N, K);
        float *X = malloc(M * K * 4), *Y = malloc(M * N * 4);
        for (int64_t i = 0; i < M * K; i++) X[i] = frnd();
        double flops = 2.0 * M * N * K, g[2];
        for (int mode = 0; mode < 2; mode++) {
            prge_matmul(pool, mode, X, K, W, sh[s].t, row_bytes(sh[s].t, K), Y, N, M, N, K, 0);
            int reps = (int)(reps_scale * 2e9 / flops) + 3;
            if (reps > 2000) reps = 2000;
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                prge_matmul(pool, mode, X, K, W, sh[s].t, row_bytes(sh[s].t, K), Y, N, M, N, K, 0);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            g[mode] = flops / best * 1e-9;
        }
        printf("%-6lld %6lld %6lld %6s %-5s %12.1f %7.0f%% %12.1f %7.0f%%\n", (long long)M, (long long)N, (long long)K,
               tname(sh[s].t), "", g[0], 100 * g[0] / pf, g[1], 100 * g[1] / (pb > 0 ? pb : pf));
        free(W); free(X); free(Y);
    }
    prge_pool_free(pool);
    int8_section(threads, reps_scale);
    return 0;
}
