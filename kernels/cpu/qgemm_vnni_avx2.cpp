// q4/q5/q8 weights x int8 activations with 256-bit vpdpbusd (AVX512-VNNI + VL; no 512-bit ops, so
// no frequency penalty). Same kernel source as qgemm_avx2.cpp, compiled for the wider ISA; only
// called when cpu_has_vnni(). Library headers come before the target pragma so that none of
// their inline functions is compiled for AVX-512.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "quant/formats.h"

#include "kernels/cpu/vnni_begin.h"

#define R1_VNNI 1
#include "kernels/cpu/qtile_avx2.h"

namespace r1::avx2 {
namespace {

// --- Prefill / batched GEMM: weights unpacked once per row block, then a register tile ----------
// Transposed chunk layout ("t-layout"), for weights and activations alike: 8 vectors of 32
// bytes per 8-group chunk; int32 lane L of vector k holds bytes 4k..4k+3 of group P[L], with
// P = 0 2 4 6 1 3 5 7 (the lane order of the GEMV's hadd tree). Then 8 vpdpbusd leave each
// group's full sum in its own lane: no horizontal adds. The float steps per chunk and the tail
// are the GEMV's, in the same order, so every (row, token) result is bitwise the GEMV's.

// The next row block's weight bytes, fetched a few lines per chunk step while this block's
// tiles compute: the unpack then reads them from cache instead of stalling on DRAM (with a
// few tokens the unpack stalled for ~40% of the GEMM's time, the memory bus idle during the
// tiles).
struct PfStream {
  const char* p = nullptr;
  const char* end = nullptr;
  int64_t per_step = 0;  // lines per chunk step
  inline void step() {
    for (int64_t i = 0; i < per_step && p < end; i++, p += 64) _mm_prefetch(p, _MM_HINT_T0);
  }
};

// Row block of weights as u8 (q4 level + 128, q5 code, q8 code + 128) in t-layout, plus each
// chunk's f16 scales as floats in lane order P. wt: [rows][G8][8 vectors], sw: [rows][G8][8].
template <Format F>
void unpack_rows(const K& k, const WeightView& W, int64_t r0, int64_t nr, uint8_t* wt, float* sw) {
  constexpr bool Q8 = F == Format::Q8;
  const int64_t G = W.cols / kGroup, G8 = G / 8, rb = row_bytes<F>(W.cols);
  const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const int64_t sc_ahead = kPfBytes * G / rb;  // the scales as far ahead as the codes (no idiv in the loop)
  for (int64_t i = 0; i < nr; i++) {
    const uint8_t* wc = W.codes + (r0 + i) * rb;
    const uint8_t* hb = hbits_of<F>(wc, W.cols);
    for (int64_t c = 0; c < G8; c++) {
      // the weights stream from DRAM: fetch kPfBytes ahead, every line (as the GEMV does)
      for (int l = 0; l < (Q8 ? 4 : 2); l++)
        _mm_prefetch(reinterpret_cast<const char*>(wc + kPfBytes + c * (Q8 ? 256 : 128) + 64 * l), _MM_HINT_T0);
      if constexpr (F == Format::Q5)
        if (c % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(hb + kPfBytes + c * 32), _MM_HINT_T0);
      if (c % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(W.scales + (r0 + i) * G + sc_ahead + c * 8), _MM_HINT_T0);
      __m256i v[8];
      if constexpr (F == Format::Q4) {
        // A group's 16 code bytes are 4 words; word j holds quad j (low nibbles) and quad j + 4
        // (high nibbles). With groups (0,1) (2,3) (4,5) (6,7) in the 128-bit halves of 4 loads,
        // an in-lane 4x4 word transpose gives u[j] = word j of groups 0 2 4 6 | 1 3 5 7, which is
        // lane order P: t-layout vectors j and j + 4 are then its two nibbles.
        const __m256i* src = reinterpret_cast<const __m256i*>(wc + c * 128);
        const __m256i a0 = _mm256_loadu_si256(src), a1 = _mm256_loadu_si256(src + 1),
                      a2 = _mm256_loadu_si256(src + 2), a3 = _mm256_loadu_si256(src + 3);
        const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1),
                      t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
        const __m256i u[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                              _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
        for (int j = 0; j < 4; j++) {
          v[j] = _mm256_shuffle_epi8(k.lut, _mm256_and_si256(u[j], k.m4));
          v[j + 4] = _mm256_shuffle_epi8(k.lut, _mm256_and_si256(_mm256_srli_epi16(u[j], 4), k.m4));
        }
      } else if constexpr (F == Format::Q5) {
        for (int L = 0; L < 8; L++)  // group P[L] of the chunk, natural element order
          v[L] = group_codes<F>(k, wc, hb, c * 8 + kP[L]);
        transpose8(v);
      } else {
        for (int L = 0; L < 8; L++)
          v[L] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + (c * 8 + kP[L]) * 32)),
                                  k.c80);
        transpose8(v);
      }
      __m256i* o = reinterpret_cast<__m256i*>(wt + ((i * G8 + c) * 8) * 32);
      for (int j = 0; j < 8; j++) _mm256_store_si256(o + j, v[j]);
      _mm256_store_ps(sw + (i * G8 + c) * 8, _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128(
          reinterpret_cast<const __m128i*>(W.scales + (r0 + i) * G + c * 8))), perm));
    }
  }
}

// Y[t, r] for R unpacked rows x T tokens (t-layout activations at at[t]), full chunks + tail.
// For q8 the unsigned operand is the weight (code + 128), so the correction is the same
// 128 * sum(x) as for q4; q5's bare code takes 16 * sum(x) (corr_of).
template <Format F, int R, int T>
void tile_t(const K& k, const WeightView& W, int64_t r, const uint8_t* wt, const float* sw, const Act* A,
            const int8_t* const* at, float* Y, int64_t ldy, PfStream& pf) {
  const int64_t G = W.cols / kGroup, G8 = G / 8;
  __m256 acc[R][T];
  for (int i = 0; i < R; i++)
    for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
  for (int64_t c = 0; c < G8; c++) {
    pf.step();
    __m256i s[R][T];
    for (int i = 0; i < R; i++)
      for (int t = 0; t < T; t++) s[i][t] = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
      __m256i wv[R];
      for (int i = 0; i < R; i++)
        wv[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wt + ((i * G8 + c) * 8 + j) * 32));
      for (int t = 0; t < T; t++) {
        const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(at[t] + c * 256 + j * 32));
        for (int i = 0; i < R; i++) s[i][t] = _mm256_dpbusd_epi32(s[i][t], wv[i], xv);
      }
    }
    for (int t = 0; t < T; t++) {
      const __m256i corr = corr_of<F>(A[t].s + c * 8);
      const __m256 dp = _mm256_loadu_ps(A[t].dp + c * 8);
      for (int i = 0; i < R; i++) {
        const __m256 swv = _mm256_load_ps(sw + (i * G8 + c) * 8);
        acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s[i][t], corr)), _mm256_mul_ps(swv, dp),
                                    acc[i][t]);
      }
    }
  }
  finish_tile<F, R, T>(k, W, r, acc, A, Y, ldy);
}

// Rows per register tile (3 x 4 tokens: 12 int32 + 12 float accumulators of the 32 registers).
constexpr int kTR = 3;

template <Format F, int T>
void rows_t(const K& k, const WeightView& W, int64_t rb, int64_t nr, const uint8_t* wt, const float* sw,
            const Act* A, const int8_t* const* at, float* Y, int64_t ldy, PfStream& pf) {
  const int64_t G8 = W.cols / kGroup / 8;
  int64_t i = 0;
  for (; i + kTR <= nr; i += kTR)
    tile_t<F, kTR, T>(k, W, rb + i, wt + i * G8 * 256, sw + i * G8 * 8, A, at, Y, ldy, pf);
  for (; i < nr; i++) tile_t<F, 1, T>(k, W, rb + i, wt + i * G8 * 256, sw + i * G8 * 8, A, at, Y, ldy, pf);
}

// Rows in blocks of kRB, unpacked once; for each block, tokens in tiles of 4 (their activations
// stay in L1 while the block's rows, in L2, pass over them).
constexpr int64_t kRB = 24;

template <Format F>
void qgemm_t_impl(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
                  void* scratch) {
  constexpr int T = 4;
  const K k;
  const int64_t G8 = W.cols / kGroup / 8, rbytes = row_bytes<F>(W.cols);
  const int64_t stride = int64_t(qact_t_stride(W.cols)), off = int64_t(qact_stride(W.cols));
  uint8_t* wt = static_cast<uint8_t*>(scratch);  // [kRB][G8][256] codes, then [kRB][G8][8] scales
  float* sw = reinterpret_cast<float*>(wt + kRB * G8 * 256);
  for (int64_t rb = r0; rb < r1; rb += kRB) {
    const int64_t nr = rb + kRB < r1 ? kRB : r1 - rb;
    unpack_rows<F>(k, W, rb, nr, wt, sw);
    // the next block's codes (rows are contiguous), spread over this block's chunk steps
    const int64_t next = rb + kRB < r1 ? rb + kRB : r1, next_nr = next + kRB < r1 ? kRB : r1 - next;
    const int64_t steps = (nr / kTR + nr % kTR) * G8 * ((n + T - 1) / T);  // tile_t calls x chunks
    PfStream pf;
    pf.p = reinterpret_cast<const char*>(W.codes + next * rbytes);
    pf.end = pf.p + next_nr * rbytes;
    pf.per_step = steps > 0 ? (next_nr * rbytes / 64 + steps - 1) / steps : 0;
    for (int64_t t0 = 0; t0 < n; t0 += T) {
      Act A[T];
      const int8_t* at[T];
      const int nt = int(n - t0 < T ? n - t0 : T);
      for (int j = 0; j < nt; j++) {
        A[j] = act_at(act + (t0 + j) * stride, W.cols);
        at[j] = reinterpret_cast<const int8_t*>(act + (t0 + j) * stride + off);
      }
      float* Yt = Y + t0 * ldy;
      switch (nt) {
        case 4: rows_t<F, 4>(k, W, rb, nr, wt, sw, A, at, Yt, ldy, pf); break;
        case 3: rows_t<F, 3>(k, W, rb, nr, wt, sw, A, at, Yt, ldy, pf); break;
        case 2: rows_t<F, 2>(k, W, rb, nr, wt, sw, A, at, Yt, ldy, pf); break;
        default: rows_t<F, 1>(k, W, rb, nr, wt, sw, A, at, Yt, ldy, pf); break;
      }
    }
  }
}

}  // namespace

// Both activation layouts of one token: the GEMV's (for tails, scales and sums) then the
// t-layout codes of the full chunks.
void quantize_act_t(const float* x, int64_t cols, uint8_t* out) {
  quantize_act(x, cols, out);
  const Act a = act_at(out, cols);
  auto* qt = reinterpret_cast<int32_t*>(out + qact_stride(cols));
  const int64_t G8 = cols / kGroup / 8;
  for (int64_t c = 0; c < G8; c++)
    for (int j = 0; j < 8; j++) {  // group j of the chunk: its lane L, and its two 16-byte halves
      const int L = (j % 2) * 4 + j / 2;
      const int8_t* lo = a.q + c * 256 + (j / 2) * 64 + (j % 2) * 16;
      int32_t v[8];
      std::memcpy(v, lo, 16);
      std::memcpy(v + 4, lo + 32, 16);
      for (int kk = 0; kk < 8; kk++) qt[c * 64 + kk * 8 + L] = v[kk];
    }
}

int64_t dot_peak_loop_vnni(int64_t iters) {
  const __m256i w = _mm256_set1_epi8(char(iters | 1)), x = _mm256_set1_epi8(char(iters >> 3));
  __m256i acc[12];
  for (auto& a : acc) a = _mm256_setzero_si256();
  for (int64_t i = 0; i < iters; i++)
    for (auto& a : acc) a = _mm256_dpbusd_epi32(a, w, x);
  int64_t s = 0;
  for (auto& a : acc) s += _mm256_extract_epi32(a, 0);
  return s;
}

size_t qact_t_stride(int64_t cols) { return qact_stride(cols) + size_t(a64(cols)); }

size_t qgemm_scratch_bytes(int64_t cols) { return size_t(kRB * (cols / kGroup / 8) * (256 + 32)); }

void qgemm_t_vnni(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
                  void* scratch) {
  switch (W.fmt) {
    case Format::Q4: qgemm_t_impl<Format::Q4>(W, act, n, Y, ldy, r0, r1, scratch); break;
    case Format::Q5: qgemm_t_impl<Format::Q5>(W, act, n, Y, ldy, r0, r1, scratch); break;
    default: qgemm_t_impl<Format::Q8>(W, act, n, Y, ldy, r0, r1, scratch); break;
  }
}

void qmatmul_vnni(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0,
                  int64_t r1) {
  switch (W.fmt) {
    case Format::Q4: qmatmul_impl<Format::Q4>(W, act, n, Y, ldy, r0, r1); break;
    case Format::Q5: qmatmul_impl<Format::Q5>(W, act, n, Y, ldy, r0, r1); break;
    default: qmatmul_impl<Format::Q8>(W, act, n, Y, ldy, r0, r1); break;
  }
}

}  // namespace r1::avx2

#include "kernels/cpu/vnni_end.h"
