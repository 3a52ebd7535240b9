// Decode/prefill attention over the KV cache, AVX2 (16 vector registers): kernels/cpu/attn_kernel_avx2.h.
#define R1_WIDE 0
#define R1_ATTN_ENTRY attn_partial
#include "kernels/cpu/attn_kernel_avx2.h"
