// The same attention with AVX-512VL's 32 vector registers (still 256-bit vectors), for the CPUs
// of the VNNI kernel set (cpu_has_vnni implies AVX-512 F/VL/BW).
#include <cmath>
#include <cstdint>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"

#include "kernels/cpu/wide_begin.h"

#define R1_WIDE 1
#define R1_ATTN_ENTRY attn_partial_wide
#include "kernels/cpu/attn_kernel_avx2.h"

#include "kernels/cpu/wide_end.h"
