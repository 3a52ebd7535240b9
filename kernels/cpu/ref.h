// Scalar reference kernels: the ground truth every fast kernel (AVX2, CUDA) is checked against.
// Plain loops, float accumulation, dequantization inside the dot product. Shapes in comments.
#pragma once
#include <cstdint>
#include "quant/kv_format.h"
#include "quant/formats.h"

namespace r1::ref {

// w[r, :] . x                                   x: [cols]
float dot_row(const WeightView& W, int64_t r, const float* x);
// y[r] = W[r, :] . x for r in [r0, r1)         x: [cols], y: [rows]
void matvec(const WeightView& W, const float* x, float* y, int64_t r0, int64_t r1);
// Y[t, r] = W[r, :] . X[t, :] for r in [r0, r1), t < n     X: [n, cols], Y: [n, rows]
void matmul(const WeightView& W, const float* X, int64_t n, float* Y, int64_t r0, int64_t r1);
// out[:] = W[r, :] as floats (embedding lookup)  out: [cols]
void dequant_row(const WeightView& W, int64_t r, float* out);

// out = x * w / sqrt(mean(x^2) + eps)           x, w, out: [n]
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps);
// Rotate-half RoPE in place on n_heads heads of head_dim, pairs (i, i + hd/2).
// cos/sin: [hd/2] for this position.
void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin);
// gate[i] = silu(gate[i]) * up[i]               [n]
void silu_mul(float* gate, const float* up, int64_t n);
// In place, numerically stable.                 [n]
void softmax(float* x, int64_t n);
// out[i] = sample_exp((x[i] - mx) / t): the sampler's softmax numerators (core/sample_math.h).   [n]
void sample_exp_row(const float* x, int64_t n, float mx, float t, float* out);

// Causal attention of one query position over cache positions [0, n_pos), with GQA:
// query head h reads kv head h / (n_heads / n_kv). Scale 1/sqrt(hd).
//   q, out: [n_heads, hd]   k, v: [n_kv, ctx_stride] rows of kv_row_bytes(kv, hd)   scores: [n_pos]
void attention(float* out, const float* q, const void* k, const void* v, KvFormat kv, int64_t ctx_stride,
               int64_t n_pos, int n_heads, int n_kv, int hd, float* scores);

// --- int8-activation math of the SIMD q4/q8 kernels, scalar (parity tests can be near-exact) ---
// x[cols] -> per group of 32: d[g] = amax / 127, q = nearbyint(x * (127 / amax)) (0 if amax == 0).
void quantize_act_q8(const float* x, int64_t cols, int8_t* q, float* d);
// y[r] = sum_g (dw[r,g] * d[g]) * sum_i wq[r,i] * q[i]   (integer dot per group; W q4 or q8)
void matvec_q8act(const WeightView& W, const float* x, float* y, int64_t r0, int64_t r1);
// Each token quantized on its own.          X: [n, cols], Y: [n, rows]
void matmul_q8act(const WeightView& W, const float* X, int64_t n, float* Y, int64_t r0, int64_t r1);

}  // namespace r1::ref
