// The float matmul with AVX-512VL's 32 vector registers (still 256-bit vectors), for the CPUs of
// the VNNI kernel set (cpu_has_vnni implies AVX-512 F/VL/BW). Library headers come before the
// target pragma so that none of their inline functions is compiled for AVX-512.
#include <cmath>
#include <cstdint>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/vmath_avx2.h"
#include "quant/half.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl")
#endif

#define R1_WIDE 1
#define R1_FMATMUL_ENTRY fmatmul_wide
#include "kernels/cpu/float_kernel_avx2.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
