// Fused-dequantization matrix products: y[t, r] = W[r, :] . x[t, :] for up to 3 matrices that
// read the same input, with the dequantization inside the dot product (each weight byte is read
// once per token tile, with 16-byte loads, and never written back as floats).
//
// A warp owns two rows (or, for a gated MLP, row r of gate and of up). Its lanes walk the row
// 16 bytes at a time, coalesced: a q4 lane takes one group of 32 weights per load, a q8 lane
// one half group, a float lane 8 elements. Partial dots of all tokens of a tile stay in
// registers; one warp reduction per output at the end, and the epilogue (bias, residual add,
// silu * up) is fused into the write.
//
// q4/q8 dots are integer: the activations come quantized per group of 32 (int8 + float scale),
// q4 codes become int8 codebook levels by byte permutes, and dp4a sums four products at once;
// per group, acc += (w_scale * x_scale) * isum, the CPU reference's arithmetic.
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda {
namespace {

constexpr int kWarps = 4;        // per block
constexpr int kRowsPerWarp = 2;

using Job = detail::MatJob;
struct Jobs {
  Job job[3];
  int n_jobs = 0;
  int task_end[3] = {0, 0, 0};  // cumulative warp tasks
  int cols = 0;
  int glu = 0;
};

using detail::kT0;
using detail::kT1;
using detail::kT2;
using detail::kT3;

// Levels of the four codes in the low 16 bits of w (nibble k -> byte k).
__device__ __forceinline__ int q4_levels(uint32_t w) {
  const uint32_t idx = w & 0x7777u;                      // entry within a half table
  const uint32_t lo = __byte_perm(kT0, kT1, idx);         // codes 0-7
  const uint32_t hi = __byte_perm(kT2, kT3, idx);         // codes 8-15
  const uint32_t pick = 0x3210u | ((w & 0x8888u) >> 1);   // byte k from lo (k) or hi (k + 4)
  return int(__byte_perm(lo, hi, pick));
}

// Integer dot of one q4 group with one activation group. Byte j of the group holds weights j
// (low nibble) and j + 16 (high): code word i's low half is weights 4i, 4i+16, 4i+1, 4i+17 and
// its high half 4i+2, 4i+18, 4i+3, 4i+19, so the activation bytes are paired to match.
__device__ __forceinline__ int dot_q4(const int* L, const int* X) {
  int s = 0;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    s = __dp4a(L[2 * i], int(__byte_perm(uint32_t(X[i]), uint32_t(X[i + 4]), 0x5140)), s);
    s = __dp4a(L[2 * i + 1], int(__byte_perm(uint32_t(X[i]), uint32_t(X[i + 4]), 0x7362)), s);
  }
  return s;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ void load_x8(const float* x, float* v) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(x));
  const float4 b = __ldg(reinterpret_cast<const float4*>(x) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

// 8 consecutive float-format weights starting at element e of a row.
template <int F>
__device__ __forceinline__ void load_w8(const uint8_t* row, int e, float* w) {
  if constexpr (F == int(Format::F32)) {
    load_x8(reinterpret_cast<const float*>(row) + e, w);
  } else {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(row + 2 * size_t(e)));
    const uint32_t p[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      if constexpr (F == int(Format::BF16)) {
        w[2 * i] = __uint_as_float(p[i] << 16);
        w[2 * i + 1] = __uint_as_float(p[i] & 0xffff0000u);
      } else {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&p[i]));
        w[2 * i] = f.x;
        w[2 * i + 1] = f.y;
      }
    }
  }
}

template <int F>
__device__ __forceinline__ float load_w1(const uint8_t* row, int e) {
  if constexpr (F == int(Format::F32)) return __ldg(reinterpret_cast<const float*>(row) + e);
  const uint16_t h = __ldg(reinterpret_cast<const unsigned short*>(row) + e);
  if constexpr (F == int(Format::BF16)) return __uint_as_float(uint32_t(h) << 16);
  return __half2float(__ushort_as_half(h));
}

// Partial dots of rows a and b (b may be null) with tokens [t0, t0 + NT) of x, in acc[row][t].
template <int F, int NT>
__device__ __forceinline__ void row_dots(const uint8_t* ca, const uint16_t* sa, const uint8_t* cb, const uint16_t* sb,
                                         const Act& x, int cols, int t0, int n, float (&acc)[2][NT]) {
  const int lane = threadIdx.x & 31;
  if constexpr (F == int(Format::Q4) || F == int(Format::Q8)) {
    const int G = cols / 32;
    for (int g = lane; g < G; g += 32) {
      // weights of both rows for this group: int8 levels (q4 through the codebook)
      int La[8], Lb[8];
      float swa, swb = 0.f;
      if constexpr (F == int(Format::Q4)) {
        const uint4 wa = __ldg(reinterpret_cast<const uint4*>(ca) + g);
        const uint32_t va[4] = {wa.x, wa.y, wa.z, wa.w};
#pragma unroll
        for (int i = 0; i < 4; i++) La[2 * i] = q4_levels(va[i]), La[2 * i + 1] = q4_levels(va[i] >> 16);
        if (cb) {
          const uint4 wb = __ldg(reinterpret_cast<const uint4*>(cb) + g);
          const uint32_t vb[4] = {wb.x, wb.y, wb.z, wb.w};
#pragma unroll
          for (int i = 0; i < 4; i++) Lb[2 * i] = q4_levels(vb[i]), Lb[2 * i + 1] = q4_levels(vb[i] >> 16);
        }
      } else {
        const uint4* pa = reinterpret_cast<const uint4*>(ca) + 2 * g;
        const uint4 a0 = __ldg(pa), a1 = __ldg(pa + 1);
        La[0] = a0.x; La[1] = a0.y; La[2] = a0.z; La[3] = a0.w; La[4] = a1.x; La[5] = a1.y; La[6] = a1.z; La[7] = a1.w;
        if (cb) {
          const uint4* pb = reinterpret_cast<const uint4*>(cb) + 2 * g;
          const uint4 b0 = __ldg(pb), b1 = __ldg(pb + 1);
          Lb[0] = b0.x; Lb[1] = b0.y; Lb[2] = b0.z; Lb[3] = b0.w; Lb[4] = b1.x; Lb[5] = b1.y; Lb[6] = b1.z; Lb[7] = b1.w;
        }
      }
      swa = __half2float(__ushort_as_half(__ldg(sa + g)));
      if (cb) swb = __half2float(__ushort_as_half(__ldg(sb + g)));
#pragma unroll
      for (int t = 0; t < NT; t++) {
        if (t0 + t >= n) break;
        const int4* xq = reinterpret_cast<const int4*>(x.q + size_t(t0 + t) * cols) + 2 * g;
        const int4 x0 = __ldg(xq), x1 = __ldg(xq + 1);
        const int X[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
        const float dx = __ldg(x.d + size_t(t0 + t) * G + g);
        int sa_i, sb_i = 0;
        if constexpr (F == int(Format::Q4)) {
          sa_i = dot_q4(La, X);
          if (cb) sb_i = dot_q4(Lb, X);
        } else {
          sa_i = 0;
#pragma unroll
          for (int k = 0; k < 8; k++) sa_i = __dp4a(La[k], X[k], sa_i);
          if (cb) {
#pragma unroll
            for (int k = 0; k < 8; k++) sb_i = __dp4a(Lb[k], X[k], sb_i);
          }
        }
        acc[0][t] += (swa * dx) * float(sa_i);
        if (cb) acc[1][t] += (swb * dx) * float(sb_i);
      }
    }
  } else if (cols % 8) {  // odd widths (float formats only): an element per lane, no vector loads
    for (int e = lane; e < cols; e += 32) {
      const float wa = load_w1<F>(ca, e), wb = cb ? load_w1<F>(cb, e) : 0.f;
#pragma unroll
      for (int t = 0; t < NT; t++) {
        if (t0 + t >= n) break;
        const float xv = __ldg(x.x + size_t(t0 + t) * cols + e);
        acc[0][t] = fmaf(wa, xv, acc[0][t]);
        if (cb) acc[1][t] = fmaf(wb, xv, acc[1][t]);
      }
    }
  } else {
    for (int e = lane * 8; e < cols; e += 32 * 8) {
      float wa[8], wb[8];
      load_w8<F>(ca, e, wa);
      if (cb) load_w8<F>(cb, e, wb);
#pragma unroll
      for (int t = 0; t < NT; t++) {
        if (t0 + t >= n) break;
        float xv[8];
        load_x8(x.x + size_t(t0 + t) * cols + e, xv);
        float s0 = 0.f, s1 = 0.f;
#pragma unroll
        for (int k = 0; k < 8; k++) s0 = fmaf(wa[k], xv[k], s0);
        acc[0][t] += s0;
        if (cb) {
#pragma unroll
          for (int k = 0; k < 8; k++) s1 = fmaf(wb[k], xv[k], s1);
          acc[1][t] += s1;
        }
      }
    }
  }
}

__device__ __forceinline__ size_t row_code_bytes(int fmt, int cols) {
  switch (fmt) {
    case int(Format::F32): return size_t(cols) * 4;
    case int(Format::F16):
    case int(Format::BF16): return size_t(cols) * 2;
    case int(Format::Q8): return size_t(cols);
    default: return size_t(cols) / 2;
  }
}

// glu: row `task` of gate (A) and of up (B); otherwise rows 2 task, 2 task + 1 of A.
template <int F, int NT>
__device__ void run_task(const Job& A, const Job& B, bool glu, int cols, int task, const Act& x, int n) {
  const int G = cols / 32;
  const int ra = glu ? task : kRowsPerWarp * task;
  const int rb = glu ? task : ra + 1;
  const bool has_b = glu || rb < A.rows;
  const size_t rowb = row_code_bytes(F, cols);
  const uint8_t* ca = A.codes + size_t(ra) * rowb;
  const uint16_t* sa = A.scales ? A.scales + size_t(ra) * G : nullptr;
  const uint8_t* cb = has_b ? B.codes + size_t(rb) * rowb : nullptr;
  const uint16_t* sb = has_b && B.scales ? B.scales + size_t(rb) * G : nullptr;
  const int lane = threadIdx.x & 31;
  for (int t0 = 0; t0 < n; t0 += NT) {
    float acc[2][NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[0][t] = acc[1][t] = 0.f;
    row_dots<F, NT>(ca, sa, cb, sb, x, cols, t0, n, acc);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      acc[0][t] = warp_sum(acc[0][t]);
      acc[1][t] = warp_sum(acc[1][t]);
    }
    // lane t writes token t0 + t (lane NT + t the second row's)
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t0 + t >= n) break;
      if (glu) {
        if (lane == t) {
          const float g = acc[0][t], u = acc[1][t];
          A.y[size_t(t0 + t) * A.rows + ra] = g / (1.0f + expf(-g)) * u;
        }
        continue;
      }
      if (lane == t) {
        float v = acc[0][t];
        if (A.bias) v += A.bias[ra];
        float* y = A.y + size_t(t0 + t) * A.rows + ra;
        *y = A.accumulate ? *y + v : v;
      }
      if (has_b && lane == NT + t) {
        float v = acc[1][t];
        if (A.bias) v += A.bias[rb];
        float* y = A.y + size_t(t0 + t) * A.rows + rb;
        *y = A.accumulate ? *y + v : v;
      }
    }
  }
}

template <int NT>
__global__ void __launch_bounds__(kWarps * 32) k_matmul(const Jobs J, const Act x, int n) {
  const int task = blockIdx.x * kWarps + int(threadIdx.x >> 5);
  int k = 0;
  if (task >= J.task_end[0]) k = task >= J.task_end[1] ? 2 : 1;
  // the last block's spare warps (and job slots past n_jobs, whose task_end stays 0)
  if (k >= J.n_jobs || task >= (k == 0 ? J.task_end[0] : k == 1 ? J.task_end[1] : J.task_end[2])) return;
  const int local = task - (k == 0 ? 0 : k == 1 ? J.task_end[0] : J.task_end[1]);
  // constant indices only: a run-time index into a kernel parameter copies it to local memory
  const Job& A = k == 0 ? J.job[0] : k == 1 ? J.job[1] : J.job[2];
  const Job& B = J.glu ? J.job[1] : A;
  switch (A.fmt) {
    case int(Format::Q4): run_task<int(Format::Q4), NT>(A, B, J.glu, J.cols, local, x, n); break;
    case int(Format::Q8): run_task<int(Format::Q8), NT>(A, B, J.glu, J.cols, local, x, n); break;
    case int(Format::BF16): run_task<int(Format::BF16), NT>(A, B, J.glu, J.cols, local, x, n); break;
    case int(Format::F16): run_task<int(Format::F16), NT>(A, B, J.glu, J.cols, local, x, n); break;
    default: run_task<int(Format::F32), NT>(A, B, J.glu, J.cols, local, x, n); break;
  }
}

}  // namespace

void matmul(const MatOut* outs, int n_outs, const Act& a, int64_t n, bool glu, bool tensor_cores) {
  if (n_outs < 1 || n_outs > 3 || (glu && n_outs != 2)) fail_input("internal: cuda::matmul takes 1-3 outputs (2 with glu)");
  if (n <= 0) return;
  if (tensor_cores && n >= kMmaMinTokens) {
    bool all_q = a.q && a.d;
    for (int k = 0; k < n_outs; k++) all_q = all_q && is_quantized(outs[k].w.fmt);
    if (all_q && (glu || n_outs == 1)) {
      if (detail::qgemm(outs, n_outs, a, n, glu)) return;
    } else if (all_q) {
      // a launch per format: outputs of one format go together (q4 recipe: q alone, k and v)
      MatOut group[3];
      for (Format f : {Format::Q4, Format::Q8}) {
        int m = 0;
        for (int k = 0; k < n_outs; k++)
          if (outs[k].w.fmt == f) group[m++] = outs[k];
        if (m) detail::qgemm(group, m, a, n, false);
      }
      return;
    }
  }
  Jobs J;
  J.n_jobs = glu ? 1 : n_outs;
  J.glu = glu;
  J.cols = int(outs[0].w.cols);
  int tasks = 0;
  for (int k = 0; k < n_outs; k++) {
    const WeightView& w = outs[k].w;
    if (w.cols != J.cols) fail_input("internal: cuda::matmul outputs read inputs of different widths");
    if (w.cols % 32 != 0 && is_quantized(w.fmt)) fail_input("internal: quantized matrix width not a multiple of 32");
    if (w.rows > (int64_t(1) << 30)) fail_input("cuda: matrix too large");
    if (is_quantized(w.fmt) && (!a.q || !a.d)) fail_input("internal: cuda::matmul on q4/q8 needs quantized activations");
    if (!is_quantized(w.fmt) && !a.x) fail_input("internal: cuda::matmul on float weights needs f32 activations");
    J.job[k] = detail::mat_job(outs[k]);
  }
  if (glu) {
    if (outs[1].w.rows != outs[0].w.rows) fail_input("internal: gate and up of different shapes");
    if (outs[0].w.fmt != outs[1].w.fmt) fail_input("internal: gate and up in different formats");
    J.job[1] = detail::mat_job(outs[1]);
    tasks = int(outs[0].w.rows);
    J.task_end[0] = tasks;
  } else {
    for (int k = 0; k < n_outs; k++) {
      tasks += int((outs[k].w.rows + kRowsPerWarp - 1) / kRowsPerWarp);
      J.task_end[k] = tasks;
    }
  }
  const dim3 grid((tasks + kWarps - 1) / kWarps), block(kWarps * 32);
  cudaStream_t s = detail::stream();
  if (n == 1) k_matmul<1><<<grid, block, 0, s>>>(J, a, int(n));
  else if (n == 2) k_matmul<2><<<grid, block, 0, s>>>(J, a, int(n));
  else if (n <= 4) k_matmul<4><<<grid, block, 0, s>>>(J, a, int(n));
  else k_matmul<8><<<grid, block, 0, s>>>(J, a, int(n));
  R1_CUDA_LAUNCHED("matmul");
}

}  // namespace r1::cuda
