// Float-format matmul with 16 registers (the tile code is kernels/cpu/float_kernel_avx2.h),
// dequant_row and the elementwise ops, AVX2.
#include <cmath>
#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/vmath_avx2.h"
#include "core/sample_math.h"
#include "quant/half.h"

#define R1_WIDE 0
#define R1_FMATMUL_ENTRY fmatmul
#include "kernels/cpu/float_kernel_avx2.h"

namespace r1::avx2 {

void dequant_row(const WeightView& W, int64_t r, float* out) {
  const int64_t n = W.cols;
  switch (W.fmt) {
    case Format::F16: case Format::BF16: {
      const uint8_t* w = W.codes + r * n * 2;
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, W.fmt == Format::F16 ? load8<Format::F16>(w, i) : load8<Format::BF16>(w, i));
      for (; i < n; i++) out[i] = W.fmt == Format::F16 ? load1<Format::F16>(w, i) : load1<Format::BF16>(w, i);
      break;
    }
    case Format::Q4: {
      const int64_t G = n / kGroup;
      const uint8_t* nib = W.codes + r * n / 2;
      alignas(32) int8_t t[32];
      for (int i = 0; i < 32; i++) t[i] = kQ4Levels[i & 15];
      const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(t)), m4 = _mm256_set1_epi8(0x0f);
      for (int64_t g = 0; g < G; g++) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(nib + g * 16));
        __m256i c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m4);
        __m256i l = _mm256_shuffle_epi8(lut, c);
        const __m256 s = _mm256_set1_ps(_cvtsh_ss(W.scales[r * G + g]));
        for (int j = 0; j < 4; j++) {
          __m128i b = j < 2 ? _mm256_castsi256_si128(l) : _mm256_extracti128_si256(l, 1);
          if (j & 1) b = _mm_srli_si128(b, 8);
          _mm256_storeu_ps(out + g * 32 + j * 8, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))));
        }
      }
      break;
    }
    case Format::Q8: {
      const int64_t G = n / kGroup;
      const int8_t* q = reinterpret_cast<const int8_t*>(W.codes) + r * n;
      for (int64_t g = 0; g < G; g++) {
        const __m256 s = _mm256_set1_ps(_cvtsh_ss(W.scales[r * G + g]));
        for (int j = 0; j < 4; j++) {
          __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + g * 32 + j * 8));
          _mm256_storeu_ps(out + g * 32 + j * 8, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))));
        }
      }
      break;
    }
    case Format::Q5: ref::dequant_row(W, r, out); break;  // only ever a lookup row (an embedding)
    case Format::F32: {
      const float* w = reinterpret_cast<const float*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) out[i] = w[i];
    }
  }
}

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
  __m256 ss = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    ss = _mm256_fmadd_ps(v, v, ss);
  }
  float s = hsum8(ss);
  for (; i < n; i++) s += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(s / float(n) + eps);
  const __m256 vi = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vi), _mm256_loadu_ps(w + i)));
  for (; i < n; i++) out[i] = x[i] * inv * w[i];
}

void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; h++) {
    float* p = v + h * head_dim;
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
      __m256 a = _mm256_loadu_ps(p + i), b = _mm256_loadu_ps(p + i + half);
      __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
      _mm256_storeu_ps(p + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
      _mm256_storeu_ps(p + i + half, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
    }
    for (; i < half; i++) {
      float a = p[i], b = p[i + half];
      p[i] = a * cos[i] - b * sin[i];
      p[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 g = _mm256_loadu_ps(gate + i);
    __m256 e = exp256(_mm256_xor_ps(g, neg));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; i++) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// sample_exp (core/sample_math.h) eight lanes at a time, the same operations in the same order.
void sample_exp_row(const float* x, int64_t n, float mx, float t, float* out) {
  const __m256 vmx = _mm256_set1_ps(mx), vt = _mm256_set1_ps(t), lo = _mm256_set1_ps(-86.0f),
               zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx), vt);
    const __m256 ok = _mm256_cmp_ps(v, lo, _CMP_GE_OQ);  // false below -86 and for NaN
    v = _mm256_min_ps(v, zero);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(k, _mm256_set1_ps(-0.693145751953125f), v);
    r = _mm256_fmadd_ps(k, _mm256_set1_ps(-1.428606765330187e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    // k >= -124 wherever ok holds; elsewhere the result is masked to 0
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(_mm256_max_ps(k, _mm256_set1_ps(-126.0f))), _mm256_set1_epi32(127)), 23);
    _mm256_storeu_ps(out + i, _mm256_and_ps(ok, _mm256_mul_ps(p, _mm256_castsi256_ps(e))));
  }
  for (; i < n; i++) out[i] = sample_exp((x[i] - mx) / t);
}

}  // namespace r1::avx2
