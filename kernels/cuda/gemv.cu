// The fused products (CudaKernels::Fused): y = W x for q4/q5/q8 weights in the device layout of
// layout.h and any number of token rows, with the input's RMSNorm and int8 quantization in the
// prologue and the consumer's work in the epilogue: bias, RoPE and the KV-cache write (q/k/v in
// one launch), the residual add (o_proj, down), SiLU(gate) * up.
//
// Arithmetic (the same for every token count, so a row's bits never depend on the other rows of
// a pass; a future large-tile kernel must keep it): activations are quantized per group of 32 as
// ref::quantize_act_q8; each group's integer dot is exact (mma m16n8k32, s8 x s8 -> s32); the
// G groups of a row form P = fused_chunks(G) chunks of consecutive groups; a chunk's sum starts
// at 0 and takes its groups in order, s = fma(w_scale * x_scale, isum, s); the row's result is 0
// plus the chunk sums in order (then the epilogue's bias).
//
// Work: a block is 16 weight rows, 8 "pairs" (row a in the mma's rows 0-7, row b in 8-15) whose
// epilogue needs both results in one thread: RoPE's i and i + hd/2, gate and up, or plain rows
// r and r + 8. A CTA of 16 warps takes 16 / P blocks at a time, one warp per (block, chunk); each
// warp streams its chunk's groups of the 16 rows, four groups per load (16 or 32 bytes per
// thread and row, a quad's loads contiguous), the next step's loads in flight while the mma run.
// The warps' chunk sums meet in shared memory, where the epilogue reads them in chunk order.
// CTAs are persistent (at most one per SM): each stages its token tile's activations once.
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/layout.h"

namespace r1::cuda {
namespace {

constexpr int kWarps = 16;  // per CTA
constexpr int kTile = 8;    // tokens per mma (its n); a launch stages up to this many at a time

struct Job {
  int fmt = 0, rows = 0, pairs = 0, blocks = 0, epi = 0;
  const uint8_t* codes = nullptr;   // matrix (gate for Glu)
  const uint16_t* scales = nullptr;
  const uint8_t* codes2 = nullptr;  // up (Glu)
  const uint16_t* scales2 = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
};

struct Args {
  Job job[3];
  int block_end[3] = {0, 0, 0};  // cumulative blocks (slots past n_jobs repeat the total)
  int n_jobs = 0, cols = 0, chunks = 0, x_stride = 0, tile = 0;  // tile: tokens staged at a time
  const float* x = nullptr;
  const int32_t* x_rows = nullptr;
  const float* norm = nullptr;
  float eps = 0;
  const RowPos* rows = nullptr;
  const float* inv_freq = nullptr;
  KVLayout kv;
  int layer = 0;
};

enum Epi { kStore = 0, kAccumulate, kRopeQ, kRopeK, kCacheV, kGlu };

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

__device__ __forceinline__ void mma_s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Prologue: tokens [t0, t0 + nt) of the input, normalized (if A.norm) and quantized per group
// into xq [nt, x_stride] / xd [nt, G]. The block size is fixed, so a token gets the same bits in
// any launch.
__device__ void stage(const Args& A, int t0, int nt, int8_t* xq, float* xd, float* red) {
  const int K = A.cols, G = K / 32, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int t = 0; t < nt; t++) {
    const int src = A.x_rows ? A.x_rows[t0 + t] : t0 + t;
    const float* x = A.x + size_t(src) * K;
    float inv = 1.0f;
    if (A.norm) {
      float ss = 0.f;
      for (int i = threadIdx.x; i < K; i += blockDim.x) ss += x[i] * x[i];
      ss = warp_sum(ss);
      __syncthreads();  // red is free (an earlier token's reduction has been read)
      if (lane == 0) red[warp] = ss;
      __syncthreads();
      ss = lane < kWarps ? red[lane] : 0.f;
      ss = warp_sum(ss);
      inv = 1.0f / sqrtf(ss / float(K) + A.eps);  // k_rmsnorm4's and ref::rmsnorm's formula
    }
    for (int g = warp; g < G; g += kWarps) {
      float v = x[g * 32 + lane];
      if (A.norm) v = v * inv * A.norm[g * 32 + lane];
      const float amax = warp_max(fabsf(v));
      const float id = amax != 0.f ? 127.0f / amax : 0.0f;
      xq[size_t(t) * A.x_stride + g * 32 + lane] = int8_t(rintf(v * id));
      if (lane == 0) xd[t * G + g] = amax / 127.0f;
    }
  }
  __syncthreads();
}

// Rows a and b of pair j of block `blk` of job J (b < 0: none).
__device__ __forceinline__ void pair_rows(const Job& J, int hd, int blk, int j, int& ra, int& rb) {
  const int p = blk * 8 + j;
  ra = rb = -1;
  if (J.epi == kRopeQ || J.epi == kRopeK) {  // pair p of the rotation: i and i + hd/2 of its head
    if (2 * p >= J.rows) return;
    const int half = hd / 2, h = p / half, i = p % half;
    ra = h * hd + i, rb = ra + half;
  } else if (J.epi == kGlu) {  // gate row p, up row p
    if (p >= J.rows) return;
    ra = rb = p;
  } else {  // rows 16 blk + j and 16 blk + 8 + j
    ra = blk * 16 + j, rb = ra + 8;
    if (ra >= J.rows) ra = -1;
    if (rb >= J.rows) rb = -1;
  }
}

// One step's loads: up to 4 groups of rows a and b for this thread (quad position q).
template <int F>
struct Step {
  uint32_t wa[8], wb[8];  // fragment words: group j's at [j] (q8: lower at [j], upper at [4 + j])
  float sa[4], sb[4];
  uint32_t ha[4], hb[4];  // q5 fifth-bit words
};

template <int F>
__device__ __forceinline__ void load_step(Step<F>& S, const uint8_t* ca, const uint16_t* sa, const uint32_t* ha,
                                          const uint8_t* cb, const uint16_t* sb, const uint32_t* hb, int G, int g0,
                                          int r, int q) {
  constexpr int kW = F == int(Format::Q8) ? 2 : 1;  // fragment words per group and thread
  const int64_t off = fragment_word_offset(Format(F), G, g0, 0) + int64_t(q) * kW * r * 4;  // this thread's words
#pragma unroll
  for (int i = 0; i < 8; i++) S.wa[i] = S.wb[i] = 0;
  if (r == 4) {  // 16 (q8: 32) contiguous bytes per row
#pragma unroll
    for (int h = 0; h < kW; h++) {
      if (ca) {
        const uint4 u = __ldcs(reinterpret_cast<const uint4*>(ca + off) + h);
        S.wa[4 * h] = u.x, S.wa[4 * h + 1] = u.y, S.wa[4 * h + 2] = u.z, S.wa[4 * h + 3] = u.w;
      }
      if (cb) {
        const uint4 u = __ldcs(reinterpret_cast<const uint4*>(cb + off) + h);
        S.wb[4 * h] = u.x, S.wb[4 * h + 1] = u.y, S.wb[4 * h + 2] = u.z, S.wb[4 * h + 3] = u.w;
      }
    }
  } else {  // the chunk's last, shorter block
#pragma unroll
    for (int h = 0; h < kW; h++)
#pragma unroll
      for (int j = 0; j < 3; j++) {
        if (j >= r) break;
        if (ca) S.wa[4 * h + j] = __ldcs(reinterpret_cast<const uint32_t*>(ca + off) + h * r + j);
        if (cb) S.wb[4 * h + j] = __ldcs(reinterpret_cast<const uint32_t*>(cb + off) + h * r + j);
      }
  }
#pragma unroll
  for (int j = 0; j < 4; j++) {
    S.sa[j] = S.sb[j] = 0.f;
    S.ha[j] = S.hb[j] = 0;
    if (j >= r) continue;
    if (ca) S.sa[j] = __half2float(__ushort_as_half(__ldg(sa + g0 + j)));
    if (cb) S.sb[j] = __half2float(__ushort_as_half(__ldg(sb + g0 + j)));
    if constexpr (F == int(Format::Q5)) {
      if (ca) S.ha[j] = __ldg(ha + g0 + j);
      if (cb) S.hb[j] = __ldg(hb + g0 + j);
    }
  }
}

// The step's groups into the chunk sums acc: (row a, tokens 2q, 2q+1), (row b, same tokens).
// Tokens from nt on are not staged: their activations and scales count as zero.
template <int F>
__device__ __forceinline__ void compute_step(const Step<F>& S, int g0, int r, int q, int g4, const int8_t* xq,
                                             const float* xd, int x_stride, int G, int nt, float (&acc)[4]) {
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if (j >= r) break;
    const int g = g0 + j;
    uint32_t a0, a1, a2, a3;  // rows a and b, weights 4q..4q+3 (a0, a1) and 16+4q.. (a2, a3)
    if constexpr (F == int(Format::Q4)) {
      q4_word_levels(S.wa[j], a0, a2);
      q4_word_levels(S.wb[j], a1, a3);
    } else if constexpr (F == int(Format::Q5)) {
      q5_word_levels(S.wa[j], S.ha[j] >> (4 * q), a0, a2);
      q5_word_levels(S.wb[j], S.hb[j] >> (4 * q), a1, a3);
    } else {
      a0 = S.wa[j], a2 = S.wa[4 + j], a1 = S.wb[j], a3 = S.wb[4 + j];
    }
    const int8_t* xt = xq + size_t(g4) * x_stride + g * 32;  // token g4's group g
    const uint32_t b0 = g4 < nt ? *reinterpret_cast<const uint32_t*>(xt + 4 * q) : 0u;
    const uint32_t b1 = g4 < nt ? *reinterpret_cast<const uint32_t*>(xt + 16 + 4 * q) : 0u;
    int c[4] = {0, 0, 0, 0};
    mma_s8(c, a0, a1, a2, a3, b0, b1);
    const float x0 = 2 * q < nt ? xd[(2 * q) * G + g] : 0.f, x1 = 2 * q + 1 < nt ? xd[(2 * q + 1) * G + g] : 0.f;
    // the term (w_scale * x_scale) * isum, added with one rounding: explicit, so that no compiler
    // contraction choice can make another kernel's sum differ
    acc[0] = __fmaf_rn(__fmul_rn(S.sa[j], x0), small_int_to_float(c[0]), acc[0]);
    acc[1] = __fmaf_rn(__fmul_rn(S.sa[j], x1), small_int_to_float(c[1]), acc[1]);
    acc[2] = __fmaf_rn(__fmul_rn(S.sb[j], x0), small_int_to_float(c[2]), acc[2]);
    acc[3] = __fmaf_rn(__fmul_rn(S.sb[j], x1), small_int_to_float(c[3]), acc[3]);
  }
}

// This warp's chunk [g_begin, g_end) of the 16 rows (ca / cb null: row absent).
template <int F>
__device__ void chunk_sums(const Job& J, int ra, int rb, int g_begin, int g_end, const int8_t* xq, const float* xd,
                           int x_stride, int K, int nt, float (&acc)[4]) {
  const int G = K / 32, lane = threadIdx.x & 31, q = lane & 3, g4 = lane >> 2;
  const size_t row_bytes = size_t(group_code_bytes(Format(F))) * G;
  const bool glu = J.epi == kGlu;
  const uint8_t* cbase_b = glu ? J.codes2 : J.codes;
  const uint16_t* sbase_b = glu ? J.scales2 : J.scales;
  const uint8_t* ca = ra >= 0 ? J.codes + size_t(ra) * row_bytes : nullptr;
  const uint8_t* cb = rb >= 0 ? cbase_b + size_t(rb) * row_bytes : nullptr;
  const uint16_t* sa = J.scales + size_t(ra >= 0 ? ra : 0) * G;
  const uint16_t* sb = sbase_b + size_t(rb >= 0 ? rb : 0) * G;
  const size_t hoff = q5_device_hbits_offset(uint64_t(J.rows), uint64_t(K));
  const uint32_t* ha = reinterpret_cast<const uint32_t*>(J.codes + hoff) + size_t(ra >= 0 ? ra : 0) * G;
  const uint32_t* hb = reinterpret_cast<const uint32_t*>(cbase_b + hoff) + size_t(rb >= 0 ? rb : 0) * G;
  acc[0] = acc[1] = acc[2] = acc[3] = 0.f;
  Step<F> cur, nxt;
  load_step<F>(cur, ca, sa, ha, cb, sb, hb, G, g_begin, min(4, g_end - g_begin), q);
  for (int g0 = g_begin; g0 < g_end; g0 += 4) {
    const int r = min(4, g_end - g0);
    if (g0 + 4 < g_end) load_step<F>(nxt, ca, sa, ha, cb, sb, hb, G, g0 + 4, min(4, g_end - g0 - 4), q);
    compute_step<F>(cur, g0, r, q, g4, xq, xd, x_stride, G, nt, acc);
    cur = nxt;
  }
}

__device__ __forceinline__ int64_t kv_offset(const KVLayout& kv, int64_t slot, int64_t layer, int64_t h, int64_t pos) {
  return (((slot * kv.layers + layer) * kv.n_kv + h) * kv.ctx + pos) * kv.hd;
}

// The results of pair (ra, rb) for token `tok`: bias, then the job's epilogue.
__device__ void epilogue(const Args& A, const Job& J, int ra, int rb, int tok, float ya, float yb) {
  const int hd = int(A.kv.hd);
  if (J.bias) {
    if (ra >= 0) ya += J.bias[ra];
    if (rb >= 0 && J.epi != kGlu) yb += J.bias[rb];
  }
  switch (J.epi) {
    case kStore:
    case kAccumulate: {
      float* y = J.y + size_t(tok) * J.rows;
      if (ra >= 0) y[ra] = J.epi == kAccumulate ? y[ra] + ya : ya;
      if (rb >= 0) y[rb] = J.epi == kAccumulate ? y[rb] + yb : yb;
      break;
    }
    case kGlu:
      J.y[size_t(tok) * J.rows + ra] = ya / (1.0f + expf(-ya)) * yb;
      break;
    case kRopeQ:
    case kRopeK: {  // as k_rope_store: angle pos * inv_freq[i], (a, b) -> (a c - b s, b c + a s)
      const RowPos rp = A.rows[tok];
      float s, c;
      sincosf(float(rp.pos) * A.inv_freq[ra % hd], &s, &c);
      const float y0 = ya * c - yb * s, y1 = yb * c + ya * s;
      if (J.epi == kRopeQ) {
        J.y[size_t(tok) * J.rows + ra] = y0;
        J.y[size_t(tok) * J.rows + rb] = y1;
      } else {
        const int64_t off = kv_offset(A.kv, rp.slot, A.layer, ra / hd, rp.pos);
        A.kv.k[off + ra % hd] = __half_as_ushort(__float2half_rn(y0));
        A.kv.k[off + rb % hd] = __half_as_ushort(__float2half_rn(y1));
      }
      break;
    }
    case kCacheV: {
      const RowPos rp = A.rows[tok];
      if (ra >= 0) A.kv.v[kv_offset(A.kv, rp.slot, A.layer, ra / hd, rp.pos) + ra % hd] = __half_as_ushort(__float2half_rn(ya));
      if (rb >= 0) A.kv.v[kv_offset(A.kv, rp.slot, A.layer, rb / hd, rp.pos) + rb % hd] = __half_as_ushort(__float2half_rn(yb));
      break;
    }
  }
}

__device__ __forceinline__ const Job& job_of(const Args& A, int blk, int& local) {
  // constant indices only: a run-time index into a kernel parameter copies it to local memory
  const int k = blk < A.block_end[0] ? 0 : blk < A.block_end[1] ? 1 : 2;
  local = blk - (k == 0 ? 0 : k == 1 ? A.block_end[0] : A.block_end[1]);
  return k == 0 ? A.job[0] : k == 1 ? A.job[1] : A.job[2];
}

__global__ void __launch_bounds__(kWarps * 32, 1) k_gemv(const Args A, int n) {
  extern __shared__ __align__(16) uint8_t sm[];
  __shared__ float red[32];
  __shared__ float part[kWarps][32][4];  // each warp's chunk sums, by lane
  const int K = A.cols, G = K / 32, P = A.chunks, per = kWarps / P;  // blocks per CTA round
  int8_t* xq = reinterpret_cast<int8_t*>(sm);                           // [tile, x_stride]
  float* xd = reinterpret_cast<float*>(sm + size_t(A.tile) * A.x_stride);  // [tile, G]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, slot = warp / P, chunk = warp % P;
  const int Cg = G / P, total = A.block_end[2];
  const int rounds = (total + gridDim.x * per - 1) / (gridDim.x * per);
  for (int t0 = 0; t0 < n; t0 += A.tile) {
    const int nt = min(A.tile, n - t0);
    stage(A, t0, nt, xq, xd, red);
    for (int rd = 0; rd < rounds; rd++) {
      const int blk = (rd * gridDim.x + blockIdx.x) * per + slot;
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      if (blk < total) {
        int local;
        const Job& J = job_of(A, blk, local);
        int ra, rb;
        pair_rows(J, int(A.kv.hd), local, lane >> 2, ra, rb);
        const int g0 = chunk * Cg;
        switch (J.fmt) {  // uniform over the warp
          case int(Format::Q4): chunk_sums<int(Format::Q4)>(J, ra, rb, g0, g0 + Cg, xq, xd, A.x_stride, K, nt, acc); break;
          case int(Format::Q5): chunk_sums<int(Format::Q5)>(J, ra, rb, g0, g0 + Cg, xq, xd, A.x_stride, K, nt, acc); break;
          default: chunk_sums<int(Format::Q8)>(J, ra, rb, g0, g0 + Cg, xq, xd, A.x_stride, K, nt, acc); break;
        }
      }
#pragma unroll
      for (int e = 0; e < 4; e++) part[warp][lane][e] = acc[e];
      __syncthreads();
      // the chunk sums in chunk order, then the epilogue: a thread per (block, pair, token)
      for (int i = threadIdx.x; i < per * 8 * kTile; i += blockDim.x) {
        const int s = i / (8 * kTile), j = (i / kTile) % 8, t = i % kTile;
        const int b = (rd * gridDim.x + blockIdx.x) * per + s;
        if (t >= nt || b >= total) continue;
        int local;
        const Job& J = job_of(A, b, local);
        int ra, rb;
        pair_rows(J, int(A.kv.hd), local, j, ra, rb);
        if (ra < 0 && rb < 0) continue;
        const int src = j * 4 + t / 2, e = t % 2;  // the lane holding (pair j, token t)
        float ya = 0.f, yb = 0.f;
        for (int c = 0; c < P; c++) {
          ya += part[s * P + c][src][e];
          yb += part[s * P + c][src][2 + e];
        }
        epilogue(A, J, ra, rb, t0 + t, ya, yb);
      }
      __syncthreads();  // part is rewritten next round
    }
    __syncthreads();  // the next tile overwrites xq
  }
}

int sm_count() {
  static const int n = device_info().sms;
  return n;
}

int stage_budget() {  // dynamic shared memory a CTA may take for the token tile
  static const int b = [] {
    int dev = 0, optin = 0;
    R1_CUDA_CHECK(cudaGetDevice(&dev));
    R1_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    const int statics = int(sizeof(float) * (32 + kWarps * 32 * 4)) + 1024;  // red, part, slack
    R1_CUDA_CHECK(cudaFuncSetAttribute(k_gemv, cudaFuncAttributeMaxDynamicSharedMemorySize, optin - statics));
    return optin - statics;
  }();
  return b;
}

}  // namespace

void gemv(const GemvOut* outs, int n_outs, const GemvIn& in, int64_t n) {
  if (n_outs < 1 || n_outs > 3) fail_input("internal: cuda::gemv takes 1-3 outputs");
  if (n <= 0) return;
  const int64_t K = outs[0].w.cols;
  if (K % 32 || K <= 0) fail_input("internal: cuda::gemv width not a multiple of 32");
  Args A;
  A.n_jobs = n_outs;
  A.cols = int(K);
  A.chunks = fused_chunks(K / 32);
  A.x_stride = int(K) + 16;  // tokens 16 bytes apart mod 128: the mma's B loads hit distinct banks
  A.x = in.x;
  A.x_rows = in.x_rows;
  A.norm = in.norm;
  A.eps = in.eps;
  A.rows = in.rows;
  A.inv_freq = in.inv_freq;
  A.kv = in.kv;
  A.layer = int(in.layer);
  int blocks = 0;
  for (int k = 0; k < n_outs; k++) {
    const GemvOut& o = outs[k];
    const WeightView& w = o.w;
    if (w.fmt != Format::Q4 && w.fmt != Format::Q5 && w.fmt != Format::Q8)
      fail_input("internal: cuda::gemv takes q4/q5/q8 weights");
    if (w.cols != K) fail_input("internal: cuda::gemv outputs read inputs of different widths");
    if (w.rows <= 0 || w.rows > (int64_t(1) << 30)) fail_input("cuda: matrix too large");
    Job& J = A.job[k];
    J.fmt = int(w.fmt);
    J.rows = int(w.rows);
    J.codes = w.codes;
    J.scales = w.scales;
    J.bias = o.bias;
    J.y = o.y;
    switch (o.epi) {
      case Epilogue::Store: J.epi = kStore; break;
      case Epilogue::Accumulate: J.epi = kAccumulate; break;
      case Epilogue::RopeQ: J.epi = kRopeQ; break;
      case Epilogue::RopeK: J.epi = kRopeK; break;
      case Epilogue::CacheV: J.epi = kCacheV; break;
      case Epilogue::Glu: J.epi = kGlu; break;
    }
    const bool rope = o.epi == Epilogue::RopeQ || o.epi == Epilogue::RopeK;
    if ((rope || o.epi == Epilogue::CacheV) && (!in.rows || in.kv.hd <= 0 || in.kv.hd % 16 || w.rows % in.kv.hd))
      fail_input("internal: cuda::gemv RoPE / cache outputs need rows, a KV layout and whole heads (hd % 16 == 0)");
    if (rope && !in.inv_freq) fail_input("internal: cuda::gemv RoPE needs inv_freq");
    if (o.epi == Epilogue::Glu) {
      if (o.up.fmt != w.fmt || o.up.rows != w.rows || o.up.cols != w.cols)
        fail_input("internal: cuda::gemv gate and up differ in shape or format");
      J.codes2 = o.up.codes;
      J.scales2 = o.up.scales;
      J.blocks = int((w.rows + 7) / 8);
    } else {
      J.blocks = rope ? int(w.rows / 16) : int((w.rows + 15) / 16);
    }
    blocks += J.blocks;
    A.block_end[k] = blocks;
  }
  for (int k = n_outs; k < 3; k++) A.block_end[k] = blocks;
  // tokens staged at a time: up to the mma's 8, as many as fit (the tile changes how often the
  // weights are read, never a token's bits)
  const int64_t per_token = int64_t(A.x_stride) + (K / 32) * 4;
  A.tile = int(std::min<int64_t>({kTile, n, stage_budget() / per_token}));
  if (A.tile < 1) fail_input("cuda: matrix too wide for the fused products (" + std::to_string(K) + " columns)");
  const uint32_t smem = uint32_t(A.tile * per_token);
  const int per = kWarps / A.chunks;
  const int64_t grid = std::min<int64_t>((blocks + per - 1) / per, sm_count());
  k_gemv<<<unsigned(std::max<int64_t>(grid, 1)), kWarps * 32, smem, detail::stream()>>>(A, int(n));
  R1_CUDA_LAUNCHED("gemv");
}

}  // namespace r1::cuda
