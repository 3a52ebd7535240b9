// ggml block formats -> float. Each block struct below is the byte layout llama.cpp writes;
// `d`/`dmin`/`m` are IEEE halves. Checked against the `gguf` Python package's numpy
// dequantizers (tests/fixtures/gguf/dequant.bin, made by scripts/make_gguf_fixtures.py).
#include <cstring>

#include "core/error.h"
#include "quant/gguf.h"
#include "quant/half.h"

namespace r1 {

namespace {

constexpr int QK = 32;     // weights per block of the simple formats
constexpr int QK_K = 256;  // weights per super-block of the k-quants

#pragma pack(push, 1)
// w[j] = d * (q[j] - 8); byte j holds q[j] (low nibble) and q[j + 16] (high nibble).
struct BlockQ4_0 { uint16_t d; uint8_t qs[QK / 2]; };
static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block");
// w[j] = d * q[j] + m; nibbles as Q4_0.
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[QK / 2]; };
static_assert(sizeof(BlockQ4_1) == 20, "q4_1 block");
// 5-bit q[j] = nibble as Q4_0 | (bit j of the little-endian u32 qh) << 4; w = d * (q - 16).
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; };
static_assert(sizeof(BlockQ5_0) == 22, "q5_0 block");
// As Q5_0 with w = d * q + m.
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; };
static_assert(sizeof(BlockQ5_1) == 24, "q5_1 block");
// w[j] = d * q[j], q signed bytes.
struct BlockQ8_0 { uint16_t d; int8_t qs[QK]; };
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block");

// 16 sub-blocks of 16. scales[i]: low nibble scale, high nibble min of sub-block i.
// 2-bit codes: in each half (128 weights, 32 bytes of qs) byte l holds, at bit pair s, the code
// of weight 32 s + l. w = d * scale * q - dmin * min.
struct BlockQ2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; };
static_assert(sizeof(BlockQ2_K) == 84, "q2_K block");
// 16 sub-blocks of 16 with signed 6-bit scales (stored +32): low 4 bits of scale i in nibble
// (i / 8) of scales[i % 8], high 2 bits at bit pair (i / 4) of scales[8 + i % 4]. Low 2 bits of
// each code as Q2_K; the third bit of weight 32 s + l of half h is bit (4h + s) of hmask[l]
// (set: +0, clear: -4). w = d * (scale - 32) * q, q in [-4, 3].
struct BlockQ3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
static_assert(sizeof(BlockQ3_K) == 110, "q3_K block");
// 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes (see scale_min_k4).
// Each 64 weights use 32 bytes of qs: low nibbles the first 32, high nibbles the next 32.
// w = d * scale * q - dmin * min.
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; };
static_assert(sizeof(BlockQ4_K) == 144, "q4_K block");
// As Q4_K plus a fifth bit: for 64-weight chunk c, bit 2c of qh[l] for weight l of the chunk,
// bit 2c + 1 for weight 32 + l.
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
static_assert(sizeof(BlockQ5_K) == 176, "q5_K block");
// 16 sub-blocks of 16 with int8 scales. Per 128 weights: 64 bytes of ql (low 4 bits), 32 of
// qh (high 2 bits). Weight l + 32 k (k = 0..3) of the half: low nibble of ql[l] (k = 0),
// ql[l + 32] (k = 1), high nibbles of the same (k = 2, 3); high bits at pair k of qh[l].
// w = d * scale * (q - 32).
struct BlockQ6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
static_assert(sizeof(BlockQ6_K) == 210, "q6_K block");
#pragma pack(pop)

inline float h2f(uint16_t h) { return f16_to_f32(h); }

void deq_q4_0(const BlockQ4_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < QK / 2; j++) {
    y[j] = d * float((b.qs[j] & 15) - 8);
    y[j + QK / 2] = d * float((b.qs[j] >> 4) - 8);
  }
}

void deq_q4_1(const BlockQ4_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  for (int j = 0; j < QK / 2; j++) {
    y[j] = d * float(b.qs[j] & 15) + m;
    y[j + QK / 2] = d * float(b.qs[j] >> 4) + m;
  }
}

template <class B>
void five_bit_codes(const B& b, int* q) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < QK / 2; j++) {
    q[j] = (b.qs[j] & 15) | int((qh >> j) & 1) << 4;
    q[j + QK / 2] = (b.qs[j] >> 4) | int((qh >> (j + QK / 2)) & 1) << 4;
  }
}

void deq_q5_0(const BlockQ5_0& b, float* y) {
  int q[QK];
  five_bit_codes(b, q);
  const float d = h2f(b.d);
  for (int j = 0; j < QK; j++) y[j] = d * float(q[j] - 16);
}

void deq_q5_1(const BlockQ5_1& b, float* y) {
  int q[QK];
  five_bit_codes(b, q);
  const float d = h2f(b.d), m = h2f(b.m);
  for (int j = 0; j < QK; j++) y[j] = d * float(q[j]) + m;
}

void deq_q8_0(const BlockQ8_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < QK; j++) y[j] = d * float(b.qs[j]);
}

void deq_q2_k(const BlockQ2_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int h = 0; h < 2; h++)        // halves of 128
    for (int s = 0; s < 4; s++)      // bit pair
      for (int g = 0; g < 2; g++) {  // 16-weight sub-block within the 32 bytes
        const int sb = h * 8 + s * 2 + g;
        const float dl = d * float(b.scales[sb] & 15), ml = dmin * float(b.scales[sb] >> 4);
        const uint8_t* q = b.qs + h * 32 + g * 16;
        float* out = y + h * 128 + s * 32 + g * 16;
        for (int l = 0; l < 16; l++) out[l] = dl * float((q[l] >> (2 * s)) & 3) - ml;
      }
}

void deq_q3_k(const BlockQ3_K& b, float* y) {
  const float d = h2f(b.d);
  int sc[16];
  for (int i = 0; i < 16; i++) {
    const int lo = (b.scales[i % 8] >> (4 * (i / 8))) & 15;
    const int hi = (b.scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    sc[i] = (lo | hi << 4) - 32;
  }
  for (int h = 0; h < 2; h++)
    for (int s = 0; s < 4; s++)
      for (int g = 0; g < 2; g++) {
        const int sb = h * 8 + s * 2 + g;
        const float dl = d * float(sc[sb]);
        const uint8_t* q = b.qs + h * 32 + g * 16;
        const uint8_t* hm = b.hmask + g * 16;
        const int bit = 4 * h + s;
        float* out = y + h * 128 + s * 32 + g * 16;
        for (int l = 0; l < 16; l++) {
          const int v = int((q[l] >> (2 * s)) & 3) - ((hm[l] >> bit) & 1 ? 0 : 4);
          out[l] = dl * float(v);
        }
      }
}

// The 8 (scale, min) pairs of Q4_K/Q5_K, 6 bits each: pairs 0-3 in the low 6 bits of bytes
// 0-3 (scales) and 4-7 (mins); pairs 4-7 keep their low 4 bits in the nibbles of bytes 8-11
// and their top 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins).
void scale_min_k4(int j, const uint8_t* s, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
    *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}

void deq_q4_k(const BlockQ4_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int c = 0; c < 4; c++) {  // 64-weight chunks
    int s0, m0, s1, m1;
    scale_min_k4(2 * c, b.scales, &s0, &m0);
    scale_min_k4(2 * c + 1, b.scales, &s1, &m1);
    const float d0 = d * float(s0), n0 = dmin * float(m0), d1 = d * float(s1), n1 = dmin * float(m1);
    const uint8_t* q = b.qs + 32 * c;
    for (int l = 0; l < 32; l++) {
      y[64 * c + l] = d0 * float(q[l] & 15) - n0;
      y[64 * c + 32 + l] = d1 * float(q[l] >> 4) - n1;
    }
  }
}

void deq_q5_k(const BlockQ5_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int c = 0; c < 4; c++) {
    int s0, m0, s1, m1;
    scale_min_k4(2 * c, b.scales, &s0, &m0);
    scale_min_k4(2 * c + 1, b.scales, &s1, &m1);
    const float d0 = d * float(s0), n0 = dmin * float(m0), d1 = d * float(s1), n1 = dmin * float(m1);
    const uint8_t* q = b.qs + 32 * c;
    for (int l = 0; l < 32; l++) {
      const int lo = (q[l] & 15) | ((b.qh[l] >> (2 * c)) & 1) << 4;
      const int hi = (q[l] >> 4) | ((b.qh[l] >> (2 * c + 1)) & 1) << 4;
      y[64 * c + l] = d0 * float(lo) - n0;
      y[64 * c + 32 + l] = d1 * float(hi) - n1;
    }
  }
}

void deq_q6_k(const BlockQ6_K& b, float* y) {
  const float d = h2f(b.d);
  for (int h = 0; h < 2; h++) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    const int8_t* sc = b.scales + 8 * h;
    float* out = y + 128 * h;
    for (int l = 0; l < 32; l++) {
      const int g = l / 16;
      const int q0 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
      const int q1 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
      const int q2 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
      const int q3 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
      out[l] = d * float(sc[g]) * float(q0);
      out[l + 32] = d * float(sc[g + 2]) * float(q1);
      out[l + 64] = d * float(sc[g + 4]) * float(q2);
      out[l + 96] = d * float(sc[g + 6]) * float(q3);
    }
  }
}

template <class B, int N>
void blocks(const uint8_t* src, uint64_t n, float* out, void (*f)(const B&, float*)) {
  for (uint64_t i = 0; i < n / N; i++) {
    B b;
    std::memcpy(&b, src + i * sizeof(B), sizeof(B));  // the mapping need not be aligned for B
    f(b, out + i * N);
  }
}

}  // namespace

void gguf_dequantize(GgmlType t, const uint8_t* src, uint64_t n, float* out) {
  const GgmlTypeInfo* ti = ggml_type_info(uint32_t(t));
  if (!ti || n % ti->block != 0) fail_input("gguf_dequantize: bad type or element count");
  switch (t) {
    case GgmlType::F32: std::memcpy(out, src, n * 4); return;
    case GgmlType::F16: return f16_bytes_to_f32(src, n, out);
    case GgmlType::BF16: return bf16_bytes_to_f32(src, n, out);
    case GgmlType::Q4_0: return blocks<BlockQ4_0, QK>(src, n, out, deq_q4_0);
    case GgmlType::Q4_1: return blocks<BlockQ4_1, QK>(src, n, out, deq_q4_1);
    case GgmlType::Q5_0: return blocks<BlockQ5_0, QK>(src, n, out, deq_q5_0);
    case GgmlType::Q5_1: return blocks<BlockQ5_1, QK>(src, n, out, deq_q5_1);
    case GgmlType::Q8_0: return blocks<BlockQ8_0, QK>(src, n, out, deq_q8_0);
    case GgmlType::Q2_K: return blocks<BlockQ2_K, QK_K>(src, n, out, deq_q2_k);
    case GgmlType::Q3_K: return blocks<BlockQ3_K, QK_K>(src, n, out, deq_q3_k);
    case GgmlType::Q4_K: return blocks<BlockQ4_K, QK_K>(src, n, out, deq_q4_k);
    case GgmlType::Q5_K: return blocks<BlockQ5_K, QK_K>(src, n, out, deq_q5_k);
    case GgmlType::Q6_K: return blocks<BlockQ6_K, QK_K>(src, n, out, deq_q6_k);
  }
}

}  // namespace r1
