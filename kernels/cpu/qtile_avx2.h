// The q4/q5/q8 x int8-activation tile kernel, included by qgemm_avx2.cpp (R1_VNNI 0: vpmaddubsw with
// the sign trick) and qgemm_vnni_avx2.cpp (R1_VNNI 1: vpdpbusd under #pragma GCC target).
// Everything is in an anonymous namespace so the two ISA builds never share a symbol.
//
// A tile is R rows x T tokens. Per aligned chunk of 8 groups (256 weights) and row, the weights
// are unpacked once (4 group pairs) and dotted against each token: each pair yields a vector
// whose low 128 bits sum group a and high 128 bits group b; three vphaddd turn 4 pairs into one
// int32 vector holding the 8 group sums (order 0 2 4 6 1 3 5 7), which is converted once and
// scaled by dw * dx with one FMA. So per (row, token, 256 weights): 8 dots + 3 hadd + 3 float ops.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/avx2.h"
#include "quant/formats.h"

namespace r1::avx2 {
namespace {

struct Act {
  const int8_t* q;
  const uint8_t* u;
  const float* dp;
  const int32_t* s;
};

inline int64_t a64(int64_t x) { return (x + 63) / 64 * 64; }
inline Act act_at(const uint8_t* base, int64_t cols) {
  const int64_t G = cols / kGroup;
  Act a;
  a.q = reinterpret_cast<const int8_t*>(base);
  a.u = base + a64(cols);
  a.dp = reinterpret_cast<const float*>(base + 2 * a64(cols));
  a.s = reinterpret_cast<const int32_t*>(base + 2 * a64(cols) + a64(G * 4));
  return a;
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline void transpose8(__m256i r[8]) {  // 8x8 int32 transpose in registers
  __m256i t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  __m256i u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
  }
}

// Lane L of a chunk's 8-lane vectors holds group kP[L] of the chunk (the order the GEMV's hadd
// tree produces; activation scales and sums are stored in it, see avx2.h).
constexpr int kP[8] = {0, 2, 4, 6, 1, 3, 5, 7};

#if R1_VNNI
// The u8 operand of vpdpbusd is q4's level + 128 but q5's bare code (level + 16: no add per
// byte), so the activation term to subtract is 128 sum(x) (Act::s) for q4 and 16 sum(x) for q5;
// Act::s is a multiple of 128, so the shift is exact.
inline int32_t q5_corr(int32_t s128) { return s128 >> 3; }
template <Format F>
inline __m256i corr_of(const int32_t* s) {
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(s));
  return F == Format::Q5 ? _mm256_srai_epi32(v, 3) : v;
}
#endif

// Constants of one kernel call.
struct K {
  int64_t l2_cols = pf_l2_cols();  // rows this long prefetch into L2 (avx2.h)
  __m256i m4 = _mm256_set1_epi8(0x0f);
#if R1_VNNI
  __m256i lut;  // q4 level + 128 as u8
  __m256i c80 = _mm256_set1_epi8(char(0x80));
#else
  __m256i lut_s, lut_a;  // q4 level, |level|
  __m256i one16 = _mm256_set1_epi16(1);
  __m256i q5off = _mm256_set1_epi8(16);  // q5 level = code - 16
#endif
  // q5 fifth bits: byte i of a lane tests bit i % 8 of the high-bit byte the shuffle put there
  __m256i bitsel = _mm256_set1_epi64x(0x8040201008040201ll), c10 = _mm256_set1_epi8(0x10);
  __m256i hb_lo = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  // pair: group a bits 0-15,
                                   4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5);  // group b bits 0-15
  __m256i hb_hi = _mm256_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,  // bits 16-31
                                   6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7);
  __m256i hb_one = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  // one group, natural
                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  K() {
    alignas(32) int8_t t[32];
#if R1_VNNI
    for (int i = 0; i < 32; i++) t[i] = int8_t(uint8_t(kQ4Levels[i & 15] + 128));
    lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
#else
    for (int i = 0; i < 32; i++) t[i] = kQ4Levels[i & 15];
    lut_s = _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
    lut_a = _mm256_abs_epi8(lut_s);
#endif
  }
};

// One pair of groups (or one group, in natural order) ready for dot products.
#if R1_VNNI
struct WP { __m256i l, h, c; };  // q4: level+128 (u8); q8: codes (s8) and -128*sum(w) lanes
#else
struct WP { __m256i al, ah, sl, sh; };  // |w| and w (for the sign of x)
#endif

// Code bytes per row, and where a q5 row's high-bit words start.
template <Format F>
constexpr int64_t row_bytes(int64_t cols) {
  return F == Format::Q8 ? cols : F == Format::Q4 ? cols / 2 : cols / 8 * 5;
}
template <Format F>
inline const uint8_t* hbits_of(const uint8_t* wc, int64_t cols) {
  return F == Format::Q5 ? wc + q5_hbits_offset(cols) : nullptr;
}

// 0x10 in each byte whose q5 fifth bit is set: `bits` holds the high-bit words in every 64-bit
// lane, `sel` picks for each byte the word byte that holds its bit.
inline __m256i q5_fifth(const K& k, __m256i bits, __m256i sel) {
  const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(bits, sel), k.bitsel);
  return _mm256_and_si256(_mm256_cmpeq_epi8(b, k.bitsel), k.c10);
}

// Pair (g, g+1) starting at group g of row codes `wc` (q5: high-bit words at hb).
template <Format F>
inline WP prep_pair(const K& k, const uint8_t* wc, const uint8_t* hb, int64_t g) {
  __m256i l, h;
  if constexpr (F != Format::Q8) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + g * 16));
    l = _mm256_and_si256(v, k.m4);
    h = _mm256_and_si256(_mm256_srli_epi16(v, 4), k.m4);
    if constexpr (F == Format::Q5) {
      uint64_t w2;
      std::memcpy(&w2, hb + g * 4, 8);
#if R1_VNNI  // AVX-512 byte masks: bit i of the mask adds 0x10 to nibble i
      const __mmask32 ml = __mmask32(_pext_u64(w2, 0x0000ffff0000ffffull));  // a 0-15 | b 0-15
      const __mmask32 mh = __mmask32(_pext_u64(w2, 0xffff0000ffff0000ull));  // a 16-31 | b 16-31
      l = _mm256_mask_add_epi8(l, ml, l, k.c10);
      h = _mm256_mask_add_epi8(h, mh, h, k.c10);
#else
      const __m256i bits = _mm256_set1_epi64x(int64_t(w2));
      l = _mm256_or_si256(l, q5_fifth(k, bits, k.hb_lo));
      h = _mm256_or_si256(h, q5_fifth(k, bits, k.hb_hi));
#endif
    }
  } else {
    (void)hb;
    __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + g * 32));
    __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + g * 32 + 32));
    l = _mm256_permute2x128_si256(a, b, 0x20);
    h = _mm256_permute2x128_si256(a, b, 0x31);
  }
  WP p;
#if R1_VNNI
  if constexpr (F == Format::Q4) {
    p.l = _mm256_shuffle_epi8(k.lut, l);
    p.h = _mm256_shuffle_epi8(k.lut, h);
    p.c = _mm256_setzero_si256();
  } else if constexpr (F == Format::Q5) {  // code = level + 16: corrected by 16 sum(x) (q5_corr)
    p.l = l;
    p.h = h;
    p.c = _mm256_setzero_si256();
  } else {
    p.l = l;
    p.h = h;
    __m256i s = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), k.c80, l), k.c80, h);
    p.c = _mm256_sub_epi32(_mm256_setzero_si256(), s);
  }
#else
  if constexpr (F == Format::Q4) {
    p.al = _mm256_shuffle_epi8(k.lut_a, l);
    p.ah = _mm256_shuffle_epi8(k.lut_a, h);
    p.sl = _mm256_shuffle_epi8(k.lut_s, l);
    p.sh = _mm256_shuffle_epi8(k.lut_s, h);
  } else if constexpr (F == Format::Q5) {
    p.sl = _mm256_sub_epi8(l, k.q5off);
    p.sh = _mm256_sub_epi8(h, k.q5off);
    p.al = _mm256_abs_epi8(p.sl);
    p.ah = _mm256_abs_epi8(p.sh);
  } else {
    p.al = _mm256_abs_epi8(l);
    p.ah = _mm256_abs_epi8(h);
    p.sl = l;
    p.sh = h;
  }
#endif
  return p;
}

// Dot of a prepared pair with 64 activation bytes at q (s8) / u (u8): int32 lanes, low half
// group a, high half group b. For q4/q5 under VNNI the result is still offset by +128*sum(x).
template <Format F>
inline __m256i dot_pair(const K& k, const WP& p, const int8_t* q, const uint8_t* u) {
#if R1_VNNI
  if constexpr (F != Format::Q8) {
    __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
    __m256i xh = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32));
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), p.l, xl), p.h, xh);
  } else {
    __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(u));
    __m256i xh = _mm256_load_si256(reinterpret_cast<const __m256i*>(u + 32));
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(p.c, xl, p.l), xh, p.h);
  }
#else
  (void)u;
  __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
  __m256i xh = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32));
  __m256i a = _mm256_madd_epi16(_mm256_maddubs_epi16(p.al, _mm256_sign_epi8(xl, p.sl)), k.one16);
  __m256i b = _mm256_madd_epi16(_mm256_maddubs_epi16(p.ah, _mm256_sign_epi8(xh, p.sh)), k.one16);
  return _mm256_add_epi32(a, b);
#endif
}

// The 32 codes of group g in natural order (q4: 0..15, q5: 0..31, q8: the int8 codes).
template <Format F>
inline __m256i group_codes(const K& k, const uint8_t* wc, const uint8_t* hb, int64_t g) {
  if constexpr (F == Format::Q8) {
    (void)hb;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + g * 32));
  } else {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wc + g * 16));
    __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), k.m4);
    if constexpr (F == Format::Q5) {
      uint32_t w1;
      std::memcpy(&w1, hb + g * 4, 4);
#if R1_VNNI
      w = _mm256_mask_add_epi8(w, __mmask32(w1), w, k.c10);
#else
      w = _mm256_or_si256(w, q5_fifth(k, _mm256_set1_epi32(int32_t(w1)), k.hb_one));
#endif
    }
    return w;
  }
}

// Integer dot of one whole group g (natural layout) of row codes wc with token a, corrected.
template <Format F>
inline int dot_group(const K& k, const uint8_t* wc, const uint8_t* hb, int64_t g, const Act& a) {
  const __m256i w = group_codes<F>(k, wc, hb, g);
  __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + g * 32));
#if R1_VNNI
  if constexpr (F == Format::Q4) {
    return hsum_i32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_shuffle_epi8(k.lut, w), x)) - a.s[g];
  } else if constexpr (F == Format::Q5) {
    return hsum_i32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x)) - q5_corr(a.s[g]);
  } else {
    __m256i xu = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.u + g * 32));
    __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), xu, w);
    __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), k.c80, w);
    return hsum_i32(_mm256_sub_epi32(d, c));
  }
#else
  __m256i ws = F == Format::Q4 ? _mm256_shuffle_epi8(k.lut_s, w) : F == Format::Q5 ? _mm256_sub_epi8(w, k.q5off) : w;
  __m256i wa = _mm256_abs_epi8(ws);
  return hsum_i32(_mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(x, ws)), k.one16));
#endif
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// The end of an R x T tile, shared by the GEMV and the GEMM so that both round alike: the
// chunk accumulators summed, plus the tail groups (G % 8) one by one, in order.
template <Format F, int R, int T>
inline void finish_tile(const K& k, const WeightView& W, int64_t r, const __m256 (&acc)[R][T], const Act* A, float* Y,
                        int64_t ldy) {
  const int64_t G = W.cols / kGroup, G8 = G / 8, rb = row_bytes<F>(W.cols);
  for (int i = 0; i < R; i++) {
    const uint8_t* wc = W.codes + (r + i) * rb;
    const uint8_t* hb = hbits_of<F>(wc, W.cols);
    for (int t = 0; t < T; t++) {
      float tail = 0;
      for (int64_t g = G8 * 8; g < G; g++)  // one rounding per step, whatever the compiler contracts
        tail = std::fma(h2f(W.scales[(r + i) * G + g]) * A[t].dp[g], float(dot_group<F>(k, wc, hb, g, A[t])), tail);
      Y[t * ldy + r + i] = hsum_ps(acc[i][t]) + tail;
    }
  }
}

// A line kPfBytes ahead: into L2 for long rows, else into L1 (avx2.h: kPfL2Cols).
inline void prefetch_far(const char* p, bool to_l2) {
  if (to_l2) _mm_prefetch(p, _MM_HINT_T1);
  else _mm_prefetch(p, _MM_HINT_T0);
}

template <Format F, int R, int T>
void tile(const K& k, const WeightView& W, int64_t r, const Act* A, float* Y, int64_t ldy) {
  constexpr bool Q8 = F == Format::Q8;
  const int64_t cols = W.cols, G = cols / kGroup, G8 = G / 8;
  const int64_t rb = row_bytes<F>(cols);
  const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m256 acc[R][T];
  for (int i = 0; i < R; i++)
    for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
  // every 64-byte line of a chunk (128 / 256 bytes), kPfBytes ahead; a tile of R rows interleaves
  // R streams, so it looks whole tiles ahead. The scales are a stream beside the codes (rows
  // back to back, G per row): they are fetched as far ahead, ahead * G / rb scales, which is
  // within the row when a row is longer than kPfBytes (a whole row ahead left the scales of
  // K = 18944 rows to demand misses: one reason 7B's down_proj ran at half the bandwidth). The
  // address is computed once here (inside the chunk loop it took an idiv every 4 chunks).
  const int64_t ahead = R == 1 ? kPfBytes : (kPfBytes / (R * rb) + 1) * R * rb;
  const uint16_t* sc_ahead = W.scales + r * G + ahead * G / rb;
  const bool to_l2 = cols >= k.l2_cols;
  for (int64_t c = 0; c < G8; c++) {
    const int64_t g = c * 8;
    for (int i = 0; i < R; i++) {
      const uint8_t* wc = W.codes + (r + i) * rb;
      const uint8_t* hb = hbits_of<F>(wc, cols);
      const char* line = reinterpret_cast<const char*>(wc + g * (Q8 ? 32 : 16));
      for (int l = 0; l < (Q8 ? 4 : 2); l++) {
        prefetch_far(line + ahead + 64 * l, to_l2);
        if (to_l2) _mm_prefetch(line + kPfNear + 64 * l, _MM_HINT_T0);
      }
      if constexpr (F == Format::Q5)  // the high-bit words: 32 bytes per chunk, where the codes go
        if (c % 2 == 0) prefetch_far(reinterpret_cast<const char*>(hb + ahead + g * 4), to_l2);
      if (c % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(sc_ahead + i * G + g), _MM_HINT_T0);
      const __m256 sw = _mm256_permutevar8x32_ps(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(W.scales + (r + i) * G + g))), perm);
      __m256i h01[T];
      {
        const WP p0 = prep_pair<F>(k, wc, hb, g), p1 = prep_pair<F>(k, wc, hb, g + 2);
        for (int t = 0; t < T; t++)
          h01[t] = _mm256_hadd_epi32(dot_pair<F>(k, p0, A[t].q + g * 32, A[t].u + g * 32),
                                     dot_pair<F>(k, p1, A[t].q + g * 32 + 64, A[t].u + g * 32 + 64));
      }
      const WP p2 = prep_pair<F>(k, wc, hb, g + 4), p3 = prep_pair<F>(k, wc, hb, g + 6);
      for (int t = 0; t < T; t++) {
        __m256i h23 = _mm256_hadd_epi32(dot_pair<F>(k, p2, A[t].q + g * 32 + 128, A[t].u + g * 32 + 128),
                                        dot_pair<F>(k, p3, A[t].q + g * 32 + 192, A[t].u + g * 32 + 192));
        __m256i h = _mm256_hadd_epi32(h01[t], h23);
#if R1_VNNI
        if constexpr (!Q8) h = _mm256_sub_epi32(h, corr_of<F>(A[t].s + g));
#endif
        acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(sw, _mm256_loadu_ps(A[t].dp + g)), acc[i][t]);
      }
    }
  }
  finish_tile<F, R, T>(k, W, r, acc, A, Y, ldy);
}

template <Format F, int T>
void rows_T(const K& k, const WeightView& W, const Act* A, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  int64_t r = r0;
  if (T == 1) {  // decode: one sequential stream per thread (measured faster than 4-row tiles)
    for (; r < r1; r++) tile<F, 1, T>(k, W, r, A, Y, ldy);
    return;
  }
  for (; r + 4 <= r1; r += 4) tile<F, 4, T>(k, W, r, A, Y, ldy);
  switch (r1 - r) {
    case 3: tile<F, 3, T>(k, W, r, A, Y, ldy); break;
    case 2: tile<F, 2, T>(k, W, r, A, Y, ldy); break;
    case 1: tile<F, 1, T>(k, W, r, A, Y, ldy); break;
    default: break;
  }
}

// Rows in blocks of 32 (the weights stay in L1/L2 while every token tile of the block passes
// over them), tokens in tiles of kT.
template <Format F>
void qmatmul_impl(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0,
                  int64_t r1) {
#if R1_VNNI
  constexpr int kT = 4;
#else
  constexpr int kT = 2;
#endif
  const K k;
  const int64_t stride = int64_t(qact_stride(W.cols));
  const int64_t rblock = n == 1 ? r1 - r0 : 16;
  for (int64_t rb = r0; rb < r1; rb += rblock) {
    const int64_t re = rb + rblock < r1 ? rb + rblock : r1;
    for (int64_t t = 0; t < n; t += kT) {
      Act A[kT];
      const int nt = int(n - t < kT ? n - t : kT);
      for (int j = 0; j < nt; j++) A[j] = act_at(act + (t + j) * stride, W.cols);
      float* Yt = Y + t * ldy;
      switch (nt) {
        case 4: if constexpr (kT >= 4) rows_T<F, 4>(k, W, A, Yt, ldy, rb, re); break;
        case 3: if constexpr (kT >= 3) rows_T<F, 3>(k, W, A, Yt, ldy, rb, re); break;
        case 2: rows_T<F, 2>(k, W, A, Yt, ldy, rb, re); break;
        default: rows_T<F, 1>(k, W, A, Yt, ldy, rb, re); break;
      }
    }
  }
}

}  // namespace
}  // namespace r1::avx2
