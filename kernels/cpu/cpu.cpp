#include "kernels/cpu/cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/ref.h"

namespace r1::cpu {
namespace {

std::atomic<bool> g_force_ref{false};

bool use_ref() {
  static const bool env_ref = [] {
    const char* e = std::getenv("R1_KERNELS");
    return e && std::strcmp(e, "ref") == 0;
  }();
  return env_ref || g_force_ref.load(std::memory_order_relaxed);
}

// Rows per parallel chunk: keeps chunk borders on whole cache lines of output.
constexpr int64_t kRowAlign = 16;

}  // namespace

const char* kernel_set() { return "ref"; }
void force_reference(bool on) { g_force_ref = on; }

void matvec(ThreadPool& pool, const WeightView& W, const float* x, float* y) {
  (void)use_ref();
  pool.parallel_for(W.rows, [&](int64_t b, int64_t e, int) { ref::matvec(W, x, y, b, e); }, kRowAlign);
}

void matmul(ThreadPool& pool, const WeightView& W, const float* X, int64_t n, float* Y) {
  pool.parallel_for(W.rows, [&](int64_t b, int64_t e, int) { ref::matmul(W, X, n, Y, b, e); }, kRowAlign);
}

void dequant_row(const WeightView& W, int64_t r, float* out) { ref::dequant_row(W, r, out); }
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) { ref::rmsnorm(out, x, w, n, eps); }
void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin) {
  ref::rope(v, n_heads, head_dim, cos, sin);
}
void silu_mul(float* gate, const float* up, int64_t n) { ref::silu_mul(gate, up, n); }

void attention(ThreadPool& pool, float* out, const float* q, const void* k, const void* v, bool kv_f16,
               int64_t ctx_stride, int64_t pos0, int64_t n_q, int n_heads, int n_kv, int hd) {
  pool.parallel_for(n_q, [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> scores;
    if (int64_t(scores.size()) < pos0 + n_q) scores.resize(size_t(pos0 + n_q));
    for (int64_t t = b; t < e; t++) {
      const int64_t off = t * int64_t(n_heads) * hd;
      ref::attention(out + off, q + off, k, v, kv_f16, ctx_stride, pos0 + t + 1, n_heads, n_kv, hd, scores.data());
    }
  });
}

}  // namespace r1::cpu
