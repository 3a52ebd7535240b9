// Micro-benchmark of the CPU kernels at Qwen-1.5B shapes (not a test): per-token matvec time of
// one layer's matrices and of the lm_head for q4 / q8 / bf16 with 1 and 2 threads, as GB/s of
// weight bytes against the measured read bandwidth; prefill matmul (128 tokens; the VNNI and the
// AMX GEMM alternated where the CPU has AMX); decode attention at depth 4096. Weights are random
// bytes (speed does not depend on values); several layers are allocated and cycled so nothing
// is served from the 32 MB L3.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/membench.h"
#include "kernels/cpu/cpu.h"
#include "quant/half.h"

using namespace r1;
using Clock = std::chrono::steady_clock;

namespace {

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct Buf {
  uint8_t* p;
  size_t n;
  explicit Buf(size_t bytes) : n(bytes) {
    p = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    std::mt19937_64 g(42);
    auto* q = reinterpret_cast<uint64_t*>(p);
    for (size_t i = 0; i < bytes / 8; i++) q[i] = g();
  }
  ~Buf() { std::free(p); }
};

// A [rows, cols] matrix of random codes with sane scales (or bf16 values).
struct Mat {
  Buf b;
  WeightView v;
  Mat(Format f, int64_t rows, int64_t cols) : b(tensor_bytes(f, rows, cols)) {
    v = make_view(f, rows, cols, b.p);
    if (v.scales) {
      auto* s = const_cast<uint16_t*>(v.scales);
      for (int64_t i = 0; i < rows * cols / kGroup; i++) s[i] = f32_to_f16(0.001f);
    } else if (f == Format::BF16) {
      auto* w = reinterpret_cast<uint16_t*>(b.p);
      for (int64_t i = 0; i < rows * cols; i++) w[i] = f32_to_bf16(float(int(w[i] % 200) - 100) * 1e-3f);
    }
  }
};

constexpr int kHidden = 1536, kFfn = 8960, kLayers = 28, kHeads = 12, kKv = 2, kHd = 128, kVocab = 151936;

struct Layer {
  std::vector<Mat*> m;
  size_t bytes = 0;
  explicit Layer(Format f) {
    const int64_t shapes[7][2] = {{kHidden, kHidden}, {kKv * kHd, kHidden}, {kKv * kHd, kHidden}, {kHidden, kHidden},
                                  {kFfn, kHidden},    {kFfn, kHidden},      {kHidden, kFfn}};
    for (auto& s : shapes) {
      m.push_back(new Mat(f, s[0], s[1]));
      bytes += tensor_bytes(f, s[0], s[1]);
    }
  }
  ~Layer() { for (auto* p : m) delete p; }
};

}  // namespace

int main() {
  std::printf("kernel set: %s\n", cpu::kernel_set());
  const int kLayerCopies = 3;  // > 32 MB L3 even for q4 (26 MB per layer)
  for (int nt : {1, 2}) {
    ThreadPool pool(nt);
    std::vector<ReadVariant> ways;
    const double bw = measure_read_bandwidth(pool, uint64_t(1) << 30, 3, &ways);
    std::printf("\n== %d thread(s): read bandwidth %.1f GB/s (best way of reading a 1 GiB buffer; ways alternated,"
                " best of 3 each:", nt, bw);
    for (const auto& w : ways) std::printf(" %s %.1f;", w.name, w.gbs);
    std::printf(")\n");
    std::vector<float> x(kFfn, 0.01f), y(kVocab);
    for (Format f : {Format::Q4, Format::Q5, Format::Q8, Format::BF16}) {
      std::vector<Layer*> layers;
      for (int i = 0; i < kLayerCopies; i++) layers.push_back(new Layer(f));
      const int reps = 12;
      double t0 = now_s();
      for (int r = 0; r < reps; r++)
        for (auto* m : layers[size_t(r % kLayerCopies)]->m) cpu::matvec(pool, m->v, x.data(), y.data());
      const double tl = (now_s() - t0) / reps;
      const double lb = double(layers[0]->bytes);
      for (auto* l : layers) delete l;
      Mat head(f, kVocab, kHidden);
      cpu::matvec(pool, head.v, x.data(), y.data());
      t0 = now_s();
      for (int r = 0; r < 3; r++) cpu::matvec(pool, head.v, x.data(), y.data());
      const double th = (now_s() - t0) / 3;
      const double hb = double(tensor_bytes(f, kVocab, kHidden));
      const double tok = kLayers * tl + th;
      std::printf("%-5s layer matvecs %6.3f ms  %5.1f GB/s (%3.0f%%) | lm_head %6.2f ms  %5.1f GB/s (%3.0f%%) | "
                  "decode weights-only %.1f tok/s\n",
                  format_name(f), tl * 1e3, lb / tl / 1e9, 100 * lb / tl / 1e9 / bw, th * 1e3, hb / th / 1e9,
                  100 * hb / th / 1e9 / bw, 1.0 / tok);
    }
    // prefill: 128 tokens through one layer's matrices (lm_head once, last token only)
    const int64_t T = 128;
    std::vector<float> X(size_t(T) * kFfn), Y(size_t(T) * kFfn);
    std::mt19937 g(1);
    std::normal_distribution<float> nd(0, 1);
    for (auto& v : X) v = nd(g);
    // q formats: the VNNI GEMM and, where the CPU has AMX, the tile GEMM, alternated (min of 3 each)
    std::string no_amx;
    const bool amx = cpu::amx_available(&no_amx);
    for (Format f : {Format::Q4, Format::Q5, Format::Q8, Format::BF16}) {
      if (f == Format::BF16 && nt == 1) continue;
      Layer L(f);
      const int ways = amx && is_quantized(f) ? 2 : 1;
      double best[2] = {1e9, 1e9};
      for (int r = 0; r < 4; r++)
        for (int w = 0; w < ways; w++) {
          cpu::force_amx(w == 1);
          double t0 = now_s();
          for (auto* m : L.m) cpu::matmul(pool, m->v, X.data(), T, Y.data());
          if (r > 0) best[w] = std::min(best[w], now_s() - t0);  // the first round warms up
        }
      cpu::force_amx(false);
      const double macs = double(T) * double(L.bytes) / (bits_per_weight(f) / 8);
      std::printf("%-5s prefill %lld tokens: layer %.1f ms -> %.0f tok/s (28 layers, no attention/lm_head), "
                  "%.1f GMAC/s",
                  format_name(f), (long long)T, best[0] * 1e3, T / (kLayers * best[0]), macs / best[0] / 1e9);
      if (ways == 2)
        std::printf(" | AMX tiles %.1f ms, %.1f GMAC/s (%.2fx)", best[1] * 1e3, macs / best[1] / 1e9, best[0] / best[1]);
      std::printf("\n");
    }
    if (!amx) std::printf("(AMX tile GEMM not measured: %s)\n", no_amx.c_str());
    // decode attention at depth 4096, f16 and q8 caches: one layer, 12 q heads over 2 kv heads
    {
      // 28 layers of random K/V (112 MB in f16: from DRAM, as in decode). The formats, and where
      // AVX-512 is present the 16- and 32-register blockings, alternate in this process (min of
      // 15 each), so their ratios are not at the mercy of this VM's bandwidth swings
      const int64_t ctx = 4096, rows = kLayers * kKv * ctx;
      std::mt19937 g(3);
      std::normal_distribution<float> nd(0, 1);
      const KvFormat fmts[2] = {KvFormat::F16, KvFormat::Q8};
      std::vector<uint8_t> K[2], V[2];
      std::vector<float> x(kHd);
      for (int f = 0; f < 2; f++) {
        const int64_t rb = kv_row_bytes(fmts[f], kHd);
        K[f].resize(size_t(rows * rb));
        V[f].resize(K[f].size());
        for (auto* c : {&K[f], &V[f]})
          for (int64_t r = 0; r < rows; r++) {
            for (auto& e : x) e = nd(g);
            kv_encode_row(fmts[f], x.data(), kHd, c->data() + r * rb);
          }
      }
      std::vector<float> q(kHeads * kHd), o(kHeads * kHd);
      for (auto& e : q) e = 0.1f * nd(g);
      const bool both = std::string(cpu::kernel_set()) == "avx2-vnni";
      double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}};  // [format][16, 32 registers]
      for (int r = 0; r < 15; r++)
        for (int f = 0; f < 2; f++)
          for (int w = both ? 0 : 1; w < 2; w++) {
            cpu::force_no_vnni(w == 0);
            const int64_t per = kKv * ctx * kv_row_bytes(fmts[f], kHd);
            const double t0 = now_s();
            for (int l = 0; l < kLayers; l++)
              cpu::attention(pool, o.data(), q.data(), K[f].data() + l * per, V[f].data() + l * per, fmts[f], ctx,
                             ctx - 1, 1, kHeads, kKv, kHd);
            best[f][w] = std::min(best[f][w], now_s() - t0);
          }
      cpu::force_no_vnni(false);
      for (int f = 0; f < 2; f++) {
        const double kv_bytes = double(K[f].size()) * 2;
        std::printf("attention decode depth 4096 (%s, 28 layers): %.2f ms/token, %.1f GB/s", kv_format_name(fmts[f]),
                    best[f][1] * 1e3, kv_bytes / best[f][1] / 1e9);
        if (both)
          std::printf(" | with 16 registers %.2f ms (32 registers: %.2fx)", best[f][0] * 1e3, best[f][0] / best[f][1]);
        std::printf(f == 1 ? " | f16/q8 time %.2fx\n" : "\n", best[0][1] / best[1][1]);
      }
    }
  }
}
