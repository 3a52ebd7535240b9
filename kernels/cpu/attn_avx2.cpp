// Attention of one kv head's query-head group over a range of cache positions (AVX2).
// The g_heads query heads that share a kv head are processed together so each K and V row is
// read from memory once for the whole group (GQA), which keeps deep-context decode bandwidth-bound.
#include <cmath>
#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/vmath_avx2.h"

namespace r1::avx2 {
namespace {

template <bool F16>
inline __m256 kv8(const void* base, int64_t i) {
  if constexpr (F16)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
  else
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
}

// scores[h * np + j] = scale * q_h . k_{p0 + j} for NB heads starting at q.
template <bool F16, int NB>
void scores_nb(const float* q, const void* k, int hd, int64_t p0, int64_t p1, float scale, float* scores,
               int64_t np) {
  for (int64_t p = p0; p < p1; p++) {
    __m256 acc[NB];
    for (int h = 0; h < NB; h++) acc[h] = _mm256_setzero_ps();
    for (int c = 0; c < hd; c += 8) {
      const __m256 kv = kv8<F16>(k, p * hd + c);
      for (int h = 0; h < NB; h++) acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * hd + c), kv, acc[h]);
    }
    int h = 0;
    for (; h + 4 <= NB; h += 4) {
      // four horizontal sums at once: [h0 h1 h2 h3] in one vector
      __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(acc[h], acc[h + 1]), _mm256_hadd_ps(acc[h + 2], acc[h + 3]));
      __m128 s4 = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)), _mm_set1_ps(scale));
      alignas(16) float o[4];
      _mm_store_ps(o, s4);
      for (int i = 0; i < 4; i++) scores[(h + i) * np + (p - p0)] = o[i];
    }
    for (; h < NB; h++) scores[h * np + (p - p0)] = hsum8(acc[h]) * scale;
  }
}

// out[h, c:c+8*CB] += sum_j a[h, j] v_{p0+j}[c:c+8*CB] over positions [j0, j1) for NB heads.
template <bool F16, int NB, int CB>
void av_nb(const float* a, int64_t np, const void* v, int hd, int64_t p0, int64_t j0, int64_t j1, float* out,
           int c) {
  __m256 acc[NB][CB];
  for (int h = 0; h < NB; h++)
    for (int b = 0; b < CB; b++) acc[h][b] = _mm256_loadu_ps(out + h * hd + c + 8 * b);
  for (int64_t j = j0; j < j1; j++) {
    __m256 vv[CB];
    for (int b = 0; b < CB; b++) vv[b] = kv8<F16>(v, (p0 + j) * hd + c + 8 * b);
    for (int h = 0; h < NB; h++) {
      const __m256 w = _mm256_broadcast_ss(a + h * np + j);
      for (int b = 0; b < CB; b++) acc[h][b] = _mm256_fmadd_ps(w, vv[b], acc[h][b]);
    }
  }
  for (int h = 0; h < NB; h++)
    for (int b = 0; b < CB; b++) _mm256_storeu_ps(out + h * hd + c + 8 * b, acc[h][b]);
}

template <bool F16, int NB>
void head_block(const float* q, const void* k, const void* v, int hd, int64_t p0, int64_t p1, float scale,
                float* scores, int64_t np, float* out, float* m, float* l) {
  scores_nb<F16, NB>(q, k, hd, p0, p1, scale, scores, np);
  // softmax numerators per head
  for (int h = 0; h < NB; h++) {
    float* s = scores + h * np;
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
      __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
      _mm256_storeu_ps(s + j, e);
      sum = _mm256_add_ps(sum, e);
    }
    float sv = hsum8(sum);
    for (; j < np; j++) { s[j] = std::exp(s[j] - mv); sv += s[j]; }
    m[h] = mv;
    l[h] = sv;
    for (int c = 0; c < hd; c++) out[h * hd + c] = 0;
  }
  // positions in blocks that keep the V rows in L1 while every column block passes over them
  constexpr int64_t kPB = 32;
  for (int64_t j0 = 0; j0 < np; j0 += kPB) {
    const int64_t j1 = j0 + kPB < np ? j0 + kPB : np;
    int c = 0;
    if constexpr (NB <= 6)  // 2 column vectors x NB heads of accumulators fit 16 registers
      for (; c + 16 <= hd; c += 16) av_nb<F16, NB, 2>(scores, np, v, hd, p0, j0, j1, out, c);
    for (; c < hd; c += 8) av_nb<F16, NB, 1>(scores, np, v, hd, p0, j0, j1, out, c);
  }
}

template <bool F16>
void partial(const float* q, const void* k, const void* v, int G, int hd, int64_t p0, int64_t p1, float scale,
             float* scores, float* out, float* m, float* l) {
  const int64_t np = p1 - p0;
  // all heads of the group in one pass (up to 8), so K and V are read once
  for (int h = 0; h < G; h += 8) {
    const int nb = G - h < 8 ? G - h : 8;
    const float* qh = q + h * hd;
    float *oh = out + h * hd, *mh = m + h, *lh = l + h;
    switch (nb) {
      case 8: head_block<F16, 8>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      case 7: head_block<F16, 7>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      case 6: head_block<F16, 6>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      case 5: head_block<F16, 5>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      case 4: head_block<F16, 4>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      case 3: head_block<F16, 3>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      case 2: head_block<F16, 2>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
      default: head_block<F16, 1>(qh, k, v, hd, p0, p1, scale, scores, np, oh, mh, lh); break;
    }
  }
}

}  // namespace

void attn_partial(const float* q, const void* k, const void* v, bool kv_f16, int g_heads, int hd, int64_t p0,
                  int64_t p1, float scale, float* scores, float* out, float* m, float* l) {
  if (kv_f16)
    partial<true>(q, k, v, g_heads, hd, p0, p1, scale, scores, out, m, l);
  else
    partial<false>(q, k, v, g_heads, hd, p0, p1, scale, scores, out, m, l);
}

}  // namespace r1::avx2
