// Attention of prompt runs on tensor cores (the fused kernels: a run of 2 or more consecutive
// positions of one slot, as a prompt chunk is). Flash attention: a CTA takes a tile of the run's
// rows and one kv head, the tile's query vectors (rows x the G heads of the kv head) as the mma's
// M, and walks the cache 64 positions at a time: S = Q K^T, a causal mask, an online softmax per
// query vector, O += P V. No partial results leave the CTA, so a prompt chunk of any length needs
// no scratch. A row's bits depend only on its own q and position: blocks of keys are taken in
// order, and blocks past a row's position are masked to exact zeros.
//
// Precision: the mma take f16 (m16n8k16, f32 accumulate). K and V already are f16 (the cache);
// Q and P are split into a high and a low half (x = hi + lo, both f16), so each product is two
// mma and carries about 22 bits, close to the f32 reference (ref::attention).
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda {
namespace {

constexpr int kThreads = 128, kWarps = 4;
constexpr int kM = 64;       // query vectors per CTA (16 per warp)
constexpr int kKeys = 64;    // cache positions per step
constexpr int kPad = 8;      // halves of padding per smem row: distinct banks for the fragment loads

__device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// (x, y) as a pair of halves, and the halves of what rounding left over.
__device__ __forceinline__ void split2(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x, y);
  const float2 hf = __half22float2(h);
  const __half2 l = __floats2half2_rn(x - hf.x, y - hf.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

template <int HD>
__global__ void __launch_bounds__(kThreads) k_prompt_attention(float* out, const float* q, const RowPos* rows,
                                                               const PromptTile* tiles, int n_heads, KVLayout kv,
                                                               int64_t layer) {
  constexpr int QS = HD + kPad, KS = HD + kPad, VS = kKeys + kPad;  // smem row strides (halves)
  extern __shared__ __align__(16) __half sm[];
  __half* Qh = sm;                    // [kM][QS] high halves of q
  __half* Ql = Qh + kM * QS;          // [kM][QS] low halves
  __half* Ks = Ql + kM * QS;          // [kKeys][KS] keys of this step
  __half* Vt = Ks + kKeys * KS;       // [HD][VS] values of this step, transposed
  const PromptTile tile = tiles[blockIdx.x];
  const int kvh = blockIdx.y, G = n_heads / int(kv.n_kv), tq = kM / G;  // rows per tile: tq
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g4 = lane >> 2, qd = lane & 3;
  const RowPos first = rows[tile.row0];
  const int nrows = min(tile.n, tq), mv = nrows * G;  // query vectors in use
  const float scale = 1.0f / sqrtf(float(HD));
  // q of the tile: vector m = row (m / G), head kvh * G + m % G
  for (int i = tid; i < kM * HD; i += kThreads) {
    const int m = i / HD, d = i % HD;
    float x = 0.f;
    if (m < mv) x = q[((int64_t(tile.row0) + m / G) * n_heads + kvh * G + m % G) * HD + d];
    const __half h = __float2half_rn(x);
    Qh[m * QS + d] = h;
    Ql[m * QS + d] = __float2half_rn(x - __half2float(h));
  }
  // this thread's query vectors: rows g4 and g4 + 8 of the warp's 16, and their positions
  const int m0 = warp * 16 + g4, m1 = m0 + 8;
  const int pos0 = m0 < mv ? first.pos + m0 / G : -1, pos1 = m1 < mv ? first.pos + m1 / G : -1;
  const int last = first.pos + nrows - 1;
  float o[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float mx0 = -INFINITY, mx1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int64_t base = ((int64_t(first.slot) * kv.layers + layer) * kv.n_kv + kvh) * kv.ctx * HD;
  for (int k0 = 0; k0 <= last; k0 += kKeys) {
    __syncthreads();  // the previous step's keys and values are no longer read
    for (int i = tid; i < kKeys * HD / 8; i += kThreads) {  // 16-byte pieces of K and V rows
      const int key = i / (HD / 8), d = (i % (HD / 8)) * 8;
      uint4 kr = make_uint4(0, 0, 0, 0), vr = make_uint4(0, 0, 0, 0);
      if (k0 + key <= last) {
        kr = *reinterpret_cast<const uint4*>(kv.k + base + int64_t(k0 + key) * HD + d);
        vr = *reinterpret_cast<const uint4*>(kv.v + base + int64_t(k0 + key) * HD + d);
      }
      *reinterpret_cast<uint4*>(Ks + key * KS + d) = kr;
      const __half* vh = reinterpret_cast<const __half*>(&vr);
#pragma unroll
      for (int e = 0; e < 8; e++) Vt[(d + e) * VS + key] = vh[e];
    }
    __syncthreads();
    if (warp * 16 >= mv) continue;  // no query vectors here (the barriers above still count it)
    // S = Q K^T for the warp's 16 vectors x 64 keys: 8 tiles of 8 keys
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      const int c = kk * 16 + 2 * qd;
      const uint32_t ah0 = *reinterpret_cast<const uint32_t*>(Qh + m0 * QS + c);
      const uint32_t ah1 = *reinterpret_cast<const uint32_t*>(Qh + m1 * QS + c);
      const uint32_t ah2 = *reinterpret_cast<const uint32_t*>(Qh + m0 * QS + c + 8);
      const uint32_t ah3 = *reinterpret_cast<const uint32_t*>(Qh + m1 * QS + c + 8);
      const uint32_t al0 = *reinterpret_cast<const uint32_t*>(Ql + m0 * QS + c);
      const uint32_t al1 = *reinterpret_cast<const uint32_t*>(Ql + m1 * QS + c);
      const uint32_t al2 = *reinterpret_cast<const uint32_t*>(Ql + m0 * QS + c + 8);
      const uint32_t al3 = *reinterpret_cast<const uint32_t*>(Ql + m1 * QS + c + 8);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const __half* kr = Ks + (j * 8 + g4) * KS + c;  // key j*8+g4, dims c, c+1 and c+8, c+9
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr), b1 = *reinterpret_cast<const uint32_t*>(kr + 8);
        mma_f16(s[j], ah0, ah1, ah2, ah3, b0, b1);
        mma_f16(s[j], al0, al1, al2, al3, b0, b1);
      }
    }
    // mask and scale; s[j]: (vector m0: keys j*8+2qd, +1), (m1: the same keys)
    float bm0 = -INFINITY, bm1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = k0 + j * 8 + 2 * qd + (e & 1), p = e < 2 ? pos0 : pos1;
        s[j][e] = key <= p ? s[j][e] * scale : -INFINITY;
        if (e < 2) bm0 = fmaxf(bm0, s[j][e]);
        else bm1 = fmaxf(bm1, s[j][e]);
      }
    // the quad's four threads hold a vector's 64 scores: max and sum over them
    bm0 = fmaxf(bm0, __shfl_xor_sync(0xffffffffu, bm0, 1));
    bm0 = fmaxf(bm0, __shfl_xor_sync(0xffffffffu, bm0, 2));
    bm1 = fmaxf(bm1, __shfl_xor_sync(0xffffffffu, bm1, 1));
    bm1 = fmaxf(bm1, __shfl_xor_sync(0xffffffffu, bm1, 2));
    const float n0 = fmaxf(mx0, bm0), n1 = fmaxf(mx1, bm1);
    // a vector with no key yet (its position is before this block) keeps everything at 0
    const float c0 = n0 == -INFINITY ? 1.f : expf(mx0 - n0), c1 = n1 == -INFINITY ? 1.f : expf(mx1 - n1);
    float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float nm = e < 2 ? n0 : n1;
        const float p = s[j][e] == -INFINITY ? 0.f : expf(s[j][e] - nm);
        s[j][e] = p;
        if (e < 2) ps0 += p;
        else ps1 += p;
      }
    ps0 += __shfl_xor_sync(0xffffffffu, ps0, 1);
    ps0 += __shfl_xor_sync(0xffffffffu, ps0, 2);
    ps1 += __shfl_xor_sync(0xffffffffu, ps1, 1);
    ps1 += __shfl_xor_sync(0xffffffffu, ps1, 2);
    l0 = l0 * c0 + ps0, l1 = l1 * c1 + ps1;
    mx0 = n0, mx1 = n1;
#pragma unroll
    for (int j = 0; j < HD / 8; j++) o[j][0] *= c0, o[j][1] *= c0, o[j][2] *= c1, o[j][3] *= c1;
    // O += P V: P from the score tiles (keys kk*16.. as the A fragment), V^T from smem
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; kk++) {
      uint32_t ph[4], pl[4];
      split2(s[2 * kk][0], s[2 * kk][1], ph[0], pl[0]);          // m0, keys 16kk + 2qd, +1
      split2(s[2 * kk][2], s[2 * kk][3], ph[1], pl[1]);          // m1
      split2(s[2 * kk + 1][0], s[2 * kk + 1][1], ph[2], pl[2]);  // m0, keys 16kk + 8 + 2qd, +1
      split2(s[2 * kk + 1][2], s[2 * kk + 1][3], ph[3], pl[3]);  // m1
#pragma unroll
      for (int j = 0; j < HD / 8; j++) {
        const __half* vr = Vt + (j * 8 + g4) * VS + kk * 16 + 2 * qd;  // dim j*8+g4, keys ...
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(vr), b1 = *reinterpret_cast<const uint32_t*>(vr + 8);
        mma_f16(o[j], ph[0], ph[1], ph[2], ph[3], b0, b1);
        mma_f16(o[j], pl[0], pl[1], pl[2], pl[3], b0, b1);
      }
    }
  }
  if (warp * 16 >= mv) return;
  // o[j]: (m0: dims j*8+2qd, +1), (m1: the same dims)
#pragma unroll
  for (int j = 0; j < HD / 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int m = e < 2 ? m0 : m1;
      if (m >= mv) continue;
      const int64_t row = tile.row0 + m / G, h = kvh * G + m % G;
      out[(row * n_heads + h) * HD + j * 8 + 2 * qd + (e & 1)] = o[j][e] / (e < 2 ? l0 : l1);
    }
}

}  // namespace

int prompt_rows_per_tile(int n_heads, int n_kv) { return kM / (n_heads / n_kv); }

void prompt_attention(float* out, const float* q, const RowPos* rows, const PromptTile* tiles, int64_t n_tiles,
                      int n_heads, const KVLayout& kv, int64_t layer) {
  if (n_tiles <= 0) return;
  if (!attention_fused_supports(n_heads, int(kv.n_kv), kv.hd) || kv.q8)
    fail_input("internal: prompt_attention takes an f16 cache, GQA groups up to 8 and hd 64 or 128");
  auto launch = [&](auto kernel, int hd) {
    const int smem = int(sizeof(__half)) * (2 * kM * (hd + kPad) + kKeys * (hd + kPad) + hd * (kKeys + kPad));
    static bool attr[2] = {false, false};
    if (!attr[hd == 128]) {
      R1_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      attr[hd == 128] = true;
    }
    kernel<<<dim3(unsigned(n_tiles), unsigned(kv.n_kv)), kThreads, smem, detail::stream()>>>(out, q, rows, tiles, n_heads, kv,
                                                                                             layer);
  };
  if (kv.hd == 64) launch(k_prompt_attention<64>, 64);
  else launch(k_prompt_attention<128>, 128);
  R1_CUDA_LAUNCHED("prompt attention");
}

}  // namespace r1::cuda
