// kernels_internal.h: what the kernel files share (path choice, target attributes, scratch).
// Private to Sources/PRGEKernels: Swift sees only include/prge_kernels.h.
#pragma once
#include <stddef.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PRGE_X86 1
// Zen 4 / Sapphire Rapids class: AVX-512F/BW/VL/DQ + BF16.
#define PRGE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c")))
#endif
#define PRGE_INLINE static inline __attribute__((always_inline))

// 1 when this CPU runs the AVX-512 paths, 0 for the portable C ones (env PRGE_MM_PATH=generic
// forces 0). Computed once.
int prge_cpu_avx512(void);

// Per-thread scratch of at least `bytes` (64-byte aligned), grown on demand and kept for the
// thread's life. Slot 0: buffers of a kernel's caller, outside its tasks. Slots 1, 2: per-task.
void *prge_scratch(int slot, size_t bytes);
