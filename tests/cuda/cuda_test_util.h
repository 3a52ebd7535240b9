// Helpers of the CUDA tests: random data, device buffers that free themselves, the comparison
// against the CPU reference (relative L2 error, non-finite and unwritten outputs caught).
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "kernels/cpu/ref.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/layout.h"
#include "quant/formats.h"
#include "quant/half.h"
#include "quant/quantize.h"

namespace r1test::gpu {
using namespace r1;

#define R1_REQUIRE_GPU()                                                  \
  do {                                                                    \
    std::string why;                                                      \
    if (!r1::cuda::usable(&why)) FAIL("no usable CUDA device: " << why);  \
  } while (0)

using Rng = std::mt19937;
const Format kFormats[] = {Format::F32, Format::F16, Format::BF16, Format::Q8, Format::Q4};

inline uint32_t seed_for(uint32_t test) { return 0x5eed0000u + 7919u * test + Catch::rngSeed(); }

inline std::vector<float> randn(Rng& g, size_t n, float s = 1.0f) {
  std::normal_distribution<float> d(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
inline int64_t rand_in(Rng& g, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g); }
template <class T>
T pick(Rng& g, const std::vector<T>& v) { return v[size_t(rand_in(g, 0, int64_t(v.size()) - 1))]; }

// Halves uniform in [-1, 1) (splitmix64: fast enough for caches of tens of millions of entries).
inline std::vector<uint16_t> rand_f16_pm1(uint64_t seed, size_t n) {
  std::vector<uint16_t> v(n);
  for (auto& h : v) {
    uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    h = f32_to_f16(float(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
  return v;
}

// A device buffer that frees itself.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(uint64_t bytes) : p_(cuda::alloc(bytes, "test buffer")), bytes_(bytes) {}
  ~DevBuf() { cuda::release(p_); }
  DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  uint64_t bytes() const { return bytes_; }
  void poison(int byte = 0xFF) { cuda::fill_bytes(p_, byte, bytes_); }

 private:
  void* p_ = nullptr;
  uint64_t bytes_ = 0;
};

template <class T>
DevBuf upload(const std::vector<T>& v) {
  DevBuf b(std::max<uint64_t>(1, v.size() * sizeof(T)));
  if (!v.empty()) cuda::to_device(b.as<void>(), v.data(), v.size() * sizeof(T));
  return b;
}
template <class T>
std::vector<T> download(const DevBuf& b, size_t n) {
  REQUIRE(n * sizeof(T) <= b.bytes());
  std::vector<T> v(n);
  cuda::to_host(v.data(), b.as<void>(), n * sizeof(T));
  return v;
}

// out against ref: every output finite, the reference non-zero, and the relative L2 error within
// bound; with seg > 0 the bound holds for each run of seg values (one row) on its own. norm_floor:
// a lower bound for ||ref|| where a few outputs may all cancel by chance (see dot_scale).
inline void check_close(const std::vector<float>& out, const std::vector<float>& ref, double bound, size_t seg = 0,
                 double norm_floor = 0) {
  REQUIRE(out.size() == ref.size());
  REQUIRE(!ref.empty());
  if (seg == 0) seg = ref.size();
  double worst_rel = 0, max_abs = 0, min_norm = INFINITY;
  size_t worst_seg = 0, nonfinite = 0, first_nonfinite = 0, ref_nonfinite = 0;
  for (size_t s0 = 0; s0 < ref.size(); s0 += seg) {
    double num = 0, den = 0;
    for (size_t i = s0; i < std::min(ref.size(), s0 + seg); i++) {
      if (!std::isfinite(ref[i])) ref_nonfinite++;
      den += double(ref[i]) * double(ref[i]);
      if (!std::isfinite(out[i])) {
        if (nonfinite++ == 0) first_nonfinite = i;
        continue;
      }
      const double d = double(out[i]) - double(ref[i]);
      num += d * d;
      max_abs = std::max(max_abs, std::fabs(d));
    }
    min_norm = std::min(min_norm, std::sqrt(den));
    den = std::max(den, norm_floor * norm_floor);
    const double rel = den > 0 ? std::sqrt(num / den) : INFINITY;
    if (rel > worst_rel || s0 == 0) worst_rel = rel, worst_seg = s0 / seg;
  }
  INFO("relative L2 error " << worst_rel << " (bound " << bound << ", worst row " << worst_seg << " of rows of "
                            << seg << "), max abs error " << max_abs << ", smallest |ref| " << min_norm
                            << (norm_floor > 0 ? ", |ref| floor " + std::to_string(norm_floor) : ""));
  INFO("non-finite outputs: " << nonfinite << (nonfinite ? " (first at " + std::to_string(first_nonfinite) + ")" : ""));
  REQUIRE(ref_nonfinite == 0);  // a broken reference is the test's bug
  CHECK(nonfinite == 0);
  CHECK(min_norm > 0);
  CHECK(worst_rel <= bound);
}

// Element-wise bitwise equality; reports the count and the first mismatch.
template <class T>
void check_bits(const std::vector<T>& out, const std::vector<T>& ref, const char* what) {
  REQUIRE(out.size() == ref.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < ref.size(); i++)
    if (std::memcmp(&out[i], &ref[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  std::ostringstream os;
  if (bad) os << " (first at " << first << ": got " << +out[first] << ", want " << +ref[first] << ")";
  INFO(what << ": " << bad << " of " << ref.size() << " differ" << os.str());
  CHECK(bad == 0);
}

// A random [rows, cols] matrix in format f: host bytes and view (the file's layout), and a
// device copy (in the fused kernels' layout with device_layout).
struct Mat {
  std::vector<uint8_t> host;
  WeightView hv, dv;
  DevBuf dev;
  Mat(Rng& g, Format f, int64_t rows, int64_t cols, bool device_layout = false) {
    const auto w = randn(g, size_t(rows * cols), 0.1f);
    host.resize(tensor_bytes(f, uint64_t(rows), uint64_t(cols)));
    quantize_matrix(f, w.data(), rows, cols, host.data());
    hv = make_view(f, uint64_t(rows), uint64_t(cols), host.data());
    if (device_layout) {
      std::vector<uint8_t> d(host.size());
      cuda::to_device_layout(hv, d.data());
      dev = upload(d);
    } else {
      dev = upload(host);
    }
    dv = make_view(f, uint64_t(rows), uint64_t(cols), dev.as<uint8_t>());
  }
};

// Y = W X as the GPU should compute it: q4/q8 on int8 activations, float formats in f32.
inline std::vector<float> ref_matmul(const WeightView& W, const std::vector<float>& x, int64_t n) {
  std::vector<float> y(size_t(n * W.rows));
  if (is_quantized(W.fmt))
    ref::matmul_q8act(W, x.data(), n, y.data(), 0, W.rows);
  else
    ref::matmul(W, x.data(), n, y.data(), 0, W.rows);
  return y;
}

// Half the typical size of one output of W x when its terms do not cancel: sqrt(mean over outputs
// of (sum_i |W[r, i] x[i]|)^2 / cols). Rounding errors scale with it, so where a launch has only a
// few outputs (which may all be near zero by chance) it floors ||ref|| in the relative error.
inline double dot_scale(const WeightView& W, const std::vector<float>& x, int64_t n) {
  std::vector<float> row(size_t(W.cols));
  double s2 = 0;
  for (int64_t r = 0; r < W.rows; r++) {
    ref::dequant_row(W, r, row.data());
    for (int64_t t = 0; t < n; t++) {
      double m = 0;
      for (int64_t i = 0; i < W.cols; i++) m += std::fabs(double(row[size_t(i)]) * double(x[size_t(t * W.cols + i)]));
      s2 += m * m;
    }
  }
  return 0.5 * std::sqrt(s2 / double(W.cols));
}

inline void ref_quantize_rows(const std::vector<float>& x, int64_t n, int64_t cols, std::vector<int8_t>& q,
                       std::vector<float>& d) {
  q.assign(size_t(n * cols), 0);
  d.assign(size_t(n * cols / kGroup), 0.0f);
  for (int64_t t = 0; t < n; t++)
    ref::quantize_act_q8(x.data() + t * cols, cols, q.data() + t * cols, d.data() + t * (cols / kGroup));
}

// n rows of activations on the device: x, and (cols % 32 == 0) their int8 codes and scales, from
// cuda::quantize or from ref::quantize_act_q8 uploaded.
struct DevAct {
  std::vector<float> x;
  DevBuf dx, dq, dd;
  cuda::Act a;
  DevAct(Rng& g, int64_t n, int64_t cols, bool gpu_quantize) : x(randn(g, size_t(n * cols))) {
    dx = upload(x);
    a.x = dx.as<float>();
    if (cols % kGroup) return;
    if (gpu_quantize) {
      dq = DevBuf(uint64_t(n * cols));
      dd = DevBuf(uint64_t(n * cols / kGroup) * sizeof(float));
      dq.poison(0x80);
      dd.poison(0xFF);
      cuda::quantize(a.x, n, cols, dq.as<int8_t>(), dd.as<float>());
    } else {
      std::vector<int8_t> q;
      std::vector<float> d;
      ref_quantize_rows(x, n, cols, q, d);
      dq = upload(q);
      dd = upload(d);
    }
    a.q = dq.as<int8_t>();
    a.d = dd.as<float>();
  }
};

// One product of a matmul launch: its matrix, bias, output and what the output must become.
struct OutSpec {
  Format fmt;
  int64_t rows;
  bool bias, accumulate;
};
inline std::string describe(const OutSpec& s) {
  return std::string(format_name(s.fmt)) + " rows " + std::to_string(s.rows) + (s.bias ? " +bias" : "") +
         (s.accumulate ? " +accumulate" : "");
}

// One matmul launch of specs (same cols) on n random tokens, each output against its reference:
// y = (accumulate ? y0 : 0) + bias + W x.
inline void run_matmul(Rng& g, const std::vector<OutSpec>& specs, int64_t cols, int64_t n, bool gpu_quantize) {
  INFO("matmul cols " << cols << ", n " << n << ", activations quantized on the " << (gpu_quantize ? "GPU" : "host"));
  const DevAct act(g, n, cols, gpu_quantize);
  std::vector<Mat> mats;
  std::vector<std::vector<float>> bias(specs.size()), y0(specs.size());
  std::vector<DevBuf> dbias(specs.size()), dy(specs.size());
  std::vector<cuda::MatOut> outs(specs.size());
  mats.reserve(specs.size());
  for (size_t o = 0; o < specs.size(); o++) {
    const OutSpec& s = specs[o];
    mats.emplace_back(g, s.fmt, s.rows, cols);
    outs[o].w = mats[o].dv;
    dy[o] = DevBuf(uint64_t(n * s.rows) * sizeof(float));
    if (s.accumulate) {
      y0[o] = randn(g, size_t(n * s.rows));
      cuda::to_device(dy[o].as<void>(), y0[o].data(), dy[o].bytes());
    } else {
      dy[o].poison();
    }
    outs[o].y = dy[o].as<float>();
    outs[o].accumulate = s.accumulate;
    if (s.bias) {
      bias[o] = randn(g, size_t(s.rows));
      dbias[o] = upload(bias[o]);
      outs[o].bias = dbias[o].as<float>();
    }
  }
  cuda::matmul(outs.data(), int(outs.size()), act.a, n, false);
  for (size_t o = 0; o < specs.size(); o++) {
    const OutSpec& s = specs[o];
    INFO("output " << o << " of " << specs.size() << ": " << describe(s));
    std::vector<float> want = ref_matmul(mats[o].hv, act.x, n);
    for (int64_t t = 0; t < n; t++)
      for (int64_t r = 0; r < s.rows; r++) {
        const size_t i = size_t(t * s.rows + r);
        want[i] = (s.accumulate ? y0[o][i] : 0.0f) + (s.bias ? bias[o][size_t(r)] : 0.0f) + want[i];
      }
    const double ref_floor = n * s.rows < 16 ? dot_scale(mats[o].hv, act.x, n) : 0.0;
    check_close(download<float>(dy[o], want.size()), want, 1e-5, 0, ref_floor);
  }
}

struct MatShape {
  int64_t rows, cols, n;
};
// The edges of the shape grid, then a seeded random sample of the rest. min_rows: 7 for glu, whose
// output has no floor for ||ref|| (rows = 7 already makes an all-cancelling output improbable).
inline std::vector<MatShape> matmul_shapes(Rng& g, int samples, int64_t min_rows = 1) {
  const std::vector<int64_t> rows = {min_rows, 7, 33, 129, 1000}, cols = {32, 96, 160, 1536, 2080},
                             ns = {1, 2, 3, 5, 8, 9, 17, 64};
  std::vector<MatShape> v = {{min_rows, 32, 1}, {1000, 2080, 64}, {min_rows, 2080, 64}, {1000, 32, 1}, {129, 160, 17},
                             {7, 96, 9}};
  for (int i = 0; i < samples; i++) v.push_back({pick(g, rows), pick(g, cols), pick(g, ns)});
  return v;
}

// Rows of a pass with distinct (slot, pos): the positions in `want` first, then random ones.
inline std::vector<cuda::RowPos> make_rows(Rng& g, int64_t n, int64_t slots, int64_t ctx, const std::vector<int64_t>& want) {
  std::vector<cuda::RowPos> rows;
  std::set<std::pair<int64_t, int64_t>> used;
  for (int64_t t = 0; t < n; t++) {
    int64_t slot = rand_in(g, 0, slots - 1);
    int64_t pos = size_t(t) < want.size() ? std::min(want[size_t(t)], ctx - 1) : rand_in(g, 0, ctx - 1);
    while (!used.insert({slot, pos}).second) slot = rand_in(g, 0, slots - 1), pos = rand_in(g, 0, ctx - 1);
    rows.push_back({int32_t(slot), int32_t(pos)});
  }
  return rows;
}
inline std::string describe(const std::vector<cuda::RowPos>& rows) {
  std::ostringstream os;
  os << "rows (slot:pos)";
  for (const auto& r : rows) os << ' ' << r.slot << ':' << r.pos;
  return os.str();
}

inline int f16_order(uint16_t h) { return (h & 0x8000) ? -int(h & 0x7fff) : int(h); }  // monotone in the value
inline bool f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

}  // namespace r1test::gpu
