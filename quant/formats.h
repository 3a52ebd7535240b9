// Weight formats of the .r1m file, and the view every kernel takes of a weight matrix.
//
// Matrices are [rows, cols] row-major (y = W x, x of length cols). Quantized formats store two
// separate streams so that SIMD and GPU loads stay aligned whatever the group size:
//
//   codes  : rows * cols bytes (q8), rows * cols / 2 (q4) or rows * cols * 5 / 8 (q5), row-major,
//            64-byte aligned
//   scales : rows * (cols / 32) IEEE halves, row-major, starting at align64(codes bytes)
//
// Groups are 32 consecutive weights of one row; each has one f16 scale.
//   q8: w = scale * code,                 code in [-127, 127]           (8.5 bits per weight)
//   q4: w = scale * kQ4Levels[code],      code in [0, 15], a 16-entry   (4.5 bits per weight)
//       non-uniform codebook fitted to weight statistics (scripts/fit_q4_codebook.py), so the
//       16 levels sit where trained weights are dense instead of evenly spread.
//   q5: w = scale * (code - 16),          code in [0, 31], uniform      (5.5 bits per weight)
//       A row of q5 is the row's q4-style nibbles (cols / 2 bytes, Q4Group layout: the low four
//       bits of each code) followed by its high bits (cols / 8 bytes, one little-endian 32-bit
//       word per group, bit j = bit 4 of weight j's code). So a kernel finds a group's nibbles
//       where a q4 kernel would, and its fifth bits in one word; the level, code - 16, is the
//       int8 that integer-dot kernels multiply. It is the step between q4 and q8 that small
//       models need (see quant/pack.cpp), and GGUF's Q5_0 has the same values.
// 1-D tensors (norm weights, biases) are always f32.
#pragma once
#include <cstdint>
#include <cstddef>
#include <string>

namespace r1 {

enum class Format : uint32_t { F32 = 0, F16 = 1, BF16 = 2, Q8 = 3, Q4 = 4, Q5 = 5 };
constexpr uint32_t kFormatCount = 6;
constexpr int kGroup = 32;  // weights per scale in q8, q5 and q4

// One group of q4 codes. Bit layout: byte j (0..15) holds the code of weight j in its low
// nibble and the code of weight j + 16 in its high nibble, so one 16-byte load and a shift
// give the group's 32 codes in order.
struct Q4Group { uint8_t nib[16]; };
static_assert(sizeof(Q4Group) == 16, "q4 group is 32 nibbles");
// One group of q8 codes: signed bytes, in order.
struct Q8Group { int8_t q[32]; };
static_assert(sizeof(Q8Group) == 32, "q8 group is 32 bytes");

// The q4 codebook as signed 8-bit levels: integer-dot kernels use it directly (a byte shuffle
// turns codes into int8 weights); the float weight is scale * level.
inline constexpr int8_t kQ4Levels[16] = {-127, -89, -69, -53, -40, -28, -17, -7,
                                         3,    13,  24,  36,  50,  66,  87,  112};

// Where the high-bit words of a q5 row start (the nibbles come first), and the level of a code.
constexpr int64_t q5_hbits_offset(int64_t cols) { return cols / 2; }
constexpr int q5_level(int code) { return code - 16; }
// The code (0..31) of weight c of a q5 row; row points at the row's first byte.
inline int q5_code(const uint8_t* row, int64_t cols, int64_t c) {
  const int64_t g = c / 32, j = c % 32;
  const uint8_t b = row[g * 16 + j % 16];
  const int hb = (row[q5_hbits_offset(cols) + g * 4 + j / 8] >> (j % 8)) & 1;
  return (j < 16 ? b & 15 : b >> 4) | hb << 4;
}

constexpr uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// The format table: one row per format, what everything outside the kernels asks of a format
// (names, sizes, bits for reports and byte counts). A new format is a row here, its decoding in
// the reference kernels (kernels/cpu/ref.cpp), its quantizer, and its fast kernels.
struct FormatInfo {
  const char* name;
  uint32_t code_bits;  // bits of the code stream per weight
  bool quantized;      // with a stream of f16 scales, one per kGroup weights of a row
};
inline constexpr FormatInfo kFormatTable[kFormatCount] = {
    {"f32", 32, false}, {"f16", 16, false}, {"bf16", 16, false},
    {"q8", 8, true},    {"q4", 4, true},    {"q5", 5, true},
};
static_assert(sizeof(kFormatTable) / sizeof(kFormatTable[0]) == kFormatCount, "a row per format");

const char* format_name(Format f);
bool parse_format(const std::string& s, Format* out);
bool is_quantized(Format f);
// Whether a [rows, cols] matrix can be stored in format f (quantized formats need cols % 32 == 0).
bool format_fits(Format f, uint64_t cols);
// Bytes of the code stream and of the whole tensor for n elements laid out as [rows, cols].
uint64_t codes_bytes(Format f, uint64_t rows, uint64_t cols);
uint64_t tensor_bytes(Format f, uint64_t rows, uint64_t cols);
// Bits per weight, for reports.
double bits_per_weight(Format f);

// What the kernels see of a weight matrix. For f32/f16/bf16, `codes` is the element array and
// `scales` is null.
struct WeightView {
  Format fmt = Format::F32;
  int64_t rows = 0, cols = 0;
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
};

WeightView make_view(Format f, uint64_t rows, uint64_t cols, const void* data);

}  // namespace r1
