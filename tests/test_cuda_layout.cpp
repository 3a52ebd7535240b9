// The fused GPU kernels' weight layout and their word decoders (kernels/cuda/layout.h), checked on
// the CPU against the file format's own definitions (quant/formats.h: kQ4Levels, q5_code), so a
// wrong nibble order, offset or bit trick fails here without a GPU. prmt's host copy follows the
// PTX ISA's definition, tested on hand-made cases.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/layout.h"
#include "quant/formats.h"
#include "quant/quantize.h"

using namespace r1;
using namespace r1::cuda;

namespace {

std::vector<uint8_t> random_matrix(std::mt19937& g, Format f, int64_t rows, int64_t cols) {
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(size_t(rows * cols));
  for (auto& x : w) x = d(g);
  std::vector<uint8_t> out(tensor_bytes(f, uint64_t(rows), uint64_t(cols)));
  quantize_matrix(f, w.data(), rows, cols, out.data());
  return out;
}

// Signed byte k of w.
int byte_at(uint32_t w, int k) { return int(int8_t(uint8_t(w >> (8 * k)))); }

// The file's level of weight c of row r (q4: codebook level, q5: code - 16, q8: the code).
int file_level(const WeightView& w, int64_t r, int64_t c) {
  if (w.fmt == Format::Q8) return int(int8_t(w.codes[r * w.cols + c]));
  if (w.fmt == Format::Q4) {
    const uint8_t b = w.codes[r * w.cols / 2 + (c / 32) * 16 + (c % 32) % 16];
    return kQ4Levels[(c % 32) < 16 ? b & 15 : b >> 4];
  }
  return q5_level(q5_code(w.codes + r * w.cols / 8 * 5, w.cols, c));
}

}  // namespace

TEST_CASE("prmt's host copy follows the PTX definition", "[cuda][layout]") {
  const uint32_t a = 0x83828180u, b = 0x07060504u;
  CHECK(prmt(a, b, 0x3210) == a);
  CHECK(prmt(a, b, 0x7654) == b);
  CHECK(prmt(a, b, 0x4567) == 0x04050607u);
  CHECK(prmt(a, b, 0x0000) == 0x80808080u);
  CHECK(prmt(a, b, 0x8888) == 0xFFFFFFFFu);   // bit 3: the sign of byte 0 (0x80) replicated
  CHECK(prmt(a, b, 0xCCCC) == 0x00000000u);   // the sign of byte 4 (0x04)
  CHECK(prmt(a, b, 0xABCD3210u) == a);        // bits 16-31 of the selector are ignored
}

TEST_CASE("q4 word decoding gives the codebook level of each nibble, in order", "[cuda][layout]") {
  std::mt19937 g(11);
  std::vector<uint32_t> words = {0u, 0xFFFFFFFFu, 0x76543210u, 0xFEDCBA98u, 0x89ABCDEFu, 0x01234567u};
  for (int i = 0; i < 20000; i++) words.push_back(g());
  size_t bad = 0;
  for (uint32_t w : words) {
    uint32_t lo, hi;
    q4_word_levels(w, lo, hi);
    for (int k = 0; k < 8; k++) {
      const int got = byte_at(k < 4 ? lo : hi, k % 4), want = kQ4Levels[(w >> (4 * k)) & 15];
      if (got != want && bad++ < 5) FAIL_CHECK("word " << std::hex << w << " nibble " << k << ": " << got << " != " << want);
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("q5 word decoding gives code - 16 for every nibble and fifth bit", "[cuda][layout]") {
  std::mt19937 g(12);
  size_t bad = 0;
  for (int i = 0; i < 20000; i++) {
    const uint32_t w = i < 2 ? (i ? 0xFFFFFFFFu : 0u) : g(), hb = i < 4 ? (i % 2 ? 0xFFFFFFFFu : 0u) : g();
    for (int word = 0; word < 4; word++) {  // word `word` of a group, the fifth bits shifted as the kernels do
      uint32_t lo, hi;
      q5_word_levels(w, hb >> (4 * word), lo, hi);
      for (int k = 0; k < 4; k++) {
        const int j_lo = 4 * word + k, j_hi = j_lo + 16;  // the weights of byte k's low and high nibble
        const int want_lo = int(((w >> (8 * k)) & 15) | ((hb >> j_lo) & 1) << 4) - 16;
        const int want_hi = int(((w >> (8 * k + 4)) & 15) | ((hb >> j_hi) & 1) << 4) - 16;
        if (byte_at(lo, k) != want_lo || byte_at(hi, k) != want_hi) bad++;
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("the device layout puts each fragment word in its own place, whatever the chunking", "[cuda][layout]") {
  // every (group, word) of a row lands on a distinct 4-byte slot, and together they fill the row
  for (Format f : {Format::Q4, Format::Q5, Format::Q8})
    for (int64_t G : {1, 2, 3, 5, 6, 12, 16, 48, 65, 112, 128, 280, 448, 592}) {
      const int words = f == Format::Q8 ? 8 : 4;
      std::vector<int> hits(size_t(G * group_code_bytes(f) / 4), 0);
      for (int64_t g = 0; g < G; g++)
        for (int w = 0; w < words; w++) {
          const int64_t off = fragment_word_offset(f, G, g, w);
          REQUIRE(off % 4 == 0);
          REQUIRE(off / 4 < int64_t(hits.size()));
          hits[size_t(off / 4)]++;
        }
      INFO(format_name(f) << ", " << G << " groups, " << fused_chunks(G) << " chunks");
      CHECK(std::count(hits.begin(), hits.end(), 1) == int64_t(hits.size()));
      // a quad's words of a block of 4 groups are 16 (q8: 32) contiguous bytes per thread
      const int64_t Cg = G / fused_chunks(G);
      if (Cg >= 4)
        for (int q = 0; q < 4; q++) CHECK(fragment_word_offset(f, G, 3, q) == fragment_word_offset(f, G, 0, q) + 12);
    }
  CHECK(fused_chunks(128) == 16);
  CHECK(fused_chunks(280) == 8);
  CHECK(fused_chunks(12) == 4);
  CHECK(fused_chunks(65) == 1);
}

TEST_CASE("the device layout decodes, the way the kernels read it, to the file's levels", "[cuda][layout]") {
  std::mt19937 g(13);
  const int64_t shapes[][2] = {{1, 32}, {7, 96}, {33, 160}, {5, 2080}, {16, 1536}, {3, 384}, {2, 8960}};
  for (Format f : {Format::Q4, Format::Q5, Format::Q8})
    for (const auto& sh : shapes) {
      const int64_t rows = sh[0], cols = sh[1], G = cols / 32;
      INFO(format_name(f) << " [" << rows << ", " << cols << "]");
      const std::vector<uint8_t> file = random_matrix(g, f, rows, cols);
      std::vector<uint8_t> dev(file.size(), 0xAB);
      const WeightView fv = make_view(f, uint64_t(rows), uint64_t(cols), file.data());
      to_device_layout(fv, dev.data());
      const WeightView dv = make_view(f, uint64_t(rows), uint64_t(cols), dev.data());
      CHECK(std::memcmp(fv.scales, dv.scales, size_t(rows * G) * 2) == 0);  // the scales stay
      const uint32_t* hbits = reinterpret_cast<const uint32_t*>(dev.data() + q5_device_hbits_offset(uint64_t(rows), uint64_t(cols)));
      size_t bad = 0;
      for (int64_t r = 0; r < rows; r++)
        for (int64_t grp = 0; grp < G; grp++)
          for (int q = 0; q < 4; q++) {  // thread q's fragment: weights 4q..4q+3 (lo) and 16+4q.. (hi)
            const uint8_t* row = dev.data() + r * G * group_code_bytes(f);
            uint32_t w, lo, hi;
            std::memcpy(&w, row + fragment_word_offset(f, G, grp, q), 4);
            if (f == Format::Q4) {
              q4_word_levels(w, lo, hi);
            } else if (f == Format::Q5) {
              q5_word_levels(w, hbits[r * G + grp] >> (4 * q), lo, hi);
            } else {
              lo = w;
              std::memcpy(&hi, row + fragment_word_offset(f, G, grp, 4 + q), 4);
            }
            for (int k = 0; k < 4; k++) {
              if (byte_at(lo, k) != file_level(fv, r, grp * 32 + 4 * q + k)) bad++;
              if (byte_at(hi, k) != file_level(fv, r, grp * 32 + 16 + 4 * q + k)) bad++;
            }
          }
      CHECK(bad == 0);
    }
}

TEST_CASE("small integers convert to float exactly without the conversion instruction", "[cuda][layout]") {
  std::mt19937 g(14);
  const int32_t lim = (1 << 22) - 1;
  std::vector<int32_t> v = {0, 1, -1, lim, -lim, 516128, -516128};
  for (int i = 0; i < 100000; i++) v.push_back(std::uniform_int_distribution<int32_t>(-lim, lim)(g));
  size_t bad = 0;
  for (int32_t i : v) bad += small_int_to_float(i) != float(i);
  CHECK(bad == 0);
}
