// Float-format matmul (f32 / f16 / bf16 weights, f32 activations) and the elementwise ops, AVX2.
// Weights are converted to f32 8 at a time inside the dot; an R x T register tile reuses each
// converted weight vector for T tokens and each activation load for R rows.
#include <cmath>
#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/vmath_avx2.h"
#include "quant/half.h"

namespace r1::avx2 {
namespace {

template <Format F>
inline __m256 load8(const uint8_t* base, int64_t i) {
  if constexpr (F == Format::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(base) + i);
  } else if constexpr (F == Format::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(base) + i)));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(base) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <Format F>
inline float load1(const uint8_t* base, int64_t i) {
  if constexpr (F == Format::F32) return reinterpret_cast<const float*>(base)[i];
  else if constexpr (F == Format::F16) return f16_to_f32(reinterpret_cast<const uint16_t*>(base)[i]);
  else return bf16_to_f32(reinterpret_cast<const uint16_t*>(base)[i]);
}

constexpr int64_t esize(Format F) { return F == Format::F32 ? 4 : 2; }
constexpr int64_t kPfTiles = 2;  // measured best of 0/1/2/4/8 (bf16, 30 MB, one thread)

template <Format F, int R, int T>
void ftile(const WeightView& W, int64_t r, const float* X, float* Y, int64_t ldy) {
  const int64_t n = W.cols, n8 = n / 8 * 8;
  const uint8_t* w[R];
  for (int i = 0; i < R; i++) w[i] = W.codes + (r + i) * n * esize(F);
  __m256 acc[R][T];
  for (int i = 0; i < R; i++)
    for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
  // R interleaved row streams defeat the hardware prefetcher: fetch each 64-byte line the same
  // spot kPfTiles tiles ahead (DRAM latency needs several KB in flight per core).
  constexpr int64_t per_line = 64 / (8 * esize(F));  // 8-wide steps per line
  const int64_t pf = kPfTiles * R * n * esize(F);
  for (int64_t c = 0; c < n8; c += 8) {
    const bool line = (c / 8) % per_line == 0;
    for (int i = 0; i < R; i++) {
      if (line) _mm_prefetch(reinterpret_cast<const char*>(w[i] + pf + c * esize(F)), _MM_HINT_T0);
      const __m256 wv = load8<F>(w[i], c);
      for (int t = 0; t < T; t++) acc[i][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(X + t * n + c), acc[i][t]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int t = 0; t < T; t++) {
      float s = hsum8(acc[i][t]);
      for (int64_t c = n8; c < n; c++) s += load1<F>(w[i], c) * X[t * n + c];
      Y[t * ldy + r + i] = s;
    }
}

template <Format F, int T>
void frows(const WeightView& W, const float* X, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) ftile<F, 4, T>(W, r, X, Y, ldy);
  for (; r < r1; r++) ftile<F, 1, T>(W, r, X, Y, ldy);
}

template <Format F>
void fmatmul_f(const WeightView& W, const float* X, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  const int64_t rblock = n == 1 ? r1 - r0 : 16;
  for (int64_t rb = r0; rb < r1; rb += rblock) {
    const int64_t re = rb + rblock < r1 ? rb + rblock : r1;
    int64_t t = 0;
    for (; t + 3 <= n; t += 3) frows<F, 3>(W, X + t * W.cols, Y + t * ldy, ldy, rb, re);
    if (n - t == 2) frows<F, 2>(W, X + t * W.cols, Y + t * ldy, ldy, rb, re);
    if (n - t == 1) frows<F, 1>(W, X + t * W.cols, Y + t * ldy, ldy, rb, re);
  }
}

}  // namespace

void fmatmul(const WeightView& W, const float* X, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  switch (W.fmt) {
    case Format::F32: fmatmul_f<Format::F32>(W, X, n, Y, ldy, r0, r1); break;
    case Format::F16: fmatmul_f<Format::F16>(W, X, n, Y, ldy, r0, r1); break;
    case Format::BF16: fmatmul_f<Format::BF16>(W, X, n, Y, ldy, r0, r1); break;
    default: break;
  }
}

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

}  // namespace r1::avx2
