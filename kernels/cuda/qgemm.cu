// Tensor-core products for q4/q8 weights and many tokens (prefill chunks): int8 mma
// (m16n8k32, s8 x s8 -> s32), one group of 32 weights per k step, so each mma gives exact
// integer group sums; the per-group scales are applied in float after each group, as the CPU
// reference does: acc += (w_scale * x_scale) * isum.
//
// A block computes 32 weight rows x 64 tokens with 4 warps (2 x 2, each 16 rows x 32 tokens).
// Per stage it stages 4 groups of the rows' codes (q4 turned into int8 codebook levels) and of
// the tokens' int8 activations in shared memory. Integer sums are order-free, so q4 levels and
// activations only need the same k order: q4 keeps its nibble interleave (weights 4i, 4i+16,
// 4i+1, 4i+17, ...) and the activations are permuted to match when staged.
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda::detail {
namespace {

constexpr int kBM = 32, kBN = 64, kStageGroups = 4, kThreads = 128;
constexpr int kWordStride = 12;  // 8 words of a group's codes + 4 pad: conflict-free fragment loads

using QJob = MatJob;
struct QJobs {
  QJob job[3];
  int tile_end[3] = {0, 0, 0};  // cumulative row tiles
  int n_jobs = 0, cols = 0, glu = 0;
};

__device__ __forceinline__ int q4_lv(uint32_t w) {
  const uint32_t idx = w & 0x7777u;
  const uint32_t lo = __byte_perm(kT0, kT1, idx), hi = __byte_perm(kT2, kT3, idx);
  return int(__byte_perm(lo, hi, 0x3210u | ((w & 0x8888u) >> 1)));
}

__device__ __forceinline__ void mma_s8(int (&c)[4], const int (&a)[4], int b0, int b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One matrix (or gate and up) over a 32-row x 64-token tile; acc[m][tile][e] per matrix m.
template <int F, int M>
__device__ void tile_product(const QJob* J, int r0, int t0, int n, int cols, const Act& x, float (&acc)[M][4][4]) {
  __shared__ __align__(16) int As[M][kStageGroups][kBM][kWordStride];
  __shared__ __align__(16) int Bs[kStageGroups][kBN][kWordStride];
  __shared__ float Ws[M][kStageGroups][kBM];
  __shared__ float Xs[kStageGroups][kBN];
  const int G = cols / 32, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wr = (warp & 1) * 16, wt = (warp >> 1) * 32;  // this warp's rows and tokens in the tile
  const int g4 = lane >> 2, q4i = lane & 3;
  // Software pipeline: the next stage's global loads are in flight (in registers) while this
  // stage's mma run from shared memory. Each thread stages kStageGroups * kBM / kThreads = 1
  // weight entry per matrix and kStageGroups * kBN / kThreads = 2 activation entries.
  static_assert(kStageGroups * kBM == kThreads && kStageGroups * kBN == 2 * kThreads, "staging map");
  constexpr int WW = F == int(Format::Q4) ? 4 : 8;  // raw weight words per entry
  uint32_t wraw[M][WW];
  uint16_t sraw[M];
  uint32_t xraw[2][8];
  float draw[2];
  const int ar = tid % kBM, ag = tid / kBM;  // weight entry: row ar, group ag of the stage
  auto load = [&](int s0) {
    const int g = s0 + ag, row = r0 + ar;
#pragma unroll
    for (int m = 0; m < M; m++) {
      if (g < G && row < J[m].rows) {
        const uint4* p = reinterpret_cast<const uint4*>(J[m].codes + size_t(row) * (cols / 32) * (WW * 4)) + (WW / 4) * g;
#pragma unroll
        for (int h = 0; h < WW / 4; h++) {
          const uint4 u = __ldg(p + h);
          wraw[m][4 * h] = u.x, wraw[m][4 * h + 1] = u.y, wraw[m][4 * h + 2] = u.z, wraw[m][4 * h + 3] = u.w;
        }
        sraw[m] = __ldg(J[m].scales + size_t(row) * G + g);
      } else {
#pragma unroll
        for (int k = 0; k < WW; k++) wraw[m][k] = 0;
        sraw[m] = 0;
      }
    }
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int i = tid + e * kThreads, t = i % kBN, gx = s0 + i / kBN, tok = t0 + t;
      if (gx < G && tok < n) {
        const int4* p = reinterpret_cast<const int4*>(x.q + size_t(tok) * cols) + 2 * gx;
        const int4 a = __ldg(p), b = __ldg(p + 1);
        xraw[e][0] = a.x, xraw[e][1] = a.y, xraw[e][2] = a.z, xraw[e][3] = a.w;
        xraw[e][4] = b.x, xraw[e][5] = b.y, xraw[e][6] = b.z, xraw[e][7] = b.w;
        draw[e] = __ldg(x.d + size_t(tok) * G + gx);
      } else {
#pragma unroll
        for (int k = 0; k < 8; k++) xraw[e][k] = 0;
        draw[e] = 0.f;
      }
    }
  };
  // registers -> shared memory: q4 codes become int8 levels, activations take the weights' k order
  auto store = [&]() {
#pragma unroll
    for (int m = 0; m < M; m++) {
      int* dst = As[m][ag][ar];
      if constexpr (F == int(Format::Q4)) {
#pragma unroll
        for (int k = 0; k < 4; k++) dst[2 * k] = q4_lv(wraw[m][k]), dst[2 * k + 1] = q4_lv(wraw[m][k] >> 16);
      } else {
#pragma unroll
        for (int k = 0; k < 8; k++) dst[k] = int(wraw[m][k]);
      }
      Ws[m][ag][ar] = __half2float(__ushort_as_half(sraw[m]));
    }
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int i = tid + e * kThreads, t = i % kBN, gg = i / kBN;
      int* dst = Bs[gg][t];
      if constexpr (F == int(Format::Q4)) {
#pragma unroll
        for (int k = 0; k < 4; k++)
          dst[2 * k] = int(__byte_perm(xraw[e][k], xraw[e][k + 4], 0x5140)),
                  dst[2 * k + 1] = int(__byte_perm(xraw[e][k], xraw[e][k + 4], 0x7362));
      } else {
#pragma unroll
        for (int k = 0; k < 8; k++) dst[k] = int(xraw[e][k]);
      }
      Xs[gg][t] = draw[e];
    }
  };
  load(0);
  for (int s0 = 0; s0 < G; s0 += kStageGroups) {
    store();
    __syncthreads();
    if (s0 + kStageGroups < G) load(s0 + kStageGroups);
    for (int gg = 0; gg < kStageGroups && s0 + gg < G; gg++) {
      int b[4][2];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int* bp = Bs[gg][wt + j * 8 + g4];
        b[j][0] = bp[q4i];
        b[j][1] = bp[4 + q4i];
      }
      float xs[4][2];
#pragma unroll
      for (int j = 0; j < 4; j++) xs[j][0] = Xs[gg][wt + j * 8 + 2 * q4i], xs[j][1] = Xs[gg][wt + j * 8 + 2 * q4i + 1];
#pragma unroll
      for (int m = 0; m < M; m++) {
        const int* ap0 = As[m][gg][wr + g4];
        const int* ap1 = As[m][gg][wr + g4 + 8];
        const int a[4] = {ap0[q4i], ap1[q4i], ap0[4 + q4i], ap1[4 + q4i]};
        const float w0 = Ws[m][gg][wr + g4], w1 = Ws[m][gg][wr + g4 + 8];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          int c[4] = {0, 0, 0, 0};
          mma_s8(c, a, b[j][0], b[j][1]);
          // c: (row g4, tokens 2q, 2q+1), (row g4 + 8, same tokens)
          acc[m][j][0] += (w0 * xs[j][0]) * float(c[0]);
          acc[m][j][1] += (w0 * xs[j][1]) * float(c[1]);
          acc[m][j][2] += (w1 * xs[j][0]) * float(c[2]);
          acc[m][j][3] += (w1 * xs[j][1]) * float(c[3]);
        }
      }
    }
    __syncthreads();
  }
}

template <int F>
__global__ void __launch_bounds__(kThreads) k_qgemm(const QJobs J, const Act x, int n) {
  const int tile = blockIdx.x, t0 = blockIdx.y * kBN;
  int k = 0;
  if (tile >= J.tile_end[0]) k = tile >= J.tile_end[1] ? 2 : 1;
  if (k >= J.n_jobs) return;
  const int r0 = (tile - (k == 0 ? 0 : k == 1 ? J.tile_end[0] : J.tile_end[1])) * kBM;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wr = (warp & 1) * 16, wt = (warp >> 1) * 32, g4 = lane >> 2, q4i = lane & 3;
  auto store = [&](const QJob& A, int r, int t, float v) {
    if (r >= A.rows || t >= n) return;
    if (A.bias) v += A.bias[r];
    float* y = A.y + size_t(t) * A.rows + r;
    *y = A.accumulate ? *y + v : v;
  };
  if (J.glu) {
    float acc[2][4][4] = {};
    tile_product<F, 2>(J.job, r0, t0, n, J.cols, x, acc);
    const QJob& A = J.job[0];
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = r0 + wr + g4 + (e >= 2 ? 8 : 0), t = t0 + wt + j * 8 + 2 * q4i + (e & 1);
        if (r < A.rows && t < n) {
          const float g = acc[0][j][e], u = acc[1][j][e];
          A.y[size_t(t) * A.rows + r] = g / (1.0f + expf(-g)) * u;
        }
      }
    return;
  }
  const QJob A = k == 0 ? J.job[0] : k == 1 ? J.job[1] : J.job[2];
  float acc[1][4][4] = {};
  tile_product<F, 1>(&A, r0, t0, n, J.cols, x, acc);
#pragma unroll
  for (int j = 0; j < 4; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      store(A, r0 + wr + g4 + (e >= 2 ? 8 : 0), t0 + wt + j * 8 + 2 * q4i + (e & 1), acc[0][j][e]);
}

}  // namespace

bool qgemm(const MatOut* outs, int n_outs, const Act& a, int64_t n, bool glu) {
  const Format f = outs[0].w.fmt;
  if (f != Format::Q4 && f != Format::Q8) return false;
  for (int k = 0; k < n_outs; k++)
    if (outs[k].w.fmt != f) return false;  // one format per launch (the kernel is specialized on it)
  QJobs J;
  J.cols = int(outs[0].w.cols);
  J.glu = glu;
  J.n_jobs = glu ? 1 : n_outs;
  int tiles = 0;
  for (int k = 0; k < n_outs; k++) {
    const WeightView& w = outs[k].w;
    J.job[k] = mat_job(outs[k]);
    if (glu && k == 1) break;
    tiles += int((w.rows + kBM - 1) / kBM);
    J.tile_end[k] = tiles;
    if (glu) J.tile_end[1] = J.tile_end[2] = tiles;
  }
  const dim3 grid(unsigned(tiles), unsigned((n + kBN - 1) / kBN));
  if (f == Format::Q4) k_qgemm<int(Format::Q4)><<<grid, kThreads, 0, stream()>>>(J, a, int(n));
  else k_qgemm<int(Format::Q8)><<<grid, kThreads, 0, stream()>>>(J, a, int(n));
  R1_CUDA_LAUNCHED("qgemm");
  return true;
}

}  // namespace r1::cuda::detail
