// AVX2 + FMA + F16C kernels (and an AVX512-VNNI variant of the integer dot), chosen at run time
// by kernels/cpu/cpu.cpp. Every kernel here has a scalar twin in ref.h that does the same math.
// Which of them this CPU can run: kernels/cpu/cpu_features.h.
//
// q4/q8 weights are multiplied against activations quantized to int8 per group of 32 ("q8 act"):
//   y[r] = sum_g (dw[r,g] * dx[g]) * sum_{i in g} wq[r,i] * xq[i]      (ref::matvec_q8act)
// The quantized activations of one token live in one buffer of qact_stride(cols) bytes:
//   q  : int8[cols]   codes, each aligned 8-group chunk (256 values) stored pair-interleaved:
//                     for groups (a, b): a[0:16] b[0:16] a[16:32] b[16:32], which matches how a
//                     32-byte load of q4 nibbles splits into low/high halves; tail groups natural
//   u  : uint8[cols]  q + 128 (the unsigned operand of vpdpbusd for q8 weights)
//   dp : float[G]     dx per group; within each 8-group chunk in order 0 2 4 6 1 3 5 7 (the lane
//                     order the hadd reduction produces), tail groups natural
//   s  : int32[G]     128 * sum(q) per group, same order as dp (undoes the +128 of q4 levels;
//                     q5, whose codes are level + 16, takes s / 8)
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/kv_format.h"
#include "quant/formats.h"

namespace r1::avx2 {

// Software prefetch distance for a streamed weight row (every kernel that reads weights once):
// DRAM latency needs several KB in flight per core (measured best of 1-16 KB: q4, q5 and q8, one
// and two threads; bf16 row streams likewise).
inline constexpr int64_t kPfBytes = 8192;
// Rows of at least kPfL2Cols weights are fetched that far ahead into L2 only, and from L2 into
// L1 kPfNear bytes ahead. A far T0 prefetch holds one of the core's few L1 miss buffers for a
// whole DRAM latency and fills L1 with lines used once, which pushes out the activations every
// row reads again: on Zen 4, 7B's down_proj (18944 columns) streamed at 0.55-0.75x the other
// matrices' rate; with the L2 prefetch it runs 1.2-1.9x faster (q4, q5 and q8, one and two
// threads; scratch bench of every 1.5B/7B/14B shape, both ways alternated in one process).
// Short rows keep the T0 prefetch: q5's 1536-column matrices lost 10-20% with the L2 one.
// Measured on Zen 4 only: R1_PREFETCH=l2 (every row) or l1 (none) lets another CPU be compared
// without a rebuild; pf_l2_cols() is the threshold used.
inline constexpr int64_t kPfL2Cols = 2048, kPfNear = 512;
int64_t pf_l2_cols();

size_t qact_stride(int64_t cols);
// Quantize one token's activations x[cols] (cols % 32 == 0) into out (qact_stride bytes, 64-aligned).
void quantize_act(const float* x, int64_t cols, uint8_t* out);

// Y[t * ldy + r] = W[r, :] . x_t for r in [r0, r1), t < n; act: n buffers, qact_stride apart.
// W is q4 or q8. `_vnni` needs cpu_has_vnni().
void qmatmul(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1);
void qmatmul_vnni(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0,
                  int64_t r1);

// Batched q4/q8 GEMM (VNNI only): activations quantized by quantize_act_t (qact_t_stride bytes
// per token: the layout above plus the codes in the GEMM's transposed chunk layout); each
// (row, token) result is bitwise qmatmul_vnni's. scratch: qgemm_scratch_bytes(cols), 64-aligned,
// the calling thread's own.
size_t qact_t_stride(int64_t cols);
void quantize_act_t(const float* x, int64_t cols, uint8_t* out);
size_t qgemm_scratch_bytes(int64_t cols);
void qgemm_t_vnni(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0,
                  int64_t r1, void* scratch);

// The same on AMX int8 tiles (needs cpu_has_amx() and amx_request_permission(); the hardware's
// part is checked on AMX machines only, its layouts and epilogue everywhere through an emulated
// build, tests/amx_emulated.cpp). Activations by quantize_act_amx: qact_amx_stride bytes per
// token (the GEMV's layout, then the codes in natural order), and the buffer must hold n
// rounded up to 16 tokens (the tile reads 16; the extra results are dropped). Each (row,
// token) result is bitwise qmatmul_vnni's. scratch: qgemm_amx_scratch_bytes(cols), 64-aligned.
size_t qact_amx_stride(int64_t cols);
void quantize_act_amx(const float* x, int64_t cols, uint8_t* out);
size_t qgemm_amx_scratch_bytes(int64_t cols);
void qgemm_amx(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
               void* scratch);

// The integer dot the q kernels are built on, at its peak: iters x 12 independent dots of 32
// int8 MACs each (AVX2: vpmaddubsw + vpmaddwd + vpaddd; VNNI: vpdpbusd). The result keeps the
// work live.
int64_t dot_peak_loop(int64_t iters);
int64_t dot_peak_loop_vnni(int64_t iters);

// Float formats (f32, f16, bf16): Y[t * ldy + r] = W[r, :] . X[t, :]     X: [n, cols]
void fmatmul(const WeightView& W, const float* X, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1);
// The same (bitwise) with 32 vector registers; needs cpu_has_vnni().
void fmatmul_wide(const WeightView& W, const float* X, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1);
void dequant_row(const WeightView& W, int64_t r, float* out);

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps);
void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin);
void silu_mul(float* gate, const float* up, int64_t n);
void sample_exp_row(const float* x, int64_t n, float mx, float t, float* out);  // bitwise ref's

// Attention of g_heads query heads sharing one kv head over cache positions [p0, p1), as a
// partial softmax so that position ranges can run on different threads and merge later:
//   m[g] = max score, l[g] = sum exp(score - m[g]), out[g, :] = sum exp(score - m[g]) * v
//   q, out: [g_heads, hd]   k, v: this kv head's rows, [ctx] in format kv   scores: [g_heads * (p1 - p0)]
// hd % 8 == 0 (q8: hd % 32 == 0). Scores are pre-multiplied by `scale`.
void attn_partial(const float* q, const void* k, const void* v, KvFormat kv, int g_heads, int hd, int64_t p0,
                  int64_t p1, float scale, float* scores, float* out, float* m, float* l);
// The same (bitwise) with 32 vector registers; needs cpu_has_vnni().
void attn_partial_wide(const float* q, const void* k, const void* v, KvFormat kv, int g_heads, int hd, int64_t p0,
                       int64_t p1, float scale, float* scores, float* out, float* m, float* l);

}  // namespace r1::avx2
