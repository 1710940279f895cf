// Causal attention for one head of one sequence. Cost is small next to the linear layers
// for training-length sequences, but it is the only O(n²) loop, so it lives with the kernels.
#include "prge_kernels.h"
#include <math.h>

static float dot(const float *a, const float *b, int64_t n) {
    float s = 0.f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void prge_attention(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv,
                    float *out, int64_t ldo, int64_t n_new, int64_t p0, int64_t head_dim,
                    float scale, float *scratch) {
    for (int64_t t = 0; t < n_new; t++) {
        const float *qt = q + t * ldq;
        const int64_t n_ctx = p0 + t + 1;            // keys 0..p0+t are visible
        float mx = -INFINITY;
        for (int64_t j = 0; j < n_ctx; j++) {
            float s = dot(qt, k + j * ldkv, head_dim) * scale;
            scratch[j] = s;
            if (s > mx) mx = s;
        }
        float sum = 0.f;
        for (int64_t j = 0; j < n_ctx; j++) { scratch[j] = expf(scratch[j] - mx); sum += scratch[j]; }
        const float inv = 1.f / sum;
        float *o = out + t * ldo;
        for (int64_t d = 0; d < head_dim; d++) o[d] = 0.f;
        for (int64_t j = 0; j < n_ctx; j++) {
            const float p = scratch[j] * inv;
            const float *vj = v + j * ldkv;
            for (int64_t d = 0; d < head_dim; d++) o[d] += p * vj[d];
        }
    }
}
