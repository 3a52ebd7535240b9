// The float matmul with AVX-512VL's 32 vector registers (still 256-bit vectors), for the CPUs of
// the VNNI kernel set (cpu_has_vnni implies AVX-512 F/VL/BW).
#include <cmath>
#include <cstdint>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/vmath_avx2.h"
#include "quant/half.h"

#include "kernels/cpu/wide_begin.h"

#define R1_WIDE 1
#define R1_FMATMUL_ENTRY fmatmul_wide
#include "kernels/cpu/float_kernel_avx2.h"

#include "kernels/cpu/wide_end.h"
