// q4/q8 weights x int8 activations with 256-bit vpdpbusd (AVX512-VNNI + VL; no 512-bit ops, so
// no frequency penalty). Same kernel source as qgemm_avx2.cpp, compiled for the wider ISA; only
// called when cpu_has_vnni(). Library headers come before the target pragma so that none of
// their inline functions is compiled for AVX-512.
#include <cstddef>
#include <cstdint>
#include <string>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "quant/formats.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))), \
                             apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
#endif

#define R1_VNNI 1
#include "kernels/cpu/qtile_avx2.h"

namespace r1::avx2 {

void qmatmul_vnni(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0,
                  int64_t r1) {
  if (W.fmt == Format::Q4)
    qmatmul_impl<true>(W, act, n, Y, ldy, r0, r1);
  else
    qmatmul_impl<false>(W, act, n, Y, ldy, r0, r1);
}

}  // namespace r1::avx2

#if defined(__clang__)
#pragma clang attribute pop
#endif
