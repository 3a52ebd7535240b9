#include "kernels/cpu/cpu.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/scratch.h"

namespace r1::avx2 {
// R1_PREFETCH=l2 | l1 | auto (default): see kPfL2Cols.
int64_t pf_l2_cols() {
  static const int64_t cols = [] {
    const char* e = std::getenv("R1_PREFETCH");
    const std::string v = e ? e : "auto";
    if (v == "l2") return int64_t(0);
    if (v == "l1") return INT64_MAX;
    if (v != "auto") std::fprintf(stderr, "r1: R1_PREFETCH=%s ignored: it takes l1, l2 or auto\n", v.c_str());
    return kPfL2Cols;
  }();
  return cols;
}
}  // namespace r1::avx2

namespace r1::cpu {
namespace {

using cpu_detail::PerThread;
using cpu_detail::Scratch;

std::atomic<bool> g_force_ref{false};
std::atomic<bool> g_no_vnni{false};
std::atomic<bool> g_force_amx{false};

// R1_KERNELS=ref: scalar reference; R1_KERNELS=avx2: AVX2 without the VNNI integer dot.
const char* env_kernels() {
  static const char* e = std::getenv("R1_KERNELS");
  return e ? e : "";
}
bool use_ref() {
  static const bool env_ref = std::strcmp(env_kernels(), "ref") == 0;
  static const bool has_avx2 = cpu_has_avx2();
  return env_ref || !has_avx2 || g_force_ref.load(std::memory_order_relaxed);
}
bool use_vnni() {
  static const bool ok = cpu_has_vnni() && std::strcmp(env_kernels(), "avx2") != 0;
  return ok && !g_no_vnni.load(std::memory_order_relaxed);
}
// AMX tiles for q4/q5/q8 prompts and batches: opt-in (R1_AMX=1, or force_amx) until measured
// on an AMX machine; asked for but unavailable, one line says why and the VNNI kernels run.
bool use_amx() {
  static const bool env = [] {
    const char* e = std::getenv("R1_AMX");
    if (!e || std::strcmp(e, "1") != 0) return false;
    std::string why;
    if (amx_available(&why)) return true;
    std::fprintf(stderr, "r1: R1_AMX=1 ignored: %s\n", why.c_str());
    return false;
  }();
  return (env || g_force_amx.load(std::memory_order_relaxed)) && use_vnni() && !use_ref() && amx_available();
}

// Rows per parallel chunk: keeps chunk borders on whole cache lines of output.
constexpr int64_t kRowAlign = 16;


void qmatmul_any(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  if (use_vnni())
    avx2::qmatmul_vnni(W, act, n, Y, ldy, r0, r1);
  else
    avx2::qmatmul(W, act, n, Y, ldy, r0, r1);
}

}  // namespace

const char* kernel_set() {
  if (use_ref()) return "ref";
  if (use_amx()) return "avx2-vnni-amx";
  return use_vnni() ? "avx2-vnni" : "avx2";
}
void force_reference(bool on) { g_force_ref = on; }
void force_no_vnni(bool on) { g_no_vnni = on; }
void force_amx(bool on) { g_force_amx = on; }

bool amx_available(std::string* why) {
  if (!cpu_has_amx()) {
    if (why) *why = cpu_has_vnni() ? "this CPU has no AMX int8 tiles (amx-tile, amx-int8)"
                                         : "this CPU has no AVX512-VNNI, which the AMX kernels' epilogue needs";
    return false;
  }
  return amx_request_permission(why);
}

namespace {

// Every thread takes the same share of each of the m matrices (on the kRowAlign grid), so a
// mix of formats (a q4 q_proj with q8 k/v_proj) stays balanced; fn(j, r0, r1, thread) runs
// rows of matrix j. Shares are cut into kItems items per thread: item u is the u-th slice of
// every matrix, so a run of items is one contiguous row range of each, and the pool can hand
// the last items of a slow thread to another.
template <class F>
void over_rows(ThreadPool& pool, const WeightView* Ws, int m, F&& fn) {
  constexpr int64_t kItems = 16;
  const int64_t U = pool.size() * kItems;
  pool.parallel_for(U, [&](int64_t b, int64_t e, int tid) {
    for (int j = 0; j < m; j++) {
      const int64_t rows = Ws[j].rows, units = (rows + kRowAlign - 1) / kRowAlign;
      const int64_t lo = std::min(rows, units * b / U * kRowAlign), hi = std::min(rows, units * e / U * kRowAlign);
      if (lo < hi) fn(j, lo, hi, tid);
    }
  });
}

// Token blocks whose quantized activations fit in L2 next to the weight tile.
int64_t token_block(int64_t stride) {
  const int64_t tb = (384 << 10) / stride;
  return tb < 4 ? 4 : tb / 4 * 4;
}

}  // namespace

void matmul_multi(ThreadPool& pool, const WeightView* Ws, int m, const float* X, int64_t n, float* const* Ys) {
  if (m < 1 || m > 8) fail_input("internal: matmul_multi takes 1..8 matrices");
  const int64_t cols = Ws[0].cols;
  bool all_q = true;
  for (int j = 0; j < m; j++) {
    if (Ws[j].cols != cols) fail_input("internal: matmul_multi needs one input width");
    all_q = all_q && is_quantized(Ws[j].fmt);
  }
  // Each (row, token) dot is computed by the same code whatever n is, so row t of a matmul is
  // bitwise the matvec of token t (batched decoding relies on it).
  if (use_ref()) {
    over_rows(pool, Ws, m, [&](int j, int64_t b, int64_t e, int) {
      if (n == 1) ref::matvec(Ws[j], X, Ys[j], b, e);
      else ref::matmul(Ws[j], X, n, Ys[j], b, e);
    });
    return;
  }
  if (!all_q) {
    auto* const fmatmul = use_vnni() ? avx2::fmatmul_wide : avx2::fmatmul;
    for (int j = 0; j < m; j++) {
      if (is_quantized(Ws[j].fmt)) { matmul_multi(pool, Ws + j, 1, X, n, Ys + j); continue; }
      pool.parallel_for(Ws[j].rows, [&](int64_t b, int64_t e, int) {
        fmatmul(Ws[j], X, n, Ys[j], Ws[j].rows, b, e);
      }, kRowAlign);
    }
    return;
  }
  // The activations are quantized once for all m matrices. From 5 tokens on VNNI: the GEMM
  // that unpacks each weight block once for all of them (bitwise the same results). Below that
  // the unpacking costs about what it saves (q4 8960 x 1536 from DRAM, one thread: 0.69 vs
  // 0.71 ms at 4 tokens, 0.82 vs 0.97 ms at 5, 1.1 vs 1.4 ms at 8). With AMX the same
  // threshold for the tile GEMM (not yet measured on an AMX machine).
  const bool amx = n >= 5 && use_amx();
  const bool gemm = !amx && n >= 5 && use_vnni();
  const int64_t stride = int64_t(amx    ? avx2::qact_amx_stride(cols)
                                 : gemm ? avx2::qact_t_stride(cols)
                                        : avx2::qact_stride(cols));
  const int64_t n_buf = amx ? (n + 15) / 16 * 16 : n;  // the tiles read whole 16-token rows
  thread_local Scratch s;
  uint8_t* act = s.get<uint8_t>(size_t(n_buf * stride));
  if (n == 1) avx2::quantize_act(X, cols, act);
  else
    pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; t++)
        if (amx) avx2::quantize_act_amx(X + t * cols, cols, act + t * stride);
        else if (gemm) avx2::quantize_act_t(X + t * cols, cols, act + t * stride);
        else avx2::quantize_act(X + t * cols, cols, act + t * stride);
    });
  if (amx) {
    thread_local PerThread tiles_tl;  // each thread's unpacked rows, tile results, accumulators
    PerThread& tiles = tiles_tl;
    tiles.reserve(pool.size(), avx2::qgemm_amx_scratch_bytes(cols));
    over_rows(pool, Ws, m, [&](int j, int64_t b, int64_t e, int tid) {
      avx2::qgemm_amx(Ws[j], act, n, Ys[j], Ws[j].rows, b, e, tiles.at<void>(tid));
    });
    return;
  }
  if (gemm) {
    thread_local PerThread unpacked_tl;  // each thread's unpacked row block
    PerThread& unpacked = unpacked_tl;   // the caller's, by reference: not each thread's own
    unpacked.reserve(pool.size(), avx2::qgemm_scratch_bytes(cols));
    over_rows(pool, Ws, m, [&](int j, int64_t b, int64_t e, int tid) {
      avx2::qgemm_t_vnni(Ws[j], act, n, Ys[j], Ws[j].rows, b, e, unpacked.at<void>(tid));
    });
    return;
  }
  const int64_t tb = token_block(stride);
  over_rows(pool, Ws, m, [&](int j, int64_t b, int64_t e, int) {
    const WeightView& W = Ws[j];
    for (int64_t t0 = 0; t0 < n; t0 += tb)
      qmatmul_any(W, act + t0 * stride, t0 + tb < n ? tb : n - t0, Ys[j] + t0 * W.rows, W.rows, b, e);
  });
}

void matvec(ThreadPool& pool, const WeightView& W, const float* x, float* y) {
  matmul_multi(pool, &W, 1, x, 1, &y);
}
void matmul(ThreadPool& pool, const WeightView& W, const float* X, int64_t n, float* Y) {
  matmul_multi(pool, &W, 1, X, n, &Y);
}

double int8_dot_peak_gmacs(ThreadPool& pool) {
  if (use_ref()) return 0;
  const int64_t iters = 1 << 21;  // ~8 ms per thread at 2 dots per cycle
  std::vector<int64_t> sink(size_t(pool.size()) * 8);
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_each([&](int tid) {
      sink[size_t(tid) * 8] += use_vnni() ? avx2::dot_peak_loop_vnni(iters) : avx2::dot_peak_loop(iters);
    });
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return double(pool.size()) * double(iters) * 12 * 32 / best / 1e9;
}

void dequant_row(const WeightView& W, int64_t r, float* out) {
  if (use_ref()) return ref::dequant_row(W, r, out);
  avx2::dequant_row(W, r, out);
}
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
  if (use_ref()) return ref::rmsnorm(out, x, w, n, eps);
  avx2::rmsnorm(out, x, w, n, eps);
}
void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin) {
  if (use_ref()) return ref::rope(v, n_heads, head_dim, cos, sin);
  avx2::rope(v, n_heads, head_dim, cos, sin);
}
void silu_mul(float* gate, const float* up, int64_t n) {
  if (use_ref()) return ref::silu_mul(gate, up, n);
  avx2::silu_mul(gate, up, n);
}

void sample_exp_row(const float* x, int64_t n, float mx, float t, float* out) {
  if (use_ref()) return ref::sample_exp_row(x, n, mx, t, out);
  avx2::sample_exp_row(x, n, mx, t, out);
}

void attention(ThreadPool& pool, float* out, const float* q, const void* k, const void* v, KvFormat kv,
               int64_t ctx_stride, int64_t pos0, int64_t n_q, int n_heads, int n_kv, int hd) {
  // Each thread's scores (and m, l) for as many positions as the cache holds: sized for the
  // cache, not grown as the sequence does (no allocation in the per-token loop).
  thread_local PerThread scratch_tl;
  PerThread& scratch = scratch_tl;  // the caller's, by reference: not each thread's own
  if (use_ref() || hd % 8 != 0) {
    scratch.reserve(pool.size(), size_t(ctx_stride) * 4);
    pool.parallel_for(n_q, [&](int64_t b, int64_t e, int tid) {
      for (int64_t t = b; t < e; t++) {
        const int64_t off = t * int64_t(n_heads) * hd;
        ref::attention(out + off, q + off, k, v, kv, ctx_stride, pos0 + t + 1, n_heads, n_kv, hd,
                       scratch.at<float>(tid));
      }
    });
    return;
  }
  const int G = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const size_t row = size_t(kv_row_bytes(kv, hd));
  // Work items: (query position, kv head, position split). Decode has few items, so long
  // contexts are split over positions (partial softmax, merged below) to use every thread.
  const int64_t base_items = n_q * n_kv, max_pos = pos0 + n_q;
  int64_t nsplit = 1;
  if (base_items < pool.size() && max_pos >= 256) {
    nsplit = (pool.size() + base_items - 1) / base_items;
    if (nsplit > max_pos / 128) nsplit = max_pos / 128;
  }
  const int64_t items = base_items * nsplit;
  const int64_t part = int64_t(G) * hd + 2 * G;  // out, m, l of one item
  thread_local Scratch ps;
  float* parts = nsplit > 1 ? ps.get<float>(size_t(items * part) * 4) : nullptr;
  auto* const partial = use_vnni() ? avx2::attn_partial_wide : avx2::attn_partial;
  scratch.reserve(pool.size(), size_t(G * ctx_stride + 2 * G) * 4);
  pool.parallel_for(items, [&](int64_t b, int64_t e, int tid) {
    float* const sc = scratch.at<float>(tid);  // [G, ctx_stride] scores, then m and l
    float* const ml = sc + G * ctx_stride;
    for (int64_t it = b; it < e; it++) {
      const int64_t s = it % nsplit, bi = it / nsplit, kvh = bi % n_kv, o = bi / n_kv;
      // alternate short and long causal rows so contiguous chunks carry equal work
      const int64_t t = o % 2 == 0 ? o / 2 : n_q - 1 - o / 2;
      const int64_t n_pos = pos0 + t + 1, p0 = n_pos * s / nsplit, p1 = n_pos * (s + 1) / nsplit;
      const int64_t hoff = (t * n_heads + kvh * G) * hd;
      const auto* kb = static_cast<const uint8_t*>(k) + size_t(kvh * ctx_stride) * row;
      const auto* vb = static_cast<const uint8_t*>(v) + size_t(kvh * ctx_stride) * row;
      if (nsplit == 1) {
        float* o_ = out + hoff;
        partial(q + hoff, kb, vb, kv, G, hd, p0, p1, scale, sc, o_, ml, ml + G);
        for (int g = 0; g < G; g++) {
          const float inv = 1.0f / ml[G + g];
          for (int i = 0; i < hd; i++) o_[g * hd + i] *= inv;
        }
      } else {
        float* pp = parts + it * part;
        partial(q + hoff, kb, vb, kv, G, hd, p0, p1, scale, sc, pp, pp + G * hd, pp + G * hd + G);
      }
    }
  });
  if (nsplit == 1) return;
  for (int64_t bi = 0; bi < base_items; bi++) {
    const int64_t kvh = bi % n_kv, t = bi / n_kv;  // n_q * n_kv < threads here: order is irrelevant
    for (int g = 0; g < G; g++) {
      float M = -INFINITY;
      for (int64_t s = 0; s < nsplit; s++) M = std::fmax(M, parts[(bi * nsplit + s) * part + G * hd + g]);
      float L = 0;
      float* o_ = out + (t * n_heads + kvh * G + g) * hd;
      for (int i = 0; i < hd; i++) o_[i] = 0;
      for (int64_t s = 0; s < nsplit; s++) {
        const float* pp = parts + (bi * nsplit + s) * part;
        const float f = std::exp(pp[G * hd + g] - M);
        L += f * pp[G * hd + G + g];
        for (int i = 0; i < hd; i++) o_[i] += f * pp[g * hd + i];
      }
      for (int i = 0; i < hd; i++) o_[i] /= L;
    }
  }
}

}  // namespace r1::cpu
