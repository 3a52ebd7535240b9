// Decode/prefill attention over the KV cache, AVX2 (16 vector registers): kernels/cpu/attn_kernel_avx2.h.
#define R1_WIDE 0
#include "kernels/cpu/attn_kernel_avx2.h"

namespace r1::avx2 {

void attn_partial(const float* q, const void* k, const void* v, bool kv_f16, int g_heads, int hd, int64_t p0,
                  int64_t p1, float scale, float* scores, float* out, float* m, float* l) {
  partial_any(q, k, v, kv_f16, g_heads, hd, p0, p1, scale, scores, out, m, l);
}

}  // namespace r1::avx2
