// What the fused products share (gemv.cu: up to 8 tokens per tile, weights streamed by many
// warps; gemm.cu: large tiles): the launch arguments, which rows a block of 16 pairs up, the
// loads and decoding of weight fragments, the prologue that normalizes and quantizes a token,
// the per-group term and the epilogues. Both kernels must give every output the same bits (see
// gemv.cu for the arithmetic), so everything that touches a value lives here once.
#pragma once
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/layout.h"

namespace r1::cuda::fused {

constexpr int kStageThreads = 512;  // the prologue's block size: its reductions' order

struct Job {
  int fmt = 0, rows = 0, pairs = 0, blocks = 0, epi = 0;
  const uint8_t* codes = nullptr;   // matrix (gate for Glu)
  const uint16_t* scales = nullptr;
  const uint8_t* codes2 = nullptr;  // up (Glu)
  const uint16_t* scales2 = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
};

// One launch: up to 3 outputs that read the same input (kernel parameters).
struct Args {
  Job job[3];
  int block_end[3] = {0, 0, 0};  // cumulative blocks (slots past n_jobs repeat the total)
  int n_jobs = 0, cols = 0, chunks = 0, x_stride = 0, tile = 0;  // gemv: its smem stride, tokens staged at a time
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

// One token's prologue: row `src` of the input, normalized (if A.norm) and quantized per group
// of 32 as ref::quantize_act_q8, by kStageThreads threads; put(g, lane, code) and scale(g, d)
// write the results wherever the kernel keeps them. red: 32 floats of shared memory.
template <class Put, class Scale>
__device__ void stage_token(const Args& A, int src, float* red, Put put, Scale scale) {
  const int K = A.cols, G = K / 32, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kWarpsPer = kStageThreads / 32;
  const float* x = A.x + size_t(src) * K;
  float inv = 1.0f;
  if (A.norm) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < K; i += kStageThreads) ss += x[i] * x[i];
    ss = warp_sum(ss);
    __syncthreads();  // red is free (an earlier token's reduction has been read)
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    ss = lane < kWarpsPer ? red[lane] : 0.f;
    ss = warp_sum(ss);
    inv = 1.0f / sqrtf(ss / float(K) + A.eps);  // k_rmsnorm4's and ref::rmsnorm's formula
  }
  for (int g = warp; g < G; g += kWarpsPer) {
    float v = x[g * 32 + lane];
    if (A.norm) v = v * inv * A.norm[g * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const float id = amax != 0.f ? 127.0f / amax : 0.0f;
    put(g, lane, int8_t(rintf(v * id)));
    if (lane == 0) scale(g, amax / 127.0f);
  }
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
struct Step {
  uint32_t wa[8], wb[8];  // fragment words: group j's at [j] (q8: lower at [j], upper at [4 + j])
  float sa[4], sb[4];
  uint32_t ha[4], hb[4];  // q5 fifth-bit words
};

template <int F>
__device__ __forceinline__ void load_step(Step& S, const uint8_t* ca, const uint16_t* sa, const uint32_t* ha,
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

// Thread q's A fragment of group j of the step: rows a and b, weights 4q..4q+3 (a0, a1) and
// 16+4q..16+4q+3 (a2, a3), as int8 levels.
template <int F>
__device__ __forceinline__ void a_fragment(const Step& S, int j, int q, uint32_t& a0, uint32_t& a1, uint32_t& a2,
                                           uint32_t& a3) {
  if constexpr (F == int(Format::Q4)) {
    q4_word_levels(S.wa[j], a0, a2);
    q4_word_levels(S.wb[j], a1, a3);
  } else if constexpr (F == int(Format::Q5)) {
    q5_word_levels(S.wa[j], S.ha[j] >> (4 * q), a0, a2);
    q5_word_levels(S.wb[j], S.hb[j] >> (4 * q), a1, a3);
  } else {
    a0 = S.wa[j], a2 = S.wa[4 + j], a1 = S.wb[j], a3 = S.wb[4 + j];
  }
}

// s += (w_scale * x_scale) * isum with one rounding of the product and one of the sum: explicit,
// so that no compiler contraction choice can make two kernels' sums differ.
__device__ __forceinline__ float add_term(float s, float w_scale, float x_scale, int isum) {
  return __fmaf_rn(__fmul_rn(w_scale, x_scale), small_int_to_float(isum), s);
}

// The rows and weight pointers of a thread's pair (its quad's g4) for a warp's block.
struct PairPtrs {
  int ra = -1, rb = -1;
  const uint8_t *ca = nullptr, *cb = nullptr;
  const uint16_t *sa = nullptr, *sb = nullptr;
  const uint32_t *ha = nullptr, *hb = nullptr;
};
__device__ __forceinline__ PairPtrs pair_ptrs(const Args& A, const Job& J, int local_blk, int j) {
  PairPtrs p;
  pair_rows(J, int(A.kv.hd), local_blk, j, p.ra, p.rb);
  const int K = A.cols, G = K / 32;
  const size_t row_bytes = size_t(group_code_bytes(Format(J.fmt))) * G;
  const bool glu = J.epi == kGlu;
  const uint8_t* cbase_b = glu ? J.codes2 : J.codes;
  const uint16_t* sbase_b = glu ? J.scales2 : J.scales;
  const size_t hoff = q5_device_hbits_offset(uint64_t(J.rows), uint64_t(K));
  p.ca = p.ra >= 0 ? J.codes + size_t(p.ra) * row_bytes : nullptr;
  p.cb = p.rb >= 0 ? cbase_b + size_t(p.rb) * row_bytes : nullptr;
  p.sa = J.scales + size_t(p.ra >= 0 ? p.ra : 0) * G;
  p.sb = sbase_b + size_t(p.rb >= 0 ? p.rb : 0) * G;
  p.ha = reinterpret_cast<const uint32_t*>(J.codes + hoff) + size_t(p.ra >= 0 ? p.ra : 0) * G;
  p.hb = reinterpret_cast<const uint32_t*>(cbase_b + hoff) + size_t(p.rb >= 0 ? p.rb : 0) * G;
  return p;
}

__device__ __forceinline__ int64_t kv_offset(const KVLayout& kv, int64_t slot, int64_t layer, int64_t h, int64_t pos) {
  return (((slot * kv.layers + layer) * kv.n_kv + h) * kv.ctx + pos) * kv.hd;
}

// The results of pair (ra, rb) for token `tok`: bias, then the job's epilogue.
__device__ inline void epilogue(const Args& A, const Job& J, int ra, int rb, int tok, float ya, float yb) {
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

// Host side: the arguments of a launch of outs (validated; block_end[2]: its blocks in all).
Args make_args(const GemvOut* outs, int n_outs, const GemvIn& in);
int sm_count();
// The large-tile kernel (gemm.cu), for n >= kGemmMinRows tokens when the input has a workspace.
constexpr int64_t kGemmMinRows = 16;
bool gemm_enabled();  // R1_CUDA_GEMM=0 turns it off (the tile kernel then takes every n)
void gemm(const GemvOut* outs, int n_outs, const GemvIn& in, int64_t n);

}  // namespace r1::cuda::fused
