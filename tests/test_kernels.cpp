// SIMD kernels against their scalar references (kernels/cpu/ref.h), on random shapes that hit
// every remainder path: rows not a multiple of the 4-row tile, token counts not a multiple of the
// token tile, cols = 32 k with k odd / not a multiple of 8 (tail groups), head_dim 64 and 128.
#include <catch2/catch.hpp>
#include <sched.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/sample_math.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ref.h"
#include "kernel_test_util.h"
#include "skip.h"
#include "quant/half.h"
#include "quant/quantize.h"
#include "kernel_switch.h"

using namespace r1;

namespace {

std::vector<float> randn(size_t n, float s = 1.0f) { return test::randn(test::case_rng(), n, s); }
int rint_in(int lo, int hi) { return test::rint_in(test::case_rng(), lo, hi); }
using test::Mat;

// sum_i |W[r, i] x[i]| with W dequantized: the scale of rounding errors in a dot product.
std::vector<float> magnitude(const WeightView& W, const float* X, int64_t n) {
  std::vector<float> m(static_cast<size_t>(n * W.rows)), row(static_cast<size_t>(W.cols));
  for (int64_t r = 0; r < W.rows; r++) {
    ref::dequant_row(W, r, row.data());
    for (int64_t t = 0; t < n; t++) {
      double s = 0;
      for (int64_t i = 0; i < W.cols; i++) s += std::fabs(row[size_t(i)] * X[t * W.cols + i]);
      m[size_t(t * W.rows + r)] = float(s);
    }
  }
  return m;
}

bool has_avx2() { return cpu_has_avx2(); }

// Quantized activations of n tokens in a 64-byte-aligned buffer (the kernels' contract).
struct Acts {
  std::vector<uint8_t> buf;
  uint8_t* p = nullptr;
  Acts(const float* X, int64_t n, int64_t cols) {
    const size_t st = avx2::qact_stride(cols);
    buf.resize(size_t(n) * st + 64);
    p = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
    for (int64_t t = 0; t < n; t++) avx2::quantize_act(X + t * cols, cols, p + t * st);
  }
};

}  // namespace

TEST_CASE("quantize_act matches the scalar q8 activation quantizer exactly", "[kernels]") {
  R1_SKIP_UNLESS(has_avx2(), "this CPU has no AVX2/FMA: only the reference kernels run here");
  for (int k : {1, 3, 8, 13, 48, 280}) {
    const int64_t cols = 32 * k, G = k;
    auto x = randn(size_t(cols), 3.0f);
    x[5] = 0;
    if (k > 2) for (int i = 32; i < 64; i++) x[size_t(i)] = 0;  // an all-zero group: d = 0
    std::vector<int8_t> q(static_cast<size_t>(cols));
    std::vector<float> d(static_cast<size_t>(G));
    ref::quantize_act_q8(x.data(), cols, q.data(), d.data());
    alignas(64) static uint8_t buf[1 << 16];
    avx2::quantize_act(x.data(), cols, buf);
    // undo the documented layout (avx2.h)
    const int8_t* aq = reinterpret_cast<const int8_t*>(buf);
    const int64_t a64c = (cols + 63) / 64 * 64;
    const float* dp = reinterpret_cast<const float*>(buf + 2 * a64c);
    const int32_t* s = reinterpret_cast<const int32_t*>(buf + 2 * a64c + (G * 4 + 63) / 64 * 64);
    for (int64_t g = 0; g < G; g++) {
      int64_t lo, hi, si;
      if (g < G / 8 * 8) {
        const int64_t c = g / 8, j = g % 8;
        lo = c * 256 + (j / 2) * 64 + (j % 2) * 16, hi = lo + 32, si = c * 8 + (j % 2 ? 4 + j / 2 : j / 2);
      } else {
        lo = g * 32, hi = lo + 16, si = g;
      }
      int sum = 0;
      for (int i = 0; i < 32; i++) {
        const int8_t got = i < 16 ? aq[lo + i] : aq[hi + i - 16];
        REQUIRE(int(got) == int(q[size_t(g * 32 + i)]));
        REQUIRE(int(uint8_t(buf[a64c + (i < 16 ? lo + i : hi + i - 16)])) == int(got) + 128);
        sum += got;
      }
      REQUIRE(dp[si] == d[size_t(g)]);
      REQUIRE(s[si] == 128 * sum);
    }
  }
}

// Integer path: same int8 math as ref::matmul_q8act; only the float summation order differs
// (per-group products dw*dx*isum summed in another order) -> |err| <= 1e-5 * sum|w x|.
// Against the float reference the activation rounding adds at most sum_i |w_i| * d_g(i) / 2.
TEST_CASE("q4/q5/q8 tile kernels match the int8-activation reference", "[kernels]") {
  R1_SKIP_UNLESS(has_avx2(), "this CPU has no AVX2/FMA: only the reference kernels run here");
  const bool vnni = cpu_has_vnni();
  for (Format f : {Format::Q4, Format::Q5, Format::Q8})
    for (int iter = 0; iter < 14; iter++) {
      const int64_t k = iter == 0 ? 48 : iter == 1 ? 13 : iter == 2 ? 1 : rint_in(1, 40);
      const int64_t rows = iter == 0 ? 67 : rint_in(1, 37), cols = 32 * k, n = rint_in(1, 11);
      const auto w = randn(size_t(rows * cols), 0.05f);
      const auto X = randn(size_t(n * cols));
      Mat M(f, rows, cols, w);
      std::vector<float> yref(static_cast<size_t>(n * rows)), yf(static_cast<size_t>(n * rows));
      ref::matmul_q8act(M.v, X.data(), n, yref.data(), 0, rows);
      ref::matmul(M.v, X.data(), n, yf.data(), 0, rows);
      const auto mag = magnitude(M.v, X.data(), n);
      const Acts act(X.data(), n, cols);
      // Y rows padded (ldy > rows) to check the stride is honoured
      const int64_t ldy = rows + 3;
      for (int isa = 0; isa < (vnni ? 2 : 1); isa++) {
        std::vector<float> y(static_cast<size_t>(n * ldy), -7.0f);
        // a row sub-range, so r0 != 0 is exercised
        const int64_t r0 = rows > 5 ? 2 : 0;
        if (isa == 0) avx2::qmatmul(M.v, act.p, n, y.data(), ldy, r0, rows);
        else avx2::qmatmul_vnni(M.v, act.p, n, y.data(), ldy, r0, rows);
        for (int64_t t = 0; t < n; t++)
          for (int64_t r = 0; r < rows; r++) {
            const float got = y[size_t(t * ldy + r)];
            if (r < r0) { REQUIRE(got == -7.0f); continue; }
            const float m = mag[size_t(t * rows + r)];
            INFO("fmt " << format_name(f) << " isa " << isa << " rows " << rows << " cols " << cols << " n " << n
                        << " t " << t << " r " << r);
            REQUIRE(std::fabs(got - yref[size_t(t * rows + r)]) <= 1e-5f * m + 1e-30f);
            // activation rounding: |x - dx q| <= dx / 2 <= amax_g / 254, and amax_g <= 5 sigma here
            // is not guaranteed, so bound with the group maxima directly
            double bound = 0;
            std::vector<float> row(static_cast<size_t>(cols));
            ref::dequant_row(M.v, r, row.data());
            for (int64_t g = 0; g < k; g++) {
              float amax = 0;
              for (int i = 0; i < 32; i++) amax = std::fmax(amax, std::fabs(X[size_t(t * cols + g * 32 + i)]));
              for (int i = 0; i < 32; i++) bound += std::fabs(row[size_t(g * 32 + i)]) * amax / 254.0;
            }
            REQUIRE(std::fabs(got - yf[size_t(t * rows + r)]) <= bound * 1.001 + 2e-5 * m);
          }
      }
    }
}

// Float formats: the same f32 products summed in another order (and with FMA); the realistic
// error is ~sqrt(n) * 2^-24 * sum|w x|, so 2e-5 * sum|w x| covers cols up to a few thousand.
TEST_CASE("f32/f16/bf16 matmul matches the reference", "[kernels]") {
  R1_SKIP_UNLESS(has_avx2(), "this CPU has no AVX2/FMA: only the reference kernels run here");
  for (Format f : {Format::F32, Format::F16, Format::BF16})
    for (int iter = 0; iter < 10; iter++) {
      const int64_t rows = rint_in(1, 29), cols = iter == 0 ? 1536 : iter == 2 ? 4096 + rint_in(1, 40) : rint_in(1, 300);  // both decode shapes
      const int64_t n = iter % 2 == 0 ? 1 : rint_in(1, 8);  // n = 1: the decode path
      const auto w = randn(size_t(rows * cols));
      const auto X = randn(size_t(n * cols));
      Mat M(f, rows, cols, w);
      std::vector<float> yref(static_cast<size_t>(n * rows)), y(static_cast<size_t>(n * rows));
      ref::matmul(M.v, X.data(), n, yref.data(), 0, rows);
      avx2::fmatmul(M.v, X.data(), n, y.data(), rows, 0, rows);
      const auto mag = magnitude(M.v, X.data(), n);
      for (size_t i = 0; i < y.size(); i++) {
        INFO("fmt " << format_name(f) << " rows " << rows << " cols " << cols << " n " << n << " i " << i);
        REQUIRE(std::fabs(y[i] - yref[i]) <= 2e-5f * mag[i]);
      }
      if (cpu_has_vnni()) {  // the 32-register build (two FMA chains per dot)
        std::vector<float> yw(y.size());
        avx2::fmatmul_wide(M.v, X.data(), n, yw.data(), rows, 0, rows);
        for (size_t i = 0; i < y.size(); i++) {
          INFO("wide: fmt " << format_name(f) << " rows " << rows << " cols " << cols << " n " << n << " i " << i);
          REQUIRE(std::fabs(yw[i] - yref[i]) <= 2e-5f * mag[i]);
        }
      }
    }
}

TEST_CASE("dequant_row is exact", "[kernels]") {
  R1_SKIP_UNLESS(has_avx2(), "this CPU has no AVX2/FMA: only the reference kernels run here");
  for (Format f : {Format::F32, Format::F16, Format::BF16, Format::Q8, Format::Q4, Format::Q5}) {
    const int64_t rows = 3, cols = 32 * 11;
    Mat M(f, rows, cols, randn(size_t(rows * cols)));
    std::vector<float> a(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; r++) {
      ref::dequant_row(M.v, r, a.data());
      avx2::dequant_row(M.v, r, b.data());
      REQUIRE(a == b);
    }
  }
}

// Threaded dispatch through cpu::: 1, 2 and 3 threads, matvec and matmul, every format.
TEST_CASE("cpu::matvec and cpu::matmul with 1, 2, 3 threads", "[kernels]") {
  for (int nt : {1, 2, 3}) {
    ThreadPool pool(nt);
    for (Format f : {Format::F32, Format::F16, Format::BF16, Format::Q8, Format::Q4, Format::Q5}) {
      const int64_t rows = rint_in(40, 200), cols = 32 * rint_in(1, 60), n = rint_in(2, 9);
      Mat M(f, rows, cols, randn(size_t(rows * cols), 0.1f));
      const auto X = randn(size_t(n * cols));
      std::vector<float> y(static_cast<size_t>(n * rows)), yref(static_cast<size_t>(n * rows));
      const bool q = is_quantized(f) && std::strcmp(cpu::kernel_set(), "ref") != 0;
      if (q) ref::matmul_q8act(M.v, X.data(), n, yref.data(), 0, rows);
      else ref::matmul(M.v, X.data(), n, yref.data(), 0, rows);
      const auto mag = magnitude(M.v, X.data(), n);
      cpu::matmul(pool, M.v, X.data(), n, y.data());
      for (size_t i = 0; i < y.size(); i++) REQUIRE(std::fabs(y[i] - yref[i]) <= 2e-5f * mag[i]);
      cpu::matvec(pool, M.v, X.data(), y.data());
      for (int64_t r = 0; r < rows; r++) REQUIRE(std::fabs(y[size_t(r)] - yref[size_t(r)]) <= 2e-5f * mag[size_t(r)]);
    }
  }
}

// Outputs are convex combinations of V rows: errors (exp approximation ~2 ulp, summation order,
// split-softmax merge) are measured against max |v|.
TEST_CASE("cpu::attention matches the reference (f16, q8 and f32 cache, GQA, splits)", "[kernels]") {
  struct Case { int hd, n_kv, group; int64_t pos0, n_q; };
  std::vector<Case> cases = {{128, 2, 6, 0, 1}, {128, 2, 6, 299, 1}, {64, 1, 1, 0, 1},  {64, 8, 1, 17, 3},
                             {128, 4, 7, 280, 1}, {64, 3, 2, 5, 9},   {128, 1, 8, 260, 1}, {64, 2, 4, 0, 40},
                             {128, 5, 3, 1, 2},   {64, 1, 12, 290, 1}};
  // deep decode at the real GQA shapes (Qwen-1.5B 12/2, Qwen-7B 28/4): long score rows, splits
  cases.push_back({128, 2, 6, 4100, 1});
  cases.push_back({128, 4, 7, 1500, 1});
  for (int i = 0; i < 6; i++) cases.push_back({32 * rint_in(1, 4), rint_in(1, 8), rint_in(1, 9), rint_in(0, 290), rint_in(1, 10)});
  // both register blockings where the CPU has AVX-512 (the "avx2-vnni" set): 32 and 16 registers
  for (int nt : {1, 2, 3}) {
    ThreadPool pool(nt);
    for (const auto& c : cases)
      for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::Q8}) {
        const int n_heads = c.n_kv * c.group;
        const int64_t ctx = c.pos0 + c.n_q + 5, rows = c.n_kv * ctx, rb = kv_row_bytes(f, c.hd);
        const auto kf = randn(size_t(rows * c.hd)), vf = randn(size_t(rows * c.hd));
        // the cache rows in format f, as KVCache::store writes them
        std::vector<uint8_t> kc(size_t(rows * rb)), vc(kc.size());
        for (int64_t r = 0; r < rows; r++)
          for (auto [src, dst] : {std::pair{&kf, &kc}, std::pair{&vf, &vc}})
            kv_encode_row(f, src->data() + r * c.hd, c.hd, dst->data() + r * rb);
        const void *K = kc.data(), *V = vc.data();
        const auto q = randn(size_t(c.n_q * n_heads * c.hd), 0.3f);
        std::vector<float> out(q.size()), want(q.size()), scores(static_cast<size_t>(ctx));
        cpu::attention(pool, out.data(), q.data(), K, V, f, ctx, c.pos0, c.n_q, n_heads, c.n_kv, c.hd);
        std::vector<float> narrow(q.size());
        {
          test::KernelSwitch no_vnni(cpu::force_no_vnni, true);
          cpu::attention(pool, narrow.data(), q.data(), K, V, f, ctx, c.pos0, c.n_q, n_heads, c.n_kv, c.hd);
        }
        CHECK(std::memcmp(out.data(), narrow.data(), out.size() * 4) == 0);  // same sums, other blocking
        for (int64_t t = 0; t < c.n_q; t++) {
          const int64_t off = t * n_heads * c.hd;
          ref::attention(want.data() + off, q.data() + off, K, V, f, ctx, c.pos0 + t + 1, n_heads, c.n_kv, c.hd,
                         scores.data());
        }
        float vmax = 0;
        for (float x : vf) vmax = std::fmax(vmax, std::fabs(x));
        for (size_t i = 0; i < out.size(); i++) {
          INFO("hd " << c.hd << " n_kv " << c.n_kv << " group " << c.group << " pos0 " << c.pos0 << " n_q " << c.n_q
                     << " kv " << kv_format_name(f) << " threads " << nt << " i " << i);
          REQUIRE(std::fabs(out[i] - want[i]) <= 2e-5f * vmax);
        }
      }
  }
}

TEST_CASE("rmsnorm, rope, silu_mul match the reference", "[kernels]") {
  for (int64_t n : {1, 7, 64, 1536, 1541}) {
    const auto x = randn(size_t(n), 2.0f), w = randn(size_t(n));
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    ref::rmsnorm(a.data(), x.data(), w.data(), n, 1e-6f);
    cpu::rmsnorm(b.data(), x.data(), w.data(), n, 1e-6f);
    // sum of squares reassociated: relative 1e-5 of each output
    for (int64_t i = 0; i < n; i++) REQUIRE(std::fabs(a[size_t(i)] - b[size_t(i)]) <= 1e-5f * std::fabs(a[size_t(i)]) + 1e-30f);
    auto g1 = randn(size_t(n), 4.0f);
    g1[0] = -95.0f;  // exp overflow side of silu
    auto g2 = g1;
    const auto up = randn(size_t(n));
    ref::silu_mul(g1.data(), up.data(), n);
    cpu::silu_mul(g2.data(), up.data(), n);
    // vector exp within a few ulp, one division: relative 4e-6
    for (int64_t i = 0; i < n; i++) REQUIRE(std::fabs(g1[size_t(i)] - g2[size_t(i)]) <= 4e-6f * std::fabs(g1[size_t(i)]) + 1e-30f);
  }
  for (int hd : {64, 128, 6}) {
    const int nh = 5;
    auto v1 = randn(size_t(nh * hd));
    auto v2 = v1;
    std::vector<float> cs(static_cast<size_t>(hd / 2)), sn(static_cast<size_t>(hd / 2));
    for (int i = 0; i < hd / 2; i++) cs[size_t(i)] = std::cos(0.3f * i), sn[size_t(i)] = std::sin(0.3f * i);
    ref::rope(v1.data(), nh, hd, cs.data(), sn.data());
    cpu::rope(v2.data(), nh, hd, cs.data(), sn.data());
    // FMA vs separate rounding: one or two ulps of |a| + |b|
    for (size_t i = 0; i < v1.size(); i++) REQUIRE(std::fabs(v1[i] - v2[i]) <= 1e-6f * (std::fabs(v1[i]) + 4.0f));
  }
}

// The sampler's exp must give the same bits wherever it runs (the GPU's sampler included), so the
// AVX2 row is checked bitwise against the scalar one, and the scalar one against e^x in double.
TEST_CASE("sample_exp: within 2 ulp of e^x; the AVX2 row is bitwise the scalar one", "[kernels]") {
  double worst_ulp = 0;
  for (float x = -86.0f; x <= 0.0f; x = std::nextafter(x + 0.000731f, 1.0f)) {
    const double want = std::exp(double(x));
    const float got = sample_exp(x);
    const double ulp = double(std::nextafter(float(want), INFINITY) - float(want));
    worst_ulp = std::max(worst_ulp, std::fabs(double(got) - want) / ulp);
  }
  INFO("worst error " << worst_ulp << " ulp");
  CHECK(worst_ulp <= 2.0);
  CHECK(sample_exp(0.0f) == 1.0f);
  CHECK(sample_exp(-86.5f) == 0.0f);
  CHECK(sample_exp(-INFINITY) == 0.0f);
  CHECK(sample_exp(NAN) == 0.0f);
  R1_SKIP_UNLESS(has_avx2(), "this CPU has no AVX2/FMA: only the reference kernels run here");
  for (int64_t n : {1, 7, 8, 1000, 151936}) {
    auto x = randn(size_t(n), 8.0f);
    x[0] = 3.0f;  // the largest, below: every edge the lanes meet
    const float edges[] = {-NAN, INFINITY, -INFINITY, -86.0f * 0.5f + 3.0f, 3.0f - 43.0f, 3.0f, -1e30f, 2.9999998f};
    for (size_t i = 0; i < std::size(edges) && i + 1 < size_t(n); i++) x[i + 1] = edges[i];
    for (float t : {0.6f, 1.0f, 0.013f}) {
      std::vector<float> a(size_t(n), -1.0f), b(size_t(n), -2.0f);  // poisoned
      ref::sample_exp_row(x.data(), n, 3.0f, t, a.data());
      avx2::sample_exp_row(x.data(), n, 3.0f, t, b.data());
      INFO("n " << n << " t " << t);
      REQUIRE(std::memcmp(a.data(), b.data(), size_t(n) * 4) == 0);
    }
  }
}

TEST_CASE("kernel_set and force_reference", "[kernels]") {
  const std::string set = cpu::kernel_set();
  if (has_avx2() && !std::getenv("R1_KERNELS")) CHECK(set != "ref");
  {
    test::KernelSwitch ref(cpu::force_reference, true);
    CHECK(std::string(cpu::kernel_set()) == "ref");
  }
  CHECK(std::string(cpu::kernel_set()) == set);
  if (set == "avx2-vnni") {
    test::KernelSwitch no_vnni(cpu::force_no_vnni, true);
    CHECK(std::string(cpu::kernel_set()) == "avx2");
  }
}

// Batched decoding runs many sequences' tokens through one matmul; a sequence must get the same
// bits it would get alone (a matvec), whatever else shares the batch, on every kernel set.
TEST_CASE("matmul rows are bitwise matvecs; matmul_multi equals separate calls", "[kernels]") {
  test::KernelSwitch force_ref(cpu::force_reference, false), no_vnni(cpu::force_no_vnni, false);
  for (int set : {0, 1, 2}) {  // ref, avx2 (16 registers), and the VNNI set where present
    const bool ref_on = set == 0;
    force_ref(ref_on);
    no_vnni(set == 1);
    for (int nt : {1, 2, 3}) {
      ThreadPool pool(nt);
      for (Format f : {Format::F32, Format::F16, Format::BF16, Format::Q8, Format::Q4, Format::Q5})
      for (int64_t n : {rint_in(2, 4), rint_in(5, 13)}) {  // both sides of the GEMM threshold
        const int64_t cols = 32 * rint_in(1, 140);  // float decode: row streams up to 4096 columns, tiles above
        const int64_t rows[3] = {rint_in(1, 90), rint_in(1, 40), rint_in(17, 70)};
        std::vector<Mat> M;
        for (int j = 0; j < 3; j++) M.emplace_back(f, rows[j], cols, randn(size_t(rows[j] * cols), 0.1f));
        const auto X = randn(size_t(n * cols));
        std::vector<std::vector<float>> Y(3), Ym(3);
        WeightView Ws[3];
        float* Yp[3];
        for (int j = 0; j < 3; j++) {
          Ws[j] = M[size_t(j)].v;
          Y[size_t(j)].assign(size_t(n * rows[j]), NAN);
          Ym[size_t(j)].assign(size_t(n * rows[j]), NAN);
          Yp[j] = Ym[size_t(j)].data();
          cpu::matmul(pool, Ws[j], X.data(), n, Y[size_t(j)].data());
        }
        cpu::matmul_multi(pool, Ws, 3, X.data(), n, Yp);
        for (int j = 0; j < 3; j++) {
          INFO("kernel set " << cpu::kernel_set() << " threads " << nt << " fmt " << format_name(f) << " matrix " << j << " rows "
                      << rows[j] << " cols " << cols << " n " << n);
          REQUIRE(std::memcmp(Y[size_t(j)].data(), Ym[size_t(j)].data(), Y[size_t(j)].size() * 4) == 0);
          std::vector<float> y1(size_t(rows[j]), NAN);
          for (int64_t t = 0; t < n; t++) {
            cpu::matvec(pool, Ws[j], X.data() + t * cols, y1.data());
            REQUIRE(std::memcmp(y1.data(), Y[size_t(j)].data() + t * rows[j], y1.size() * 4) == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("default thread count: physical cores within the affinity mask and the cgroup quota", "[kernels]") {
  using threads_detail::physical_cores;
  using threads_detail::quota_cpus;
  // 2 sockets x 2 cores x 2 SMT threads; processors 0-3 on socket 0 (core 0: 0,2; core 1: 1,3)
  std::ostringstream os;
  const int phys[8] = {0, 0, 0, 0, 1, 1, 1, 1}, core[8] = {0, 1, 0, 1, 0, 1, 0, 1};
  for (int p = 0; p < 8; p++)
    os << "processor\t: " << p << "\nmodel name\t: X\nphysical id\t: " << phys[p] << "\nsiblings\t: 4\ncore id\t\t: "
       << core[p] << "\n\n";
  const std::string info = os.str();
  CHECK(physical_cores(info, {0, 1, 2, 3, 4, 5, 6, 7}) == 4);
  CHECK(physical_cores(info, {0, 2}) == 1);        // two SMT siblings of one core
  CHECK(physical_cores(info, {0, 1}) == 2);
  CHECK(physical_cores(info, {0, 4}) == 2);        // same core id, other socket
  CHECK(physical_cores(info, {3, 5, 7}) == 2);
  CHECK(physical_cores("processor\t: 0\nprocessor\t: 1\n", {0, 1}) == 2);  // no core ids (some VMs, ARM)
  CHECK(physical_cores("", {0, 1, 2}) == 3);

  CHECK(quota_cpus("200000 100000\n") == 2);
  CHECK(quota_cpus("150000 100000") == 2);  // 1.5 CPUs: round up
  CHECK(quota_cpus("50000 100000") == 1);
  CHECK(quota_cpus("max 100000\n") == 0);
  CHECK(quota_cpus("-1 100000") == 0);     // cgroup v1: no quota
  CHECK(quota_cpus("") == 0);
  CHECK(quota_cpus("garbage 100000") == 0);
  CHECK(quota_cpus("100000 0") == 0);

  // The real thing: pinned to one CPU (as taskset -c 0 would), the pool is one thread.
  cpu_set_t saved, one;
  REQUIRE(sched_getaffinity(0, sizeof saved, &saved) == 0);
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
    if (CPU_ISSET(c, &saved)) first = c;
  REQUIRE(first >= 0);
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  const int n1 = ThreadPool::default_threads();
  REQUIRE(sched_setaffinity(0, sizeof saved, &saved) == 0);
  CHECK(n1 == 1);
  CHECK(ThreadPool::default_threads() >= 1);
}
