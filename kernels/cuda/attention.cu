// Attention of the fused kernels (CudaKernels::Fused, models/cuda_batch.h): every row of a pass over its slot's f16
// cache positions [0, pos], in one launch. Flash-decoding: a row's positions are split into
// chunks; a work item is (row, kv head, chunk), so the G query heads of a kv head share each K
// and V read (GQA packing). The chunk size follows the row's own position on the device (64
// positions, doubled until a row has at most kMaxSplits chunks), so one captured graph serves
// every position, no CTA is launched for positions not yet written, and a row's bits depend only
// on its own position. CTAs loop over the items; within an item, 256 positions at a time with a
// running max and sum (online softmax). The last CTA to finish a (row, kv head) merges its
// chunks (a counter per pair, reset by that CTA), so there is no second launch.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda {
namespace {

constexpr int kThreads = 128, kWarps = kThreads / 32;
constexpr int kBlock = 256;  // positions per pass inside an item
constexpr int kMaxG = 8;     // query heads per kv head (attention_fused_supports)
__host__ __device__ constexpr int imax(int a, int b) { return a > b ? a : b; }

__device__ __forceinline__ int chunk_for(int pos) {
  int ch = 64;
  while (int64_t(ch) * kMaxAttnSplits < int64_t(pos) + 1) ch <<= 1;
  return ch;
}
__device__ __forceinline__ int splits_for(int pos) {
  const int ch = chunk_for(pos);
  return (pos + ch) / ch;  // ceil((pos + 1) / ch)
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ void halves8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int e = 0; e < 4; e++) {
    const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&w[e]));
    f[2 * e] = v.x;
    f[2 * e + 1] = v.y;
  }
}

// One item: query heads [kvh * G, kvh * G + G) of row t over positions [p0, p1). Leaves the
// unnormalized output in o_sm [G][HD] and the running max / sum in m_sm / l_sm.
template <int HD>
__device__ void item(const float* q, int n_heads, int G, const KVLayout& kv, int64_t base, float scale, int t, int kvh,
                     int p0, int p1, float* qs, float* buf, float* m_sm, float* l_sm, float* corr) {
  constexpr int kLanesPerRow = HD / 8;        // 16-byte V loads per row
  constexpr int kSlots = kThreads / kLanesPerRow;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  for (int i = tid; i < G * HD; i += kThreads) qs[i] = q[(int64_t(t) * n_heads + kvh * G) * HD + i];
  if (tid < kMaxG) m_sm[tid] = -INFINITY, l_sm[tid] = 0.f;
  float acc[kMaxG][8];
#pragma unroll
  for (int h = 0; h < kMaxG; h++)
#pragma unroll
    for (int e = 0; e < 8; e++) acc[h][e] = 0.f;
  float* sc = buf;  // scores [G][kBlock]
  const uint16_t* K = kv.k + base;
  const uint16_t* V = kv.v + base;
  const int slot = tid / kLanesPerRow, dc = tid % kLanesPerRow;
  __syncthreads();
  for (int b0 = p0; b0 < p1; b0 += kBlock) {
    const int L = min(kBlock, p1 - b0);
    // scores: 8 lanes per position (each 16 or 8 dims), 4 positions per warp, two such groups
    // per step with all their K loads issued first
    const int ps = lane >> 3, sub = lane & 7;
    constexpr int kW = HD / 64;  // 16-byte K loads per lane and position
    for (int j0 = warp * 8; j0 < L; j0 += kWarps * 8) {
      uint4 kr[2][kW];
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int j = j0 + 4 * u + ps;
#pragma unroll
        for (int w = 0; w < kW; w++)
          kr[u][w] = j < L ? reinterpret_cast<const uint4*>(K + int64_t(b0 + j) * HD)[8 * w + sub] : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int j = j0 + 4 * u + ps;
        float kf[HD / 8];
#pragma unroll
        for (int w = 0; w < kW; w++) halves8(kr[u][w], kf + 8 * w);
#pragma unroll
        for (int h = 0; h < kMaxG; h++) {
          if (h >= G) break;
          const float* qh = qs + h * HD;
          float s = 0.f;
#pragma unroll
          for (int w = 0; w < kW; w++)
#pragma unroll
            for (int e = 0; e < 8; e++) s += qh[64 * w + sub * 8 + e] * kf[8 * w + e];
          s += __shfl_xor_sync(0xffffffffu, s, 4);
          s += __shfl_xor_sync(0xffffffffu, s, 2);
          s += __shfl_xor_sync(0xffffffffu, s, 1);
          if (sub == 0 && j < L) sc[h * kBlock + j] = s * scale;
        }
      }
    }
    __syncthreads();
    // online softmax, a warp per head
    for (int h = warp; h < G; h += kWarps) {
      float m = -INFINITY;
      for (int j = lane; j < L; j += 32) m = fmaxf(m, sc[h * kBlock + j]);
      m = warp_max(m);
      const float m_new = fmaxf(m_sm[h], m);
      float s = 0.f;
      for (int j = lane; j < L; j += 32) {
        const float e = expf(sc[h * kBlock + j] - m_new);
        sc[h * kBlock + j] = e;
        s += e;
      }
      s = warp_sum(s);
      if (lane == 0) {
        const float c = expf(m_sm[h] - m_new);  // 0 on the first block (m = -inf)
        corr[h] = c;
        l_sm[h] = l_sm[h] * c + s;
        m_sm[h] = m_new;
      }
    }
    __syncthreads();
    // values: thread (slot, dc) sums rows slot, slot + kSlots, ... of its 8 dims
#pragma unroll
    for (int h = 0; h < kMaxG; h++) {
      if (h >= G) break;
      const float c = corr[h];
#pragma unroll
      for (int e = 0; e < 8; e++) acc[h][e] *= c;
    }
    for (int j0 = slot; j0 < L; j0 += 4 * kSlots) {  // four rows' loads in flight
      uint4 vr[4];
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int j = j0 + u * kSlots;
        vr[u] = j < L ? reinterpret_cast<const uint4*>(V + int64_t(b0 + j) * HD)[dc] : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int j = j0 + u * kSlots;
        if (j >= L) break;
        float v[8];
        halves8(vr[u], v);
#pragma unroll
        for (int h = 0; h < kMaxG; h++) {
          if (h >= G) break;
          const float p = sc[h * kBlock + j];
#pragma unroll
          for (int e = 0; e < 8; e++) acc[h][e] += p * v[e];
        }
      }
    }
    __syncthreads();  // sc is rewritten by the next block's scores
  }
  // sum the slots: buf [kSlots][G][HD], then o = buf summed in slot order, into buf's slot 0
#pragma unroll
  for (int h = 0; h < kMaxG; h++) {
    if (h >= G) break;
#pragma unroll
    for (int e = 0; e < 8; e++) buf[(slot * G + h) * HD + dc * 8 + e] = acc[h][e];
  }
  __syncthreads();
  for (int i = tid; i < G * HD; i += kThreads) {
    float s = 0.f;
    for (int k = 0; k < kSlots; k++) s += buf[k * G * HD + i];
    qs[i] = s;  // q is no longer needed: the output goes there
  }
  __syncthreads();
}

template <int HD>
__global__ void __launch_bounds__(kThreads) k_attention(float* out, const float* q, const RowPos* rows, int n, int n_heads,
                                                        KVLayout kv, int layer, float* work, int32_t* counters) {
  __shared__ float qs[kMaxG * HD];                                   // q, then the item's output
  __shared__ float buf[imax(kMaxG * kBlock, kMaxG * HD * (kThreads / (HD / 8)))];  // scores, then slot sums
  __shared__ float m_sm[kMaxG], l_sm[kMaxG], corr[kMaxG];
  __shared__ float wsm[kMaxG][kMaxAttnSplits], lsm[kMaxG];  // the merge's chunk weights and totals
  __shared__ int last;
  const int n_kv = int(kv.n_kv), G = n_heads / n_kv, tid = threadIdx.x;
  const float scale = 1.0f / sqrtf(float(HD));
  int total = 0;
  for (int t = 0; t < n; t++) total += n_kv * splits_for(rows[t].pos);
  for (int it = blockIdx.x; it < total; it += gridDim.x) {
    int t = 0, rest = it;
    for (;; t++) {
      const int c = n_kv * splits_for(rows[t].pos);
      if (rest < c) break;
      rest -= c;
    }
    const RowPos rp = rows[t];
    const int splits = splits_for(rp.pos), ch = chunk_for(rp.pos);
    const int kvh = rest / splits, split = rest % splits;
    const int p0 = split * ch, p1 = min(p0 + ch, rp.pos + 1);
    const int64_t base = (((int64_t(rp.slot) * kv.layers + layer) * kv.n_kv + kvh) * kv.ctx) * HD;
    item<HD>(q, n_heads, G, kv, base, scale, t, kvh, p0, p1, qs, buf, m_sm, l_sm, corr);
    float* dst = out + (int64_t(t) * n_heads + kvh * G) * HD;
    if (splits == 1) {
      for (int i = tid; i < G * HD; i += kThreads) dst[i] = qs[i] / l_sm[i / HD];
      __syncthreads();
      continue;
    }
    // a chunk: leave (max, sum, output) per head, then the last chunk to finish merges them all
    float* part = work + ((int64_t(t) * n_kv + kvh) * kMaxAttnSplits) * G * (HD + 2);
    float* mine = part + int64_t(split) * G * (HD + 2);
    for (int i = tid; i < G * HD; i += kThreads) mine[(i / HD) * (HD + 2) + 2 + i % HD] = qs[i];
    if (tid < G) mine[tid * (HD + 2)] = m_sm[tid], mine[tid * (HD + 2) + 1] = l_sm[tid];
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(counters + t * n_kv + kvh, 1) == splits - 1;
    __syncthreads();
    if (last) {  // merge: per head the max, each chunk's weight exp(m - max) and the total
      __threadfence();
      for (int h = tid >> 5; h < G; h += kWarps) {
        const int lane = tid & 31;
        float M = -INFINITY;
        for (int s = lane; s < splits; s += 32) M = fmaxf(M, __ldcg(part + (int64_t(s) * G + h) * (HD + 2)));
        M = warp_max(M);
        float Ls = 0.f;
        for (int s = lane; s < splits; s += 32) {
          const float* ps = part + (int64_t(s) * G + h) * (HD + 2);
          const float w = expf(__ldcg(ps) - M);
          wsm[h][s] = w;
          Ls += __ldcg(ps + 1) * w;
        }
        Ls = warp_sum(Ls);
        if (lane == 0) lsm[h] = Ls;
      }
      __syncthreads();
      for (int i = tid; i < G * HD; i += kThreads) {
        const int h = i / HD, d = i % HD;
        float a = 0.f;
#pragma unroll 4
        for (int s = 0; s < splits; s++) a += __ldcg(part + (int64_t(s) * G + h) * (HD + 2) + 2 + d) * wsm[h][s];
        dst[i] = a / lsm[h];
      }
      if (tid == 0) counters[t * n_kv + kvh] = 0;  // ready for the next launch
    }
    __syncthreads();
  }
}

}  // namespace

void attention_fused(float* out, const float* q, const RowPos* rows, int64_t n, int n_heads, const KVLayout& kv,
                     int64_t layer, float* work, int32_t* counters) {
  if (n <= 0) return;
  if (!attention_fused_supports(n_heads, int(kv.n_kv), kv.hd)) fail_input("internal: attention_fused shape not supported");
  static const int sms = device_info().sms;
  // four CTAs per SM (the items of a long context fill them; each CTA loops over its items)
  const int64_t most = n * kv.n_kv * kMaxAttnSplits;
  const unsigned grid = unsigned(std::min<int64_t>(most, int64_t(sms) * 4));
  if (kv.hd == 64)
    k_attention<64><<<grid, kThreads, 0, detail::stream()>>>(out, q, rows, int(n), n_heads, kv, int(layer), work, counters);
  else
    k_attention<128><<<grid, kThreads, 0, detail::stream()>>>(out, q, rows, int(n), n_heads, kv, int(layer), work, counters);
  R1_CUDA_LAUNCHED("attention (fused)");
}

}  // namespace r1::cuda
