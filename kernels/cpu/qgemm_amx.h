// The q4/q5/q8 GEMM on AMX int8 tiles, included by qgemm_amx_avx2.cpp (the hardware tile
// instructions) and by tests/amx_emulated.cpp (the same code on a scalar model of the tiles, so
// that its layouts and its float epilogue are checked on CPUs without AMX). The includer
// defines R1_TILE_LOADCFG / ZERO / LOAD / DP / STORE / RELEASE and opens the ISA region
// (AVX-512 for the epilogue) before including this.
//
// Every (row, token) result is bitwise the GEMV's (qtile_avx2.h): the tiles give each group's
// exact integer sum sum_i level_i * x_i (signed weights x signed activations: no +128 offset to
// correct), and the float steps are the GEMV's, value by value and in the same order:
//   per chunk of 8 groups, lane L (group kP[L]):  acc_L = fma(float(isum), sw * dx, acc_L)
//   then ((acc_0 + acc_4) + (acc_2 + acc_6)) + ((acc_1 + acc_5) + (acc_3 + acc_7))   (hsum_ps)
//   plus the tail groups, tail = fma(sw * dx, float(isum), tail) in order from 0.
// Only the vectors differ: here a vector holds 16 rows of one (token, lane), there the 8 lanes
// of one (row, token).
//
// Tiles (palette 1; numbers are literals, as the intrinsics need): 0, 1 = C0, C1, int32 [16 tokens][16 rows] of row tiles 0 and 1;
//   2 = A, activations [16 tokens][32 bytes] (one group, natural order, straight from the
//   activation buffer at the token stride); 3, 4 = B0, B1, weights of one group for 16 rows each,
//   as the dot instruction reads them: [8][16 rows][4 bytes] (bytes 4k..4k+3 of each row in
//   row k of the tile).
// One tdpbssd per group and row tile: K is one group (32 bytes, half the tile's depth), since
// each group's sum meets its own scale.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx2.h"
#include "quant/formats.h"

namespace r1::avx2 {
namespace {

constexpr int kAmxTok = 16;                 // tokens per A tile
constexpr int kAmxRows = 16;                // rows per B tile
constexpr int64_t kAmxTileBytes = 512;      // one group of 16 rows: 8 x 64 bytes

// ldtilecfg's 64-byte operand. Static and const, in memory the program never writes: GCC 12's
// _tile_loadconfig tells the compiler it reads 8 bytes, so a config built in a local could be
// half-stored when the instruction runs (llama.cpp's SIGILL at tilezero).
struct alignas(64) AmxConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(AmxConfig) == 64, "ldtilecfg reads 64 bytes");
alignas(64) static const AmxConfig kAmxConfig = {
    1, 0, {},
    {64, 64, 32, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {16, 16, 16, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};

// Scratch of one call: the unpacked weights of a 32-row block, their scales, the tile results
// of one chunk and the lane accumulators of one token tile.
struct AmxScratch {
  int8_t* wt;     // [2 row tiles][G slots][512]
  float* sw;      // [G slots][32 rows]
  int32_t* cb;    // [8 lanes][2 row tiles][16 tokens][16 rows]
  float* acc;     // [16 tokens][8 lanes][32 rows]
  float* tail;    // [16 tokens][32 rows]
};
inline int64_t amx_a64(int64_t x) { return (x + 63) / 64 * 64; }
inline int64_t amx_scratch_size(int64_t cols) {
  const int64_t G = cols / kGroup;
  return amx_a64(2 * G * kAmxTileBytes) + amx_a64(G * 32 * 4) + 8 * 2 * 256 * 4 + kAmxTok * 8 * 32 * 4 +
         kAmxTok * 32 * 4;
}
inline AmxScratch amx_scratch_at(void* base, int64_t cols) {
  const int64_t G = cols / kGroup;
  auto* p = static_cast<uint8_t*>(base);
  AmxScratch s;
  s.wt = reinterpret_cast<int8_t*>(p);
  p += amx_a64(2 * G * kAmxTileBytes);
  s.sw = reinterpret_cast<float*>(p);
  p += amx_a64(G * 32 * 4);
  s.cb = reinterpret_cast<int32_t*>(p);
  p += 8 * 2 * 256 * 4;
  s.acc = reinterpret_cast<float*>(p);
  p += kAmxTok * 8 * 32 * 4;
  s.tail = reinterpret_cast<float*>(p);
  return s;
}

// Slot of a group: chunk groups in lane order (slot 8c + L holds group 8c + kP[L]), so the
// chunk loop reads slots in sequence; tail groups keep their index.
inline int64_t amx_group_of_slot(int64_t s, int64_t G8) { return s < G8 * 8 ? s / 8 * 8 + kP[s % 8] : s; }

// Rows [r, r + nr) (nr <= 32) as tile B operands: signed levels, rows past nr zero, and their
// scales as floats.
template <Format F>
void amx_unpack(const K& k, const WeightView& W, int64_t r, int64_t nr, const AmxScratch& s) {
  const int64_t G = W.cols / kGroup, G8 = G / 8, rb = row_bytes<F>(W.cols);
  const __m256i c80 = _mm256_set1_epi8(char(0x80)), c16 = _mm256_set1_epi8(16);
  for (int64_t slot = 0; slot < G; slot++) {
    const int64_t g = amx_group_of_slot(slot, G8);
    for (int h = 0; h < 2; h++) {
      __m256i v[16];
      for (int n = 0; n < kAmxRows; n++) {
        const int64_t i = h * kAmxRows + n;
        if (i >= nr) {
          v[n] = _mm256_setzero_si256();
          continue;
        }
        const uint8_t* wc = W.codes + (r + i) * rb;
        const __m256i c = group_codes<F>(k, wc, hbits_of<F>(wc, W.cols), g);
        if constexpr (F == Format::Q4) v[n] = _mm256_xor_si256(_mm256_shuffle_epi8(k.lut, c), c80);  // level
        else if constexpr (F == Format::Q5) v[n] = _mm256_sub_epi8(c, c16);
        else v[n] = c;
      }
      // [16 rows][8 dwords] -> [8 dwords][16 rows]: two 8 x 8 transposes, one per half of a tile row
      transpose8(v);
      transpose8(v + 8);
      int8_t* B = s.wt + (h * G + slot) * kAmxTileBytes;
      for (int j = 0; j < 8; j++) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(B + j * 64), v[j]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(B + j * 64 + 32), v[8 + j]);
      }
    }
    for (int64_t i = 0; i < 32; i++) s.sw[slot * 32 + i] = i < nr ? h2f(W.scales[(r + i) * G + g]) : 0.0f;
  }
}

// One group (slot) for tokens [t0, t0 + 16) of the natural codes `an` (token stride `st`):
// C0 (and C1) = the group's integer sums, stored at cb ([2][16 tokens][16 rows]).
template <bool Two>
inline void amx_group(const int8_t* an, int64_t st, const int8_t* b0, const int8_t* b1, int32_t* cb) {
  R1_TILE_LOAD(2, an, st);
  R1_TILE_LOAD(3, b0, 64);
  R1_TILE_ZERO(0);
  R1_TILE_DP(0, 2, 3);
  R1_TILE_STORE(0, cb, 64);
  if constexpr (Two) {
    R1_TILE_LOAD(4, b1, 64);
    R1_TILE_ZERO(1);
    R1_TILE_DP(1, 2, 4);
    R1_TILE_STORE(1, cb + 256, 64);
  }
}

// Y[t, r + i] for a block of nr <= 32 unpacked rows and tokens [t0, t0 + nt), nt <= 16.
template <bool Two>
void amx_block(const WeightView& W, int64_t r, int64_t nr, const uint8_t* act, int64_t stride, int64_t t0, int nt,
               const AmxScratch& s, float* Y, int64_t ldy) {
  const int64_t G = W.cols / kGroup, G8 = G / 8;
  constexpr int H = Two ? 2 : 1;
  const int64_t nat = int64_t(qact_stride(W.cols));  // natural codes after the GEMV layout
  const int8_t* an = reinterpret_cast<const int8_t*>(act + t0 * stride + nat);
  Act A[kAmxTok];
  for (int t = 0; t < nt; t++) A[t] = act_at(act + (t0 + t) * stride, W.cols);
  const __m512 z = _mm512_setzero_ps();
  for (int64_t i = 0; i < int64_t(kAmxTok) * 8 * 32; i += 16) _mm512_store_ps(s.acc + i, z);
  for (int64_t i = 0; i < int64_t(kAmxTok) * 32; i += 16) _mm512_store_ps(s.tail + i, z);
  auto tiles = [&](int64_t slot, int32_t* cb) {
    const int64_t g = amx_group_of_slot(slot, G8);
    amx_group<Two>(an + g * 32, stride, s.wt + slot * kAmxTileBytes, s.wt + (G + slot) * kAmxTileBytes, cb);
  };
  for (int64_t c = 0; c < G8; c++) {
    for (int L = 0; L < 8; L++) tiles(c * 8 + L, s.cb + L * 512);
    for (int t = 0; t < nt; t++)
      for (int L = 0; L < 8; L++) {
        const __m512 dx = _mm512_set1_ps(A[t].dp[c * 8 + L]);  // lane order, as the slots
        for (int h = 0; h < H; h++) {
          const __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(s.cb + L * 512 + h * 256 + t * 16));
          const __m512 sd = _mm512_mul_ps(_mm512_load_ps(s.sw + (c * 8 + L) * 32 + h * 16), dx);
          float* a = s.acc + (t * 8 + L) * 32 + h * 16;
          _mm512_store_ps(a, _mm512_fmadd_ps(v, sd, _mm512_load_ps(a)));
        }
      }
  }
  for (int64_t g = G8 * 8; g < G; g++) {  // tail groups, in order
    tiles(g, s.cb);
    for (int t = 0; t < nt; t++) {
      const __m512 dx = _mm512_set1_ps(A[t].dp[g]);
      for (int h = 0; h < H; h++) {
        const __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(s.cb + h * 256 + t * 16));
        const __m512 sd = _mm512_mul_ps(_mm512_load_ps(s.sw + g * 32 + h * 16), dx);
        float* a = s.tail + t * 32 + h * 16;
        _mm512_store_ps(a, _mm512_fmadd_ps(sd, v, _mm512_load_ps(a)));
      }
    }
  }
  for (int t = 0; t < nt; t++)
    for (int h = 0; h < H; h++) {
      const int64_t left = nr - h * 16;
      if (left <= 0) break;
      const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
      const float* a = s.acc + t * 8 * 32 + h * 16;
      auto lane = [&](int L) { return _mm512_load_ps(a + L * 32); };
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(lane(0), lane(4)), _mm512_add_ps(lane(2), lane(6))),
                                       _mm512_add_ps(_mm512_add_ps(lane(1), lane(5)), _mm512_add_ps(lane(3), lane(7))));
      _mm512_mask_storeu_ps(Y + (t0 + t) * ldy + r + h * 16, m,
                            _mm512_add_ps(sum, _mm512_load_ps(s.tail + t * 32 + h * 16)));
    }
}

template <Format F>
void amx_impl(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
              void* scratch) {
  const K k;
  const AmxScratch s = amx_scratch_at(scratch, W.cols);
  const int64_t stride = int64_t(qact_amx_stride(W.cols));
  R1_TILE_LOADCFG(&kAmxConfig);
  for (int64_t r = r0; r < r1; r += 32) {
    const int64_t nr = r1 - r < 32 ? r1 - r : 32;
    amx_unpack<F>(k, W, r, nr, s);
    for (int64_t t0 = 0; t0 < n; t0 += kAmxTok) {
      const int nt = int(n - t0 < kAmxTok ? n - t0 : kAmxTok);
      if (nr > kAmxRows) amx_block<true>(W, r, nr, act, stride, t0, nt, s, Y, ldy);
      else amx_block<false>(W, r, nr, act, stride, t0, nt, s, Y, ldy);
    }
  }
  R1_TILE_RELEASE();
}

inline void amx_dispatch(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0,
                         int64_t r1, void* scratch) {
  switch (W.fmt) {
    case Format::Q4: amx_impl<Format::Q4>(W, act, n, Y, ldy, r0, r1, scratch); break;
    case Format::Q5: amx_impl<Format::Q5>(W, act, n, Y, ldy, r0, r1, scratch); break;
    default: amx_impl<Format::Q8>(W, act, n, Y, ldy, r0, r1, scratch); break;
  }
}

}  // namespace
}  // namespace r1::avx2
