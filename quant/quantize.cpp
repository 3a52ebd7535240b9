#include "quant/quantize.h"

#include <cmath>
#include <cstring>

#include "quant/half.h"

namespace r1 {
namespace {

// Nearest q4 code for v (in level units, roughly [-127, 127]): a table on floor(v) gives a
// candidate; the neighbours settle the ties exactly.
struct Q4Nearest {
  uint8_t lut[256];
  Q4Nearest() {
    for (int i = 0; i < 256; i++) {
      float v = float(i - 128) + 0.5f;
      int best = 0;
      for (int c = 1; c < 16; c++)
        if (std::fabs(v - kQ4Levels[c]) < std::fabs(v - kQ4Levels[best])) best = c;
      lut[i] = uint8_t(best);
    }
  }
  int operator()(float v) const {
    float f = std::floor(v);
    int i = f < -128 ? 0 : f > 127 ? 255 : int(f) + 128;
    int c = lut[i];
    if (c < 15 && std::fabs(v - kQ4Levels[c + 1]) < std::fabs(v - kQ4Levels[c])) c++;
    if (c > 0 && std::fabs(v - kQ4Levels[c - 1]) < std::fabs(v - kQ4Levels[c])) c--;
    return c;
  }
};
const Q4Nearest kNearest;

// Squared error of group x at scale s (levels), and the codes that reach it.
float q4_error(const float* x, float s, uint8_t* codes) {
  float err = 0, inv = s != 0 ? 1.0f / s : 0;
  for (int i = 0; i < kGroup; i++) {
    int c = kNearest(x[i] * inv);
    codes[i] = uint8_t(c);
    float d = x[i] - s * kQ4Levels[c];
    err += d * d;
  }
  return err;
}

void pack_nibbles(const uint8_t* codes, uint8_t* nib16) {
  for (int j = 0; j < 16; j++) nib16[j] = uint8_t(codes[j] | (codes[j + 16] << 4));
}

uint16_t quantize_q8_group(const float* x, int8_t* q) {
  float amax = 0;
  for (int i = 0; i < kGroup; i++) amax = std::fmax(amax, std::fabs(x[i]));
  uint16_t sh = f32_to_f16(amax / 127.0f);
  float s = f16_to_f32(sh), inv = s != 0 ? 1.0f / s : 0;
  for (int i = 0; i < kGroup; i++) {
    float v = std::nearbyint(x[i] * inv);
    q[i] = int8_t(v > 127 ? 127 : v < -127 ? -127 : v);
  }
  return sh;
}

}  // namespace

uint16_t quantize_q4_group(const float* x, uint8_t* nib16) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < kGroup; i++)
    if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); vmax = x[i]; }
  uint8_t codes[kGroup], best_codes[kGroup];
  if (amax == 0) {
    std::memset(nib16, 0x88, 16);  // code 8 is the level nearest zero
    return 0;
  }
  // The codebook is asymmetric (-127 .. 118): try both signs of the scale, a sweep of scales
  // around the absmax one, then refine each best candidate by least squares on its codes.
  float best_err = INFINITY, best_s = 0;
  const float base = vmax / -127.0f;  // maps the extreme weight onto level -127
  for (int sign = -1; sign <= 1; sign += 2) {
    for (int k = -6; k <= 10; k++) {
      float s = sign * base * (1.0f + 0.02f * k);
      if (sign > 0 && k == -6) s = sign * base;  // keep the plain absmax candidate in the set
      float err = q4_error(x, s, codes);
      // least-squares scale for these codes, then re-assign once
      float num = 0, den = 0;
      for (int i = 0; i < kGroup; i++) { num += x[i] * kQ4Levels[codes[i]]; den += float(kQ4Levels[codes[i]]) * kQ4Levels[codes[i]]; }
      if (den > 0) {
        float s2 = num / den;
        uint8_t c2[kGroup];
        float e2 = q4_error(x, s2, c2);
        if (e2 < err) { err = e2; s = s2; std::memcpy(codes, c2, kGroup); }
      }
      if (err < best_err) { best_err = err; best_s = s; std::memcpy(best_codes, codes, kGroup); }
    }
  }
  // The stored scale is f16: re-assign codes for the rounded scale.
  uint16_t sh = f32_to_f16(best_s);
  q4_error(x, f16_to_f32(sh), best_codes);
  pack_nibbles(best_codes, nib16);
  return sh;
}

void quantize_rows(Format f, const float* w, int64_t rows, int64_t cols, int64_t r0, int64_t r1, void* out) {
  WeightView v = make_view(f, uint64_t(rows), uint64_t(cols), out);
  auto* codes = const_cast<uint8_t*>(v.codes);
  auto* scales = const_cast<uint16_t*>(v.scales);
  const int64_t groups = cols / kGroup;
  for (int64_t r = r0; r < r1; r++) {
    const float* x = w + r * cols;
    switch (f) {
      case Format::F32: std::memcpy(codes + r * cols * 4, x, size_t(cols) * 4); break;
      case Format::F16: {
        auto* o = reinterpret_cast<uint16_t*>(codes) + r * cols;
        for (int64_t i = 0; i < cols; i++) o[i] = f32_to_f16(x[i]);
        break;
      }
      case Format::BF16: {
        auto* o = reinterpret_cast<uint16_t*>(codes) + r * cols;
        for (int64_t i = 0; i < cols; i++) o[i] = f32_to_bf16(x[i]);
        break;
      }
      case Format::Q8:
        for (int64_t g = 0; g < groups; g++)
          scales[r * groups + g] =
              quantize_q8_group(x + g * kGroup, reinterpret_cast<int8_t*>(codes) + r * cols + g * kGroup);
        break;
      case Format::Q4:
        for (int64_t g = 0; g < groups; g++)
          scales[r * groups + g] = quantize_q4_group(x + g * kGroup, codes + (r * cols + g * kGroup) / 2);
        break;
    }
  }
}

void quantize_matrix(Format f, const float* w, int64_t rows, int64_t cols, void* out) {
  quantize_rows(f, w, rows, cols, 0, rows, out);
}

void quantize_q4_absmax_rows(const float* w, int64_t rows, int64_t cols, void* out) {
  WeightView v = make_view(Format::Q4, uint64_t(rows), uint64_t(cols), out);
  auto* codes = const_cast<uint8_t*>(v.codes);
  auto* scales = const_cast<uint16_t*>(v.scales);
  const int64_t groups = cols / kGroup;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < groups; g++) {
      const float* x = w + r * cols + g * kGroup;
      float amax = 0, vmax = 0;
      for (int i = 0; i < kGroup; i++)
        if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); vmax = x[i]; }
      uint16_t sh = f32_to_f16(vmax / -127.0f);
      uint8_t c[kGroup];
      q4_error(x, f16_to_f32(sh), c);
      pack_nibbles(c, codes + (r * cols + g * kGroup) / 2);
      scales[r * groups + g] = sh;
    }
}

}  // namespace r1
