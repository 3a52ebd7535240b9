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
    for (int i = 0; i < 512; i++) {
      float v = (float(i - 256) + 0.5f) * 0.5f;
      int best = 0;
      for (int c = 1; c < 16; c++)
        if (std::fabs(v - kQ4Levels[c]) < std::fabs(v - kQ4Levels[best])) best = c;
      lut2[i] = uint8_t(best);
    }
  }
  // Decision boundaries between integer levels are multiples of 0.5, so a table on floor(2 v)
  // decides every non-tie input exactly with one lookup.
  uint8_t lut2[512];
  int fast(float v) const {
    float f = 2.0f * v + 256.0f;  // >= 0 after the clamp, so truncation is floor
    // (written so that a NaN, from 0 * inf when a scale of denormal weights has no finite
    // inverse, clamps too instead of reaching the int conversion)
    f = f >= 0.0f ? (f > 511.0f ? 511.0f : f) : 0.0f;
    return lut2[int(f)];
  }
  int operator()(float v) const {
    float f = std::floor(v);
    int i = f >= -128 ? (f > 127 ? 255 : int(f) + 128) : 0;  // NaN: 0, as in fast()
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

// The two codebooks the scale search runs over: q4's fitted levels and q5's uniform ones.
struct Q4Book {
  static constexpr float lo = -127.0f, hi = 112.0f;  // end levels
  static int nearest(float v) { return kNearest.fast(v); }
  static float level(int c) { return kQ4Levels[c]; }
};
struct Q5Book {
  static constexpr float lo = -16.0f, hi = 15.0f;
  static int nearest(float v) {
    float r = std::nearbyint(v);
    r = r >= lo ? (r > hi ? hi : r) : lo;  // NaN: lo, as in Q4Nearest::fast
    return int(r) + 16;
  }
  static float level(int c) { return float(q5_level(c)); }
};

// Codes for x at inverse scale inv, and the two sums that give the least-squares scale for them:
// xl = sum x * level, ll = sum level^2 (then s = xl / ll and the error is sum x^2 - xl^2 / ll).
template <class B>
inline void assign(const float* x, float inv, uint8_t* codes, float* xl, float* ll) {
  float a = 0, b = 0;
  for (int i = 0; i < kGroup; i++) {
    const int c = B::nearest(x[i] * inv);
    codes[i] = uint8_t(c);
    const float l = B::level(c);
    a += x[i] * l;
    b += l * l;
  }
  *xl = a;
  *ll = b;
}

// The group's f16 scale and its codes under codebook B. Both codebooks are asymmetric: put the
// extreme weight on either end level, over a short sweep of scales. Each candidate's codes are
// scored at their own least-squares scale (error = sum x^2 - xl^2 / ll, so maximize xl^2 / ll):
// one pass per candidate instead of the assign / refit / re-assign of a plain sweep. The two
// best are then refined by two rounds of re-assign + refit.
template <class B>
uint16_t search_scale(const float* x, uint8_t* codes) {
  float vmax = 0;
  for (int i = 0; i < kGroup; i++)
    if (std::fabs(x[i]) > std::fabs(vmax)) vmax = x[i];
  // factors > 1 clip the extreme weight, which pays for Gaussian-like groups
  static constexpr float kLo[] = {1.15f, 1.11f, 1.08f, 1.05f, 1.03f, 1.01f, 0.99f, 0.97f, 0.94f, 0.91f, 0.88f};
  static constexpr float kHi[] = {1.2f, 1.14f, 1.09f, 1.05f, 1.02f, 0.99f, 0.95f, 0.91f};
  float b1 = -1, s1 = 0, b2 = -1, s2 = 0;
  auto consider = [&](float inv) {
    float xl, ll;
    assign<B>(x, inv, codes, &xl, &ll);
    if (ll <= 0) return;
    const float sc = xl * xl / ll, s = xl / ll;
    if (sc > b1) { b2 = b1; s2 = s1; b1 = sc; s1 = s; }
    else if (sc > b2 && s != s1) { b2 = sc; s2 = s; }
  };
  for (float f : kLo) consider(B::lo * f / vmax);
  for (float f : kHi) consider(B::hi * f / vmax);
  float best = b1, best_s = s1;
  for (float s0 : {s1, s2}) {  // (s2 == 0: fewer than two distinct candidates)
    if (s0 == 0) continue;
    float s = s0;
    for (int it = 0; it < 2; it++) {
      float xl, ll;
      assign<B>(x, 1.0f / s, codes, &xl, &ll);
      if (ll <= 0) break;
      s = xl / ll;
      if (xl * xl / ll > best) { best = xl * xl / ll; best_s = s; }
    }
  }
  // The stored scale is f16: re-assign codes for the rounded scale.
  uint16_t sh = f32_to_f16(best_s);
  float xl, ll;
  const float sf = f16_to_f32(sh);
  assign<B>(x, sf != 0 ? 1.0f / sf : 0.0f, codes, &xl, &ll);
  return sh;
}

}  // namespace

uint16_t quantize_q4_group(const float* x, uint8_t* nib16) {
  uint8_t codes[kGroup];
  float amax = 0;
  for (int i = 0; i < kGroup; i++) amax = std::fmax(amax, std::fabs(x[i]));
  if (amax == 0) {
    std::memset(nib16, 0x88, 16);  // code 8 is the level nearest zero
    return 0;
  }
  const uint16_t sh = search_scale<Q4Book>(x, codes);
  pack_nibbles(codes, nib16);
  return sh;
}

uint16_t quantize_q5_group(const float* x, uint8_t* nib16, uint8_t* hbits4) {
  uint8_t codes[kGroup];
  float amax = 0;
  for (int i = 0; i < kGroup; i++) amax = std::fmax(amax, std::fabs(x[i]));
  if (amax == 0) std::fill(codes, codes + kGroup, uint8_t(16));  // level 0
  const uint16_t sh = amax == 0 ? 0 : search_scale<Q5Book>(x, codes);
  uint8_t low[kGroup];
  uint32_t hb = 0;
  for (int i = 0; i < kGroup; i++) {
    low[i] = codes[i] & 15;
    hb |= uint32_t(codes[i] >> 4) << i;
  }
  pack_nibbles(low, nib16);
  for (int k = 0; k < 4; k++) hbits4[k] = uint8_t(hb >> (8 * k));
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
      case Format::Q5: {
        uint8_t* row = codes + r * cols / 8 * 5;
        for (int64_t g = 0; g < groups; g++)
          scales[r * groups + g] =
              quantize_q5_group(x + g * kGroup, row + g * 16, row + q5_hbits_offset(cols) + g * 4);
        break;
      }
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

void q5_to_q8(const WeightView& q5, void* out) {
  WeightView o = make_view(Format::Q8, uint64_t(q5.rows), uint64_t(q5.cols), out);
  auto* q = reinterpret_cast<int8_t*>(const_cast<uint8_t*>(o.codes));
  const int64_t cols = q5.cols;
  for (int64_t r = 0; r < q5.rows; r++) {
    const uint8_t* row = q5.codes + r * cols / 8 * 5;
    for (int64_t c = 0; c < cols; c++) q[r * cols + c] = int8_t(q5_level(q5_code(row, cols, c)));
  }
  std::memcpy(const_cast<uint16_t*>(o.scales), q5.scales, size_t(q5.rows * (cols / kGroup)) * 2);
}

}  // namespace r1
