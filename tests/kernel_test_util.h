// Seeded random data and quantized matrices for the kernel parity tests.
#pragma once
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "quant/formats.h"
#include "quant/quantize.h"

namespace r1::test {

// The generator of the running test case, seeded from its name: a test's random data does not
// depend on which tests ran before it, or in which order.
inline std::mt19937& case_rng() {
  static std::string name;
  static std::mt19937 g;
  const std::string& cur = Catch::getResultCapture().getCurrentTestName();
  if (cur != name) {
    name = cur;
    uint32_t h = 2166136261u;  // FNV-1a: the same seed on every platform
    for (unsigned char c : cur) h = (h ^ c) * 16777619u;
    g.seed(h);
  }
  return g;
}

inline std::vector<float> randn(std::mt19937& g, size_t n, float sigma) {
  std::normal_distribution<float> d(0, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
template <class I>
I rint_in(std::mt19937& g, I lo, I hi) {
  return std::uniform_int_distribution<I>(lo, hi)(g);
}

// w [rows, cols] quantized to format f (64 spare bytes, as a file's tensor may be followed).
struct Mat {
  std::vector<uint8_t> buf;
  WeightView v;
  Mat(Format f, int64_t rows, int64_t cols, const std::vector<float>& w) {
    buf.resize(tensor_bytes(f, uint64_t(rows), uint64_t(cols)) + 64);
    quantize_matrix(f, w.data(), rows, cols, buf.data());
    v = make_view(f, uint64_t(rows), uint64_t(cols), buf.data());
  }
};

}  // namespace r1::test
