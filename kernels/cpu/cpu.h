// The CPU backend's entry points: each op dispatches to the fastest kernel this CPU supports
// (AVX2 when present, the scalar reference otherwise, or always with R1_KERNELS=ref) and splits
// matrix rows over the thread pool.
#pragma once
#include <cstdint>
#include <string>

#include "quant/kv_format.h"
#include "core/threadpool.h"
#include "quant/formats.h"

namespace r1::cpu {

// Which kernel set runs: "avx2-vnni-amx" (the next, with AMX tiles for q prompts and batches),
// "avx2-vnni" (AVX2 with the AVX512-VNNI integer dot), "avx2" or "ref". R1_KERNELS=ref forces
// the reference, R1_KERNELS=avx2 disables the VNNI dot.
const char* kernel_set();
void force_reference(bool on);  // for tests and benchmarks
void force_no_vnni(bool on);    // for tests and benchmarks: plain AVX2 integer dot
// AMX int8 tiles for q4/q5/q8 prompts and batches ("avx2-vnni-amx"): opt-in with R1_AMX=1 (or
// force_amx) until measured on an AMX machine. Whether this CPU has them and the kernel grants
// their state; if not, why.
bool amx_available(std::string* why = nullptr);
void force_amx(bool on);  // for tests and benchmarks; effective only where amx_available()

// q4/q8 weights run on int8-quantized activations (per token, per group of 32: see avx2.h and
// ref::matvec_q8act); float formats in f32. Scratch is per calling thread, grow-only.
// y = W x                      x: [cols], y: [rows]
void matvec(ThreadPool& pool, const WeightView& W, const float* x, float* y);
// Y = X W^T                    X: [n, cols], Y: [n, rows]
void matmul(ThreadPool& pool, const WeightView& W, const float* X, int64_t n, float* Y);
// Ys[j] = X Ws[j]^T for m <= 8 matrices that read the same input (q/k/v, gate/up): one pass
// over the threads, activations quantized once. matvec and matmul are the m == 1 case; row t
// of any result is bitwise what a matvec of token t gives.
void matmul_multi(ThreadPool& pool, const WeightView* Ws, int m, const float* X, int64_t n, float* const* Ys);
void dequant_row(const WeightView& W, int64_t r, float* out);
// Measured peak of the int8 dot of this kernel set over the pool's threads, in GMAC/s (one MAC:
// an int8 x int8 product added to a sum): the compute ceiling of q4/q5/q8 prefill. 0 for "ref".
double int8_dot_peak_gmacs(ThreadPool& pool);
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps);
void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin);
void silu_mul(float* gate, const float* up, int64_t n);
// out[i] = sample_exp((x[i] - mx) / t) (core/sample_math.h), the same bits on every kernel set.
void sample_exp_row(const float* x, int64_t n, float mx, float t, float* out);
// Attention for n_q consecutive query positions; query t sees cache positions [0, pos0 + t].
//   q, out: [n_q, n_heads, hd]   k, v: [n_kv, ctx_stride] rows   (see ref::attention)
void attention(ThreadPool& pool, float* out, const float* q, const void* k, const void* v, KvFormat kv,
               int64_t ctx_stride, int64_t pos0, int64_t n_q, int n_heads, int n_kv, int hd);

}  // namespace r1::cpu
