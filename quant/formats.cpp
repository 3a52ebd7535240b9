#include "quant/formats.h"

namespace r1 {

static const char* kNames[kFormatCount] = {"f32", "f16", "bf16", "q8", "q4", "q5"};

const char* format_name(Format f) {
  auto i = uint32_t(f);
  return i < kFormatCount ? kNames[i] : "unknown";
}

bool parse_format(const std::string& s, Format* out) {
  for (uint32_t i = 0; i < kFormatCount; i++)
    if (s == kNames[i]) { *out = Format(i); return true; }
  return false;
}

bool is_quantized(Format f) { return f == Format::Q8 || f == Format::Q4 || f == Format::Q5; }

bool format_fits(Format f, uint64_t cols) { return !is_quantized(f) || cols % kGroup == 0; }

uint64_t codes_bytes(Format f, uint64_t rows, uint64_t cols) {
  uint64_t n = rows * cols;
  switch (f) {
    case Format::F32: return n * 4;
    case Format::F16: case Format::BF16: return n * 2;
    case Format::Q8: return n;
    case Format::Q4: return n / 2;
    case Format::Q5: return n / 8 * 5;
  }
  return 0;
}

uint64_t tensor_bytes(Format f, uint64_t rows, uint64_t cols) {
  uint64_t c = codes_bytes(f, rows, cols);
  if (!is_quantized(f)) return c;
  return align_up(c, 64) + rows * (cols / kGroup) * 2;
}

double bits_per_weight(Format f) {
  switch (f) {
    case Format::F32: return 32;
    case Format::F16: case Format::BF16: return 16;
    case Format::Q8: return 8 + 16.0 / kGroup;
    case Format::Q4: return 4 + 16.0 / kGroup;
    case Format::Q5: return 5 + 16.0 / kGroup;
  }
  return 0;
}

WeightView make_view(Format f, uint64_t rows, uint64_t cols, const void* data) {
  WeightView v;
  v.fmt = f;
  v.rows = int64_t(rows);
  v.cols = int64_t(cols);
  v.codes = static_cast<const uint8_t*>(data);
  if (is_quantized(f))
    v.scales = reinterpret_cast<const uint16_t*>(v.codes + align_up(codes_bytes(f, rows, cols), 64));
  return v;
}

}  // namespace r1
