// The AMX q4/q5/q8 GEMM (kernels/cpu/qgemm_amx.h) against the scalar reference, and bitwise
// against the GEMV (qmatmul_vnni one token at a time: what decoding and every other path give),
// on random and odd shapes with poisoned outputs. Needs no fixture files, so it can run alone on
// another machine: `r1_tests "[amx]"`.
//   - On every CPU with AVX512-VNNI: the kernel on emulated tiles (tests/amx_emulated.cpp).
//   - Where the CPU has AMX and the kernel grants the tile state: the kernel on the hardware
//     tiles, and cpu::matmul / matmul_multi with AMX on against cpu::matvec (batch invariance).
//     Elsewhere that test says SKIPPED and why (ctest lists it as skipped: CMakeLists.txt).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ref.h"
#include "kernel_test_util.h"
#include "kernel_switch.h"

namespace r1::amx_emu {
void qgemm_amx(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
               void* scratch);
}

using namespace r1;

namespace {

std::vector<float> randn(size_t n, float s) { return test::randn(test::case_rng(), n, s); }
int64_t rint_in(int64_t lo, int64_t hi) { return test::rint_in(test::case_rng(), lo, hi); }

// A 64-byte-aligned buffer (the kernels' contract for activations and scratch).
struct Aligned {
  std::vector<uint8_t> buf;
  uint8_t* p = nullptr;
  explicit Aligned(size_t bytes, uint8_t fill = 0) : buf(bytes + 64, fill) {
    p = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  }
};

struct Shape {
  int64_t rows, cols, n;
};
// Rows around the 16-row tiles and 32-row blocks, columns with and without tail groups (k % 8),
// token counts around the 16-token tiles.
std::vector<Shape> shapes() {
  std::vector<Shape> v = {{16, 256, 16}, {32, 512, 32}, {1, 32, 1},    {17, 288, 17}, {33, 1536, 5},
                          {31, 224, 15}, {47, 800, 33}, {64, 256, 48}, {5, 2048, 7}};
  for (int i = 0; i < 8; i++) v.push_back({rint_in(1, 70), 32 * rint_in(1, 90), rint_in(1, 40)});
  return v;
}

using Kernel = void (*)(const WeightView&, const uint8_t*, int64_t, float*, int64_t, int64_t, int64_t, void*);

// Runs `kernel` on every shape and format; each result must be bitwise the GEMV's and within
// the integer path's rounding of the int8-activation reference; rows outside [r0, r1) and the
// padding columns of Y keep their poison.
void check_kernel(Kernel kernel, const char* name) {
  const uint32_t poison = 0x7fc0dead;  // a NaN no kernel computes
  for (Format f : {Format::Q4, Format::Q5, Format::Q8})
    for (const Shape& sh : shapes()) {
      const int64_t rows = sh.rows, cols = sh.cols, n = sh.n;
      const test::Mat M(f, rows, cols, randn(size_t(rows * cols), 0.05f));
      const WeightView& W = M.v;
      const auto X = randn(size_t(n * cols), 1.0f);

      // activations: the AMX layout for n rounded up to 16 tokens (the padding is poisoned too)
      const size_t st = avx2::qact_amx_stride(cols);
      const int64_t n16 = (n + 15) / 16 * 16;
      Aligned act(size_t(n16) * st, 0xa5);
      for (int64_t t = 0; t < n; t++) avx2::quantize_act_amx(X.data() + t * cols, cols, act.p + t * st);
      Aligned scratch(avx2::qgemm_amx_scratch_bytes(cols), 0x5a);

      const int64_t ldy = rows + 5, r0 = rows > 3 ? rint_in(0, 2) : 0, r1 = rows > 6 ? rows - rint_in(0, 2) : rows;
      std::vector<uint32_t> y(size_t(n * ldy), poison);
      kernel(W, act.p, n, reinterpret_cast<float*>(y.data()), ldy, r0, r1, scratch.p);

      // the GEMV, token by token, from the GEMV's own activation layout
      const size_t gst = avx2::qact_stride(cols);
      Aligned gact(gst);
      std::vector<float> yv(static_cast<size_t>(rows)), yref(static_cast<size_t>(n * rows));
      ref::matmul_q8act(W, X.data(), n, yref.data(), 0, rows);
      for (int64_t t = 0; t < n; t++) {
        avx2::quantize_act(X.data() + t * cols, cols, gact.p);
        std::fill(yv.begin(), yv.end(), NAN);
        avx2::qmatmul_vnni(W, gact.p, 1, yv.data(), rows, 0, rows);
        for (int64_t r = 0; r < ldy; r++) {
          INFO(name << ": " << format_name(f) << " rows " << rows << " [" << r0 << ", " << r1 << ") cols " << cols
                    << " n " << n << " token " << t << " row " << r);
          const uint32_t got = y[size_t(t * ldy + r)];
          if (r < r0 || r >= r1) {
            REQUIRE(got == poison);
            continue;
          }
          float g;
          std::memcpy(&g, &got, 4);
          REQUIRE(std::memcmp(&g, &yv[size_t(r)], 4) == 0);  // bitwise the GEMV
          // the reference sums the same integer group dots in another float order
          double mag = 0;
          std::vector<float> row(static_cast<size_t>(cols));
          ref::dequant_row(W, r, row.data());
          for (int64_t i = 0; i < cols; i++) mag += std::fabs(double(row[size_t(i)]) * X[size_t(t * cols + i)]);
          REQUIRE(std::fabs(g - yref[size_t(t * rows + r)]) <= 1e-5 * mag + 1e-30);
        }
      }
    }
}

}  // namespace

TEST_CASE("AMX activation layout: natural int8 codes after the GEMV's layout", "[amx]") {
  if (!cpu_has_vnni()) {
    WARN("SKIPPED: this CPU has no AVX512-VNNI (the AMX kernels' epilogue needs it)");
    return;
  }
  for (int64_t k : {1, 7, 8, 9, 13, 48, 280}) {
    const int64_t cols = 32 * k;
    const auto x = randn(size_t(cols), 2.0f);
    std::vector<int8_t> q(static_cast<size_t>(cols));
    std::vector<float> d(static_cast<size_t>(k));
    ref::quantize_act_q8(x.data(), cols, q.data(), d.data());
    Aligned a(avx2::qact_amx_stride(cols)), g(avx2::qact_stride(cols));
    avx2::quantize_act_amx(x.data(), cols, a.p);
    avx2::quantize_act(x.data(), cols, g.p);
    REQUIRE(std::memcmp(a.p, g.p, avx2::qact_stride(cols)) == 0);
    REQUIRE(std::memcmp(a.p + avx2::qact_stride(cols), q.data(), size_t(cols)) == 0);
  }
}

TEST_CASE("AMX GEMM on emulated tiles: bitwise the GEMV, near the reference", "[amx]") {
  if (!cpu_has_vnni()) {
    WARN("SKIPPED: this CPU has no AVX512-VNNI (the AMX kernels' epilogue needs it)");
    return;
  }
  WARN("kernels under test: the AMX GEMM on emulated tiles (scalar model of the tile instructions)");
  check_kernel(amx_emu::qgemm_amx, "emulated tiles");
}

TEST_CASE("AMX GEMM on this CPU's tiles: bitwise the GEMV and batch-invariant", "[amx]") {
  std::string why;
  if (!cpu::amx_available(&why)) {
    WARN("SKIPPED: AMX hardware kernels not run: " << why);
    return;
  }
  WARN("kernels under test: the AMX GEMM on this CPU's tiles");
  check_kernel(avx2::qgemm_amx, "hardware tiles");

  // Through the dispatcher with AMX on: a matmul row (AMX from 5 tokens) is bitwise the matvec
  // of that token, and matmul_multi equals separate calls, on 1-3 threads.
  test::KernelSwitch amx(cpu::force_amx, true);
  INFO("kernel set " << cpu::kernel_set());
  REQUIRE(std::string(cpu::kernel_set()) == "avx2-vnni-amx");
  for (int nt : {1, 2, 3}) {
    ThreadPool pool(nt);
    for (Format f : {Format::Q4, Format::Q5, Format::Q8})
      for (int64_t n : {int64_t(5), rint_in(6, 40), int64_t(64)}) {
        const int64_t cols = 32 * rint_in(1, 100);
        const int64_t rows[2] = {rint_in(1, 90), rint_in(17, 70)};
        const test::Mat W0(f, rows[0], cols, randn(size_t(rows[0] * cols), 0.1f)),
            W1(f, rows[1], cols, randn(size_t(rows[1] * cols), 0.1f));
        const WeightView Ws[2] = {W0.v, W1.v};
        const auto X = randn(size_t(n * cols), 1.0f);
        std::vector<float> Y0(size_t(n * rows[0]), NAN), Y1(size_t(n * rows[1]), NAN), M0(Y0), M1(Y1);
        cpu::matmul(pool, Ws[0], X.data(), n, Y0.data());
        cpu::matmul(pool, Ws[1], X.data(), n, Y1.data());
        float* Ym[2] = {M0.data(), M1.data()};
        cpu::matmul_multi(pool, Ws, 2, X.data(), n, Ym);
        INFO(nt << " threads, " << format_name(f) << " cols " << cols << " n " << n);
        REQUIRE(std::memcmp(Y0.data(), M0.data(), Y0.size() * 4) == 0);
        REQUIRE(std::memcmp(Y1.data(), M1.data(), Y1.size() * 4) == 0);
        std::vector<float> y(static_cast<size_t>(rows[0]));
        for (int64_t t = 0; t < n; t++) {
          cpu::matvec(pool, Ws[0], X.data() + t * cols, y.data());
          REQUIRE(std::memcmp(y.data(), Y0.data() + t * rows[0], y.size() * 4) == 0);
        }
      }
  }
}
