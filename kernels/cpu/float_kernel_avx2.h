// Float-format matmul (f32 / f16 / bf16 weights, f32 activations), AVX2. Weights are converted
// to f32 8 at a time inside the dot; an R x T register tile reuses each converted weight vector
// for T tokens and each activation load for R rows.
//
// Included by float_avx2.cpp (R1_WIDE 0: 16 vector registers) and float_r32_avx2.cpp (R1_WIDE
// 1: AVX-512VL's 32). Within a build every tile shape sums a (row, token) dot in the same order,
// so a matvec and a batched matmul give the same bits (tested); the two builds differ in how
// many FMA chains that order has (below), so their results differ in the last bits.
#pragma once
#include <cmath>
#include <immintrin.h>

#include "kernels/cpu/avx2.h"
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
constexpr int64_t kPfTiles = 2;     // GEMM: measured best of 0/1/2/4/8 (bf16, 30 MB, one thread)

// FMA chains per (row, token) dot: with 32 registers two (even and odd 8-column steps), so a
// decode row stream is not bound by the FMA latency (one chain caps it at ~4 bytes per cycle,
// 15 GB/s per thread here; two reach 23-24) while the GEMM keeps 4-row tiles (4 x 3 x 2
// accumulators). With 16 registers one: two chains would force 2-row GEMM tiles, measured
// 20-25% slower on bf16 prefill, and a desktop's many threads do not need more than 15 GB/s each.
constexpr int kChains = R1_WIDE ? 2 : 1;

template <Format F, int R, int T>
void ftile(const WeightView& W, int64_t r, const float* X, float* Y, int64_t ldy) {
  const int64_t n = W.cols, n8 = n / 8 * 8;
  const uint8_t* w[R];
  for (int i = 0; i < R; i++) w[i] = W.codes + (r + i) * n * esize(F);
  __m256 acc[kChains][R][T];
  for (int h = 0; h < kChains; h++)
    for (int i = 0; i < R; i++)
      for (int t = 0; t < T; t++) acc[h][i][t] = _mm256_setzero_ps();
  // Prefetch each 64-byte line ahead. A single row is one sequential stream, fetched kPfBytes
  // ahead; R > 1 interleaves R streams, so it fetches the same spot kPfTiles tiles ahead.
  constexpr int64_t per_line = 64 / (8 * esize(F));  // 8-wide steps per line
  const int64_t pf = R == 1 ? kPfBytes : kPfTiles * R * n * esize(F);
  auto step = [&](int64_t c, __m256(&a)[R][T]) __attribute__((always_inline)) {
    for (int i = 0; i < R; i++) {
      if ((c / 8) % per_line == 0) _mm_prefetch(reinterpret_cast<const char*>(w[i] + pf + c * esize(F)), _MM_HINT_T0);
      const __m256 wv = load8<F>(w[i], c);
      for (int t = 0; t < T; t++) a[i][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(X + t * n + c), a[i][t]);
    }
  };
  int64_t c = 0;
  if constexpr (kChains == 2)
    for (; c + 16 <= n8; c += 16) {
      step(c, acc[0]);
      step(c + 8, acc[1]);
    }
  for (; c < n8; c += 8) step(c, acc[0]);
  for (int i = 0; i < R; i++)
    for (int t = 0; t < T; t++) {
      __m256 v = acc[0][i][t];
      if constexpr (kChains == 2) v = _mm256_add_ps(v, acc[1][i][t]);
      float s = hsum8(v);
      for (int64_t j = n8; j < n; j++) s = std::fma(load1<F>(w[i], j), X[t * n + j], s);  // not left to contraction
      Y[t * ldy + r + i] = s;
    }
}

// Decode reads a row at a time where the activations fit L1 with room to spare: one stream per
// thread, measured 1.3-1.8x the 4-row tile from DRAM (bf16, 1536 columns, 1-2 threads, two
// chains; one chain 1.1x on one thread), as for the quantized GEMV. Longer rows take 4-row
// tiles: a row stream then reloads its activations from L2 at twice the weight bytes (bf16,
// 8960 columns: 4 rows 1.3-1.4x faster than one). The GEMM reuses each converted weight vector
// for T tokens and each activation load for 4 rows.
constexpr int64_t kStreamCols = 4096;

template <Format F, int T>
void frows(const WeightView& W, const float* X, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  int64_t r = r0;
  if (T > 1 || W.cols > kStreamCols)
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

// The entry point of this build: fmatmul or fmatmul_wide (kernels/cpu/avx2.h).
void R1_FMATMUL_ENTRY(const WeightView& W, const float* X, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  switch (W.fmt) {
    case Format::F32: fmatmul_f<Format::F32>(W, X, n, Y, ldy, r0, r1); break;
    case Format::F16: fmatmul_f<Format::F16>(W, X, n, Y, ldy, r0, r1); break;
    case Format::BF16: fmatmul_f<Format::BF16>(W, X, n, Y, ldy, r0, r1); break;
    default: break;
  }
}

}  // namespace r1::avx2
