// The same attention with AVX-512VL's 32 vector registers (still 256-bit vectors), for the CPUs
// of the VNNI kernel set (cpu_has_vnni implies AVX-512 F/VL/BW). Library headers come before the
// target pragma so that none of their inline functions is compiled for AVX-512.
#include <cmath>
#include <cstdint>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl")
#endif

#define R1_WIDE 1
#include "kernels/cpu/attn_kernel_avx2.h"

namespace r1::avx2 {

void attn_partial_wide(const float* q, const void* k, const void* v, bool kv_f16, int g_heads, int hd, int64_t p0,
                       int64_t p1, float scale, float* scores, float* out, float* m, float* l) {
  partial_any(q, k, v, kv_f16, g_heads, hd, p0, p1, scale, scores, out, m, l);
}

}  // namespace r1::avx2

#if defined(__clang__)
#pragma clang attribute pop
#endif
