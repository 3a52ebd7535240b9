// Opens a region compiled for AVX-512VL's 32 vector registers (256-bit vectors only), for the
// "wide" builds of the AVX2 kernel sources; kernels/cpu/wide_end.h closes it. Include every
// library header before this one, so that none of their inline functions is compiled for
// AVX-512 (the linker could pick that copy for a plain-AVX2 caller). No include guard: each
// wide translation unit opens the region once.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl")
#endif
