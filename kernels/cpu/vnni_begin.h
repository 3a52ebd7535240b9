// Opens a region compiled for AVX-512 VNNI on 256-bit vectors (vpdpbusd, 32 registers, byte
// masks, pext), for the q kernels built on the VNNI integer dot; kernels/cpu/vnni_end.h closes
// it. Include every library header before this one (see wide_begin.h). No include guard.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512vl,avx512bw,avx512vnni"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2,avx512f,avx512vl,avx512bw,avx512vnni")
#endif
