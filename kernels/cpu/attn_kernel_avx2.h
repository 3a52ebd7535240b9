// Attention of one kv head's query-head group over a range of cache positions (AVX2).
//
// Deep-context decode must stay bandwidth-bound: each K and V row is read from memory once for
// all g_heads query heads that share it (GQA), and converted to f32 once per use (f16, or q8
// codes times their group's scale). Three passes
// over the range, each a stream:
//   1. scores  s[h, j] = scale * q_h . k_j   NB heads x PB positions of accumulators in
//      registers: one K load feeds NB FMAs, one q load feeds PB FMAs, and NB*PB independent chains
//      keep both FMA pipes busy (a single position leaves them latency-bound);
//   2. softmax numerators per head (vectorized exp), max m and sum l kept for the merge;
//   3. out[h] += sum_j s[h, j] v_j, NB heads x CB column vectors of accumulators, positions in
//      blocks whose V rows stay in L1 while every column block passes over them.
// At G = 6, hd = 128 that is 192 FMAs (8 lanes) per position against 512 bytes of f16 K and V.
//
// Included by attn_avx2.cpp (R1_WIDE 0: 16 vector registers) and attn_r32_avx2.cpp (R1_WIDE 1:
// AVX-512VL's 32 registers, so twice the positions / columns per step: measured 1.3-1.45x on one
// thread at depth 4096, G = 6). The blocks change, not the order of any sum, so both give the
// same bits (tested). Everything is in an anonymous namespace so the two builds never share a symbol.
#pragma once
#include <cmath>
#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/vmath_avx2.h"

namespace r1::avx2 {
namespace {

#define R1_INLINE inline __attribute__((always_inline))

// Values c..c+7 of cache row `row` as floats, for KvFormat KF (c % 8 == 0).
template <KvFormat KF>
R1_INLINE __m256 kv8(const void* base, int64_t row, int hd, int c) {
  if constexpr (KF == KvFormat::F16) {
    const auto* e = static_cast<const uint16_t*>(base) + row * hd + c;
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e)));
  } else if constexpr (KF == KvFormat::Q8) {
    // code * scale, one rounding: bitwise the reference's kv_q8_value
    const auto* r = static_cast<const uint8_t*>(base) + row * kv_row_bytes(KF, hd);
    const __m256 codes = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(r + c))));
    return _mm256_mul_ps(codes, _mm256_broadcast_ss(reinterpret_cast<const float*>(r + hd) + unsigned(c) / kKvGroup));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(base) + row * hd + c);
  }
}

// Horizontal sums of 8 vectors at once: lane i of the result is the sum of a[i].
R1_INLINE __m256 hsum8x8(const __m256* a) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  // s0123 = [a0 a1 a2 a3 | a0 a1 a2 a3] (low/high 128-bit halves), same for s4567
  const __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20), hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
  return _mm256_add_ps(lo, hi);
}

// One vector's sum in the same order as a lane of hsum8x8: ((0+1)+(2+3)) + ((4+5)+(6+7)), so a
// score has the same bits whichever path reduces it (the blockings of both builds agree).
R1_INLINE float hsum8_tree(__m256 v) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v, v), _mm256_setzero_ps());
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

// Writes scale * hsum(acc[i]) to dst[i] for N accumulators (inlined with N known, so the
// accumulators stay in registers instead of being spilled to an array).
template <int N>
R1_INLINE void reduce_store(const __m256* acc, float scale, float* dst) {
  const __m256 vs = _mm256_set1_ps(scale);
  int i = 0;
  for (; i + 8 <= N; i += 8) _mm256_storeu_ps(dst + i, _mm256_mul_ps(hsum8x8(acc + i), vs));
  if (i + 4 <= N) {  // four at once: [a0 a1 a2 a3] from two hadd levels and one 128-bit add
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(acc[i], acc[i + 1]), _mm256_hadd_ps(acc[i + 2], acc[i + 3]));
    _mm_storeu_ps(dst + i, _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)),
                                      _mm256_castps256_ps128(vs)));
    i += 4;
  }
  for (; i < N; i++) dst[i] = hsum8_tree(acc[i]) * scale;
}

// Pass 1 for PB positions starting at p: scores[h * np + (p - p0) + b], h < NB, b < PB.
template <KvFormat KF, int NB, int PB>
R1_INLINE void scores_block(const float* q, const void* k, int hd, int64_t p, int64_t p0, float scale, float* scores,
                         int64_t np) {
  __m256 acc[PB * NB];  // [b][h]
  for (int i = 0; i < PB * NB; i++) acc[i] = _mm256_setzero_ps();
  // K rows kPfRows ahead: this loop is FMA-bound, so the core issues its loads late and a cold
  // cache stalls it; the prefetch measured 6-10% off the whole attention at depth 4096 (V's
  // blocked pass gained nothing from the same)
  // (Row bytes as hd * kNum / kDen, in this order: with a precomputed row size GCC spilled two
  // of the f16 loop's K vectors, 12% slower.)
  constexpr int64_t kPfRows = 8, kNum = KF == KvFormat::F32 ? 4 : KF == KvFormat::F16 ? 2 : 9, kDen = KF == KvFormat::Q8 ? 8 : 1;
  static_assert(kv_row_bytes(KF, 128) == 128 * kNum / kDen && kv_row_bytes(KF, 96) == 96 * kNum / kDen);
  for (int b = 0; b < PB; b++)
    for (int64_t o = 0; o < hd * kNum / kDen; o += 64)
      _mm_prefetch(static_cast<const char*>(k) + (p + b + kPfRows) * hd * kNum / kDen + o, _MM_HINT_T0);
  for (int c = 0; c < hd; c += 8) {
    __m256 kv[PB];
    for (int b = 0; b < PB; b++) kv[b] = kv8<KF>(k, p + b, hd, c);
    for (int h = 0; h < NB; h++) {
      const __m256 qv = _mm256_loadu_ps(q + h * hd + c);
      for (int b = 0; b < PB; b++) acc[b * NB + h] = _mm256_fmadd_ps(qv, kv[b], acc[b * NB + h]);
    }
  }
  float s[PB * NB];
  reduce_store<PB * NB>(acc, scale, s);
  for (int b = 0; b < PB; b++)
    for (int h = 0; h < NB; h++) scores[h * np + (p - p0) + b] = s[b * NB + h];
}

template <KvFormat KF, int NB>
void scores_nb(const float* q, const void* k, int hd, int64_t p0, int64_t p1, float scale, float* scores,
               int64_t np) {
  // positions per step: as many as keep NB * PB accumulators + PB K vectors + 1 q in 16 (32) registers
#if R1_WIDE
  constexpr int PB = NB <= 2 ? 8 : NB <= 4 ? 6 : NB <= 6 ? 4 : 3;
#else
  constexpr int PB = NB <= 2 ? 4 : NB <= 4 ? 3 : NB <= 6 ? 2 : 1;
#endif
  int64_t p = p0;
  for (; p + PB <= p1; p += PB) scores_block<KF, NB, PB>(q, k, hd, p, p0, scale, scores, np);
  for (; p < p1; p++) scores_block<KF, NB, 1>(q, k, hd, p, p0, scale, scores, np);
}

// Pass 3: out[h, c : c + 8 CB] += sum_j a[h, j] v_{p0+j}[c : c + 8 CB] over j in [j0, j1), h < NB.
template <KvFormat KF, int NB, int CB>
R1_INLINE void av_nb(const float* a, int64_t np, const void* v, int hd, int64_t p0, int64_t j0, int64_t j1, float* out,
                  int c) {
  __m256 acc[NB][CB];
  for (int h = 0; h < NB; h++)
    for (int b = 0; b < CB; b++) acc[h][b] = _mm256_loadu_ps(out + h * hd + c + 8 * b);
  for (int64_t j = j0; j < j1; j++) {
    __m256 vv[CB];
    for (int b = 0; b < CB; b++) vv[b] = kv8<KF>(v, p0 + j, hd, c + 8 * b);
    for (int h = 0; h < NB; h++) {
      const __m256 w = _mm256_broadcast_ss(a + h * np + j);
      for (int b = 0; b < CB; b++) acc[h][b] = _mm256_fmadd_ps(w, vv[b], acc[h][b]);
    }
  }
  for (int h = 0; h < NB; h++)
    for (int b = 0; b < CB; b++) _mm256_storeu_ps(out + h * hd + c + 8 * b, acc[h][b]);
}

// Pass 2 for one head: s[j] <- exp(s[j] - max), returns max in *m and the sum in *l.
inline void softmax_num(float* s, int64_t np, float* m, float* l) {
  __m256 mx = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= np; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + j));
  alignas(32) float t[8];
  _mm256_store_ps(t, mx);
  float mv = -INFINITY;
  for (int i = 0; i < 8; i++) mv = std::fmax(mv, t[i]);
  for (; j < np; j++) mv = std::fmax(mv, s[j]);
  const __m256 vm = _mm256_set1_ps(mv);
  __m256 sum = _mm256_setzero_ps();
  for (j = 0; j + 8 <= np; j += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
    _mm256_storeu_ps(s + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  float sv = hsum8(sum);
  for (; j < np; j++) {
    s[j] = std::exp(s[j] - mv);
    sv += s[j];
  }
  *m = mv;
  *l = sv;
}

template <KvFormat KF, int NB>
void head_block(const float* q, const void* k, const void* v, int hd, int64_t p0, int64_t p1, float scale,
                float* scores, float* out, float* m, float* l) {
  const int64_t np = p1 - p0;
  scores_nb<KF, NB>(q, k, hd, p0, p1, scale, scores, np);
  for (int h = 0; h < NB; h++) {
    softmax_num(scores + h * np, np, m + h, l + h);
    for (int c = 0; c < hd; c++) out[h * hd + c] = 0;
  }
  // column vectors per step: NB * CB accumulators + CB V vectors + 1 weight in 16 (32) registers
#if R1_WIDE
  constexpr int CB = NB <= 6 ? 4 : 3;
#else
  constexpr int CB = NB <= 2 ? 4 : NB <= 4 ? 3 : NB <= 6 ? 2 : 1;
#endif
  constexpr int64_t kPB = 32;  // positions per block: 32 rows of V (8 KB at hd 128, f16) stay in L1
  for (int64_t j0 = 0; j0 < np; j0 += kPB) {
    const int64_t j1 = j0 + kPB < np ? j0 + kPB : np;
    int c = 0;
    for (; c + 8 * CB <= hd; c += 8 * CB) av_nb<KF, NB, CB>(scores, np, v, hd, p0, j0, j1, out, c);
    for (; c < hd; c += 8) av_nb<KF, NB, 1>(scores, np, v, hd, p0, j0, j1, out, c);
  }
}

template <KvFormat KF>
void partial(const float* q, const void* k, const void* v, int G, int hd, int64_t p0, int64_t p1, float scale,
             float* scores, float* out, float* m, float* l) {
  // up to 8 heads per pass over K and V (a group of 12 makes two passes: 8 + 4)
  for (int h = 0; h < G; h += 8) {
    const int nb = G - h < 8 ? G - h : 8;
    const float* qh = q + h * hd;
    float *oh = out + h * hd, *mh = m + h, *lh = l + h;
    switch (nb) {
      case 8: head_block<KF, 8>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      case 7: head_block<KF, 7>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      case 6: head_block<KF, 6>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      case 5: head_block<KF, 5>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      case 4: head_block<KF, 4>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      case 3: head_block<KF, 3>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      case 2: head_block<KF, 2>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
      default: head_block<KF, 1>(qh, k, v, hd, p0, p1, scale, scores, oh, mh, lh); break;
    }
  }
}

}  // namespace

// The entry point of this build: attn_partial or attn_partial_wide (kernels/cpu/avx2.h).
void R1_ATTN_ENTRY(const float* q, const void* k, const void* v, KvFormat kv, int g_heads, int hd, int64_t p0,
                   int64_t p1, float scale, float* scores, float* out, float* m, float* l) {
  switch (kv) {
    case KvFormat::F16: partial<KvFormat::F16>(q, k, v, g_heads, hd, p0, p1, scale, scores, out, m, l); break;
    case KvFormat::Q8: partial<KvFormat::Q8>(q, k, v, g_heads, hd, p0, p1, scale, scores, out, m, l); break;
    default: partial<KvFormat::F32>(q, k, v, g_heads, hd, p0, p1, scale, scores, out, m, l);
  }
}

}  // namespace r1::avx2
