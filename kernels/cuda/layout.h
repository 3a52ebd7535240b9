// How quantized weights sit on the GPU for the fused kernels (CudaKernels::Fused,
// models/cuda_batch.h), the one function that puts a file's matrix into that layout, and the
// word decoders the kernels use. Plain C++ (host and device): the upload and the tests use it on
// the host, so a wrong nibble order or bit trick fails a CPU test.
//
// The fused products run on int8 tensor cores (mma m16n8k32: one group of 32 weights of 16 rows
// per instruction). Thread q (0..3) of a row's quad holds, per group, the weights 4q..4q+3 and
// 16+4q..16+4q+3: its "fragment words". The layout stores each row so that a thread's words are
// contiguous and a quad's are one coalesced read:
//   - A row's G = cols/32 groups form P = fused_chunks(G) chunks of Cg = G/P groups (the
//     products sum a chunk's groups in order, then the chunks in order: see gemv.cu).
//   - A chunk's groups go in blocks of 4 (the last holds r = Cg % 4 if that is not 0); a block of
//     r groups is stored thread after thread: q = 0..3, each with its fragment words of the r
//     groups (q4 / q5: one word per group, q8: the r words of weights 4q.. then the r of 16+4q..).
//   - q4 fragment word: nibbles 0-3 = codes of weights 4q..4q+3, nibbles 4-7 = codes of
//     16+4q..16+4q+3, so one codebook lookup gives both int8 halves of the fragment.
//     q5 fragment word: the file's word q of the group as it is (byte k = weight 4q+k in its low
//     nibble, 16+4q+k in its high); the fifth bits go to a stream of their own after all rows'
//     nibbles: rows x G little-endian words (bit j = bit 4 of weight j's code).
//     q8 fragment words: the group's bytes 4q..4q+3, and 16+4q..16+4q+3.
// Every format keeps the file's byte count and its scale stream (rows x G halves, at the file's
// offset, row-major).
#pragma once
#include <cstdint>
#include <cstring>

#include "quant/formats.h"

#ifdef __CUDACC__
#define R1_HOST_DEVICE __host__ __device__
#else
#define R1_HOST_DEVICE
#endif

namespace r1::cuda {

// Chunks per row: the largest power of two up to 16 that divides the row's groups.
R1_HOST_DEVICE constexpr int fused_chunks(int64_t groups) {
  int p = 16;
  while (groups % p) p >>= 1;
  return p;
}

// Bytes of one group's codes in a row of the codes stream (q5: its nibbles only).
R1_HOST_DEVICE constexpr int group_code_bytes(Format f) { return f == Format::Q8 ? 32 : 16; }

// Byte offset, within a row of the codes stream, of fragment word `word` (0..3: thread q; q8:
// 0..7, words 4..7 the upper halves) of group g, for a row of G groups.
R1_HOST_DEVICE inline int64_t fragment_word_offset(Format f, int64_t G, int64_t g, int word) {
  const int64_t Cg = G / fused_chunks(G), c = g / Cg, gi = g % Cg, b0 = gi / 4 * 4;
  const int64_t r = Cg - b0 < 4 ? Cg - b0 : 4, j = gi - b0;  // groups in this block, and g's place
  const int64_t base = (c * Cg + b0) * group_code_bytes(f);
  if (f == Format::Q8) return base + ((word % 4) * 2 * r + (word / 4) * r + j) * 4;
  return base + (word * r + j) * 4;
}

// Where the fifth-bit words of a q5 matrix start in its device codes stream.
R1_HOST_DEVICE constexpr uint64_t q5_device_hbits_offset(uint64_t rows, uint64_t cols) { return rows * cols / 2; }

// The q4 fragment word of thread q from a file-layout group (byte j: weight j low, j + 16 high).
inline uint32_t q4_fragment_word(const uint8_t* group, int q) {
  uint32_t w = 0;
  for (int k = 0; k < 4; k++) {
    w |= uint32_t(group[4 * q + k] & 15) << (4 * k);
    w |= uint32_t(group[4 * q + k] >> 4) << (16 + 4 * k);
  }
  return w;
}

// w (file layout) -> dst in the device layout; dst holds tensor_bytes(w.fmt, rows, cols) bytes.
inline void to_device_layout(const WeightView& w, uint8_t* dst) {
  const uint64_t rows = uint64_t(w.rows), cols = uint64_t(w.cols), G = cols / 32;
  std::memcpy(dst, w.codes, tensor_bytes(w.fmt, rows, cols));  // scales (and float codes) stay
  if (!is_quantized(w.fmt)) return;
  const uint64_t file_row = codes_bytes(w.fmt, 1, cols), dev_row = uint64_t(group_code_bytes(w.fmt)) * G;
  for (uint64_t r = 0; r < rows; r++) {
    const uint8_t* src = w.codes + r * file_row;
    uint8_t* row = dst + r * dev_row;
    for (uint64_t g = 0; g < G; g++) {
      const uint8_t* grp = src + g * group_code_bytes(w.fmt);
      for (int word = 0; word < (w.fmt == Format::Q8 ? 8 : 4); word++) {
        uint32_t v;
        if (w.fmt == Format::Q4) v = q4_fragment_word(grp, word);
        else std::memcpy(&v, grp + (w.fmt == Format::Q8 ? (word % 4) * 4 + (word / 4) * 16 : word * 4), 4);
        std::memcpy(row + fragment_word_offset(w.fmt, int64_t(G), int64_t(g), word), &v, 4);
      }
    }
    if (w.fmt == Format::Q5)
      std::memcpy(dst + q5_device_hbits_offset(rows, cols) + r * (cols / 8), src + cols / 2, cols / 8);
  }
}

// --- decoding fragment words into int8 levels (the kernels' inner loop) ---

// The q4 codebook as four words of int8 levels (byte permutes look codes up in them).
constexpr uint32_t pack_levels(int a, int b, int c, int d) {
  return uint32_t(uint8_t(int8_t(a))) | uint32_t(uint8_t(int8_t(b))) << 8 | uint32_t(uint8_t(int8_t(c))) << 16 |
         uint32_t(uint8_t(int8_t(d))) << 24;
}
constexpr uint32_t kQ4T0 = pack_levels(kQ4Levels[0], kQ4Levels[1], kQ4Levels[2], kQ4Levels[3]);
constexpr uint32_t kQ4T1 = pack_levels(kQ4Levels[4], kQ4Levels[5], kQ4Levels[6], kQ4Levels[7]);
constexpr uint32_t kQ4T2 = pack_levels(kQ4Levels[8], kQ4Levels[9], kQ4Levels[10], kQ4Levels[11]);
constexpr uint32_t kQ4T3 = pack_levels(kQ4Levels[12], kQ4Levels[13], kQ4Levels[14], kQ4Levels[15]);

// PTX prmt.b32 in its default mode: byte n of the result is byte s[4n+2:4n] of {b, a} (a's bytes
// 0-3, b's 4-7), sign-replicated when s bit 4n+3 is set; bits 16-31 of s are ignored.
R1_HOST_DEVICE inline uint32_t prmt(uint32_t a, uint32_t b, uint32_t s) {
#ifdef __CUDA_ARCH__
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(s));
  return d;
#else
  const uint64_t src = uint64_t(b) << 32 | a;
  uint32_t d = 0;
  for (int n = 0; n < 4; n++) {
    const uint32_t sel = (s >> (4 * n)) & 15;
    uint32_t byte = uint32_t(src >> (8 * (sel & 7))) & 0xFF;
    if (sel & 8) byte = (byte & 0x80) ? 0xFF : 0x00;
    d |= byte << (8 * n);
  }
  return d;
#endif
}

// Levels of the eight codes of a q4 word, nibbles 0-3 in lo and 4-7 in hi (as int8 bytes). The
// codes are masked to 3 bits once per word (a selector's bit 3 would replicate the sign), the two
// tables give codes 0-7 and 8-15, and a last permute takes each byte from one of them by the
// code's bit 3. (CUDA's __byte_perm would mask its selector on every call.)
R1_HOST_DEVICE inline void q4_word_levels(uint32_t w, uint32_t& lo, uint32_t& hi) {
  const uint32_t idx = w & 0x77777777u;
  const uint32_t pick = ((w >> 1) & 0x44444444u) | 0x32103210u;
  const uint32_t a0 = prmt(kQ4T0, kQ4T1, idx), b0 = prmt(kQ4T2, kQ4T3, idx);
  const uint32_t a1 = prmt(kQ4T0, kQ4T1, idx >> 16), b1 = prmt(kQ4T2, kQ4T3, idx >> 16);
  lo = prmt(a0, b0, pick);
  hi = prmt(a1, b1, pick >> 16);
}

// Bits 0..3 of t to bit 4 of bytes 0..3 (the partial products land on distinct bits: no carries).
R1_HOST_DEVICE inline uint32_t spread4(uint32_t t) { return ((t & 0xFu) * 0x02040810u) & 0x10101010u; }

// Levels (code - 16) of a q5 word in the file's nibble order (byte k: weight 4i+k in its low
// nibble, 4i+16+k in its high): weights 4i..4i+3 in lo, 4i+16..4i+19 in hi, as int8 bytes; hb =
// the group's fifth-bit word >> 4i. A level is the nibble when the fifth bit is set, and
// nibble - 16 = nibble | 0xF0 (as int8) when it is not.
R1_HOST_DEVICE inline void q5_word_levels(uint32_t w, uint32_t hb, uint32_t& lo, uint32_t& hi) {
  lo = (w & 0x0F0F0F0Fu) | ((spread4(hb) ^ 0x10101010u) * 15u);
  hi = ((w >> 4) & 0x0F0F0F0Fu) | ((spread4(hb >> 16) ^ 0x10101010u) * 15u);
}

// An int32 with |i| < 2^22 as a float, exactly, without the (slow) conversion instruction: the
// integer added to the bits of 1.5 * 2^23 lands in the mantissa.
R1_HOST_DEVICE inline float small_int_to_float(int32_t i) {
#ifdef __CUDA_ARCH__
  return __int_as_float(i + 0x4B400000) - 12582912.0f;
#else
  uint32_t b = uint32_t(i + 0x4B400000);
  float f;
  std::memcpy(&f, &b, 4);
  return f - 12582912.0f;
#endif
}

}  // namespace r1::cuda
