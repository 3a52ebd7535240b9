// How the KV cache stores one position of one kv head (a "row" of head_dim values).
//   f32: hd floats (exactness tests)
//   f16: hd IEEE halves (the default)
//   q8 : hd int8 codes, then hd / 32 f32 scales, one per group of 32: value = scale * code,
//        scale = amax / 127 (like q8 weights and llama.cpp's q8_0 cache). Codes and scales share
//        the row so a position is still one contiguous read; 1.125 bytes per value, so deep
//        contexts take 56% of f16's memory and traffic. Needs hd % 32 == 0.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "quant/half.h"

namespace r1 {

enum class KvFormat : uint8_t { F32, F16, Q8 };

inline constexpr int kKvGroup = 32;

constexpr int64_t kv_row_bytes(KvFormat f, int64_t hd) {
  switch (f) {
    case KvFormat::F32: return hd * 4;
    case KvFormat::F16: return hd * 2;
    default: return hd + hd / kKvGroup * 4;
  }
}

inline const char* kv_format_name(KvFormat f) {
  return f == KvFormat::F32 ? "f32" : f == KvFormat::F16 ? "f16" : "q8";
}

// "f32", "f16" or "q8" (the CLI checks the spelling first); false for anything else.
inline bool parse_kv_format(const std::string& s, KvFormat* f) {
  if (s == "f32") *f = KvFormat::F32;
  else if (s == "f16") *f = KvFormat::F16;
  else if (s == "q8") *f = KvFormat::Q8;
  else return false;
  return true;
}

// One q8 row from hd floats (hd % 32 == 0): codes at row[0, hd), scales after them.
inline void kv_quantize_q8(const float* x, int64_t hd, uint8_t* row) {
  for (int64_t g = 0; g < hd / kKvGroup; g++) {
    const float* xg = x + g * kKvGroup;
    float amax = 0;
    for (int i = 0; i < kKvGroup; i++) amax = std::fmax(amax, std::fabs(xg[i]));
    const float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
    // clamped so that a non-finite activation cannot make the float-to-int conversion undefined
    for (int i = 0; i < kKvGroup; i++)
      row[g * kKvGroup + i] = uint8_t(int8_t(std::nearbyint(std::fmax(-127.0f, std::fmin(127.0f, xg[i] * inv)))));
    std::memcpy(row + hd + g * 4, &d, 4);
  }
}

// One row in format f from hd floats (as KVCache::store writes it).
inline void kv_encode_row(KvFormat f, const float* x, int64_t hd, uint8_t* row) {
  switch (f) {
    case KvFormat::F16:
      for (int64_t i = 0; i < hd; i++) {
        const uint16_t h = f32_to_f16(x[i]);
        std::memcpy(row + 2 * i, &h, 2);
      }
      break;
    case KvFormat::Q8: kv_quantize_q8(x, hd, row); break;
    default: std::memcpy(row, x, size_t(hd) * 4);
  }
}

// Value i of a q8 row (the scalar definition the kernels are checked against).
inline float kv_q8_value(const uint8_t* row, int64_t hd, int64_t i) {
  float d;
  std::memcpy(&d, row + hd + i / kKvGroup * 4, 4);
  return float(int8_t(row[i])) * d;
}

}  // namespace r1
