#include "quant/formats.h"

namespace r1 {

const char* format_name(Format f) {
  const auto i = uint32_t(f);
  return i < kFormatCount ? kFormatTable[i].name : "unknown";
}

bool parse_format(const std::string& s, Format* out) {
  for (uint32_t i = 0; i < kFormatCount; i++)
    if (s == kFormatTable[i].name) return *out = Format(i), true;
  return false;
}

bool is_quantized(Format f) { return uint32_t(f) < kFormatCount && kFormatTable[uint32_t(f)].quantized; }

bool format_fits(Format f, uint64_t cols) { return !is_quantized(f) || cols % kGroup == 0; }

uint64_t codes_bytes(Format f, uint64_t rows, uint64_t cols) {
  if (uint32_t(f) >= kFormatCount) return 0;
  const uint64_t n = rows * cols, bits = kFormatTable[uint32_t(f)].code_bits;
  return bits % 8 == 0 ? n * (bits / 8) : n / 8 * bits;  // sub-byte codes: whole groups, n % 32 == 0
}

uint64_t tensor_bytes(Format f, uint64_t rows, uint64_t cols) {
  const uint64_t c = codes_bytes(f, rows, cols);
  if (!is_quantized(f)) return c;
  return align_up(c, 64) + rows * (cols / kGroup) * 2;
}

double bits_per_weight(Format f) {
  if (uint32_t(f) >= kFormatCount) return 0;
  return kFormatTable[uint32_t(f)].code_bits + (is_quantized(f) ? 16.0 / kGroup : 0.0);
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
