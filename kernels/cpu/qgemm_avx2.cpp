// q4/q5/q8 weights x int8 activations, AVX2 (vpmaddubsw + sign trick), plus the activation
// quantizer shared with the VNNI build. Layouts: kernels/cpu/avx2.h.
#define R1_VNNI 0
#include "kernels/cpu/qtile_avx2.h"

namespace r1::avx2 {

int64_t dot_peak_loop(int64_t iters) {
  const __m256i w = _mm256_set1_epi8(char(iters | 1)), x = _mm256_set1_epi8(char(iters >> 3)), one = _mm256_set1_epi16(1);
  __m256i acc[12];
  for (auto& a : acc) a = _mm256_setzero_si256();
  for (int64_t i = 0; i < iters; i++)
    for (auto& a : acc) a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), one));
  int64_t s = 0;
  for (auto& a : acc) s += _mm256_extract_epi32(a, 0);
  return s;
}

size_t qact_stride(int64_t cols) { return size_t(2 * a64(cols) + 2 * a64(cols / kGroup * 4)); }

// One token: per group of 32, d = amax / 127, q = round-to-even(x * (127 / amax)) — exactly
// the scalar ops of ref::quantize_act_q8 (cvtps rounds to nearest even like nearbyint).
void quantize_act(const float* x, int64_t cols, uint8_t* out) {
  const int64_t G = cols / kGroup, G8 = G / 8;
  const Act a = act_at(out, cols);
  auto* q = const_cast<int8_t*>(a.q);
  auto* u = const_cast<uint8_t*>(a.u);
  auto* dp = const_cast<float*>(a.dp);
  auto* s = const_cast<int32_t*>(a.s);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i c80 = _mm256_set1_epi8(char(0x80));
  for (int64_t g = 0; g < G; g++) {
    const float* xg = x + g * kGroup;
    __m256 v0 = _mm256_loadu_ps(xg), v1 = _mm256_loadu_ps(xg + 8), v2 = _mm256_loadu_ps(xg + 16),
           v3 = _mm256_loadu_ps(xg + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
    __m256i b = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3)), perm);
    __m256i bu = _mm256_xor_si256(b, c80);
    __m256i sad = _mm256_sad_epu8(bu, _mm256_setzero_si256());
    __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
    const int sum = int(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128;
    // where this group's bytes, scale and sum go
    int64_t lo, hi, si;
    if (g < G8 * 8) {
      const int64_t c = g / 8, j = g % 8;
      lo = c * 256 + (j / 2) * 64 + (j % 2) * 16;
      hi = lo + 32;
      si = c * 8 + (j % 2 ? 4 + j / 2 : j / 2);
    } else {
      lo = g * 32;
      hi = lo + 16;
      si = g;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + lo), _mm256_castsi256_si128(b));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + hi), _mm256_extracti128_si256(b, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(u + lo), _mm256_castsi256_si128(bu));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(u + hi), _mm256_extracti128_si256(bu, 1));
    dp[si] = d;
    s[si] = 128 * sum;
  }
}

void qmatmul(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  switch (W.fmt) {
    case Format::Q4: qmatmul_impl<Format::Q4>(W, act, n, Y, ldy, r0, r1); break;
    case Format::Q5: qmatmul_impl<Format::Q5>(W, act, n, Y, ldy, r0, r1); break;
    default: qmatmul_impl<Format::Q8>(W, act, n, Y, ldy, r0, r1); break;
  }
}

}  // namespace r1::avx2
