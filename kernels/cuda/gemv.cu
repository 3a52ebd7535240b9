// The fused products (CudaKernels::Fused): y = W x for q4/q5/q8 weights in the device layout of
// layout.h and any number of token rows, with the input's RMSNorm and int8 quantization in the
// prologue and the consumer's work in the epilogue: bias, RoPE and the KV-cache write (q/k/v in
// one launch), the residual add (o_proj, down), SiLU(gate) * up.
//
// Arithmetic (the same for every token count and in gemm.cu's large tiles, so a row's bits never
// depend on the other rows of a pass or on the kernel that ran it): activations are quantized per group of 32 as
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
#include <algorithm>

#include "kernels/cuda/fused.cuh"

namespace r1::cuda {
namespace fused {
namespace {

constexpr int kWarps = 16;  // per CTA
constexpr int kTile = 8;    // tokens per mma (its n); a launch stages up to this many at a time
static_assert(kWarps * 32 == kStageThreads, "the prologue's block size");

// The step's groups into the chunk sums acc: (row a, tokens 2q, 2q+1), (row b, same tokens).
// Tokens from nt on are not staged: their activations and scales count as zero.
template <int F>
__device__ __forceinline__ void compute_step(const Step& S, int g0, int r, int q, int g4, const int8_t* xq,
                                             const float* xd, int x_stride, int G, int nt, float (&acc)[4]) {
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if (j >= r) break;
    const int g = g0 + j;
    uint32_t a0, a1, a2, a3;
    a_fragment<F>(S, j, q, a0, a1, a2, a3);
    const int8_t* xt = xq + size_t(g4) * x_stride + g * 32;  // token g4's group g
    const uint32_t b0 = g4 < nt ? *reinterpret_cast<const uint32_t*>(xt + 4 * q) : 0u;
    const uint32_t b1 = g4 < nt ? *reinterpret_cast<const uint32_t*>(xt + 16 + 4 * q) : 0u;
    int c[4] = {0, 0, 0, 0};
    mma_s8(c, a0, a1, a2, a3, b0, b1);
    const float x0 = 2 * q < nt ? xd[(2 * q) * G + g] : 0.f, x1 = 2 * q + 1 < nt ? xd[(2 * q + 1) * G + g] : 0.f;
    acc[0] = add_term(acc[0], S.sa[j], x0, c[0]);
    acc[1] = add_term(acc[1], S.sa[j], x1, c[1]);
    acc[2] = add_term(acc[2], S.sb[j], x0, c[2]);
    acc[3] = add_term(acc[3], S.sb[j], x1, c[3]);
  }
}

// This warp's chunk [g_begin, g_end) of its block's 16 rows into acc.
template <int F>
__device__ void chunk_sums(const PairPtrs& p, int g_begin, int g_end, const int8_t* xq, const float* xd, int x_stride,
                           int G, int nt, float (&acc)[4]) {
  const int lane = threadIdx.x & 31, q = lane & 3, g4 = lane >> 2;
  acc[0] = acc[1] = acc[2] = acc[3] = 0.f;
  Step cur, nxt;
  load_step<F>(cur, p.ca, p.sa, p.ha, p.cb, p.sb, p.hb, G, g_begin, min(4, g_end - g_begin), q);
  for (int g0 = g_begin; g0 < g_end; g0 += 4) {
    const int r = min(4, g_end - g0);
    if (g0 + 4 < g_end) load_step<F>(nxt, p.ca, p.sa, p.ha, p.cb, p.sb, p.hb, G, g0 + 4, min(4, g_end - g0 - 4), q);
    compute_step<F>(cur, g0, r, q, g4, xq, xd, x_stride, G, nt, acc);
    cur = nxt;
  }
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
    for (int t = 0; t < nt; t++)  // the tile's activations, in the tokens' order
      stage_token(A, A.x_rows ? A.x_rows[t0 + t] : t0 + t, red,
                  [&](int g, int lane, int8_t c) { xq[size_t(t) * A.x_stride + g * 32 + lane] = c; },
                  [&](int g, float d) { xd[t * G + g] = d; });
    __syncthreads();
    for (int rd = 0; rd < rounds; rd++) {
      const int blk = (rd * gridDim.x + blockIdx.x) * per + slot;
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      if (blk < total) {
        int local;
        const Job& J = job_of(A, blk, local);
        const PairPtrs p = pair_ptrs(A, J, local, lane >> 2);
        const int g0 = chunk * Cg;
        switch (J.fmt) {  // uniform over the warp
          case int(Format::Q4): chunk_sums<int(Format::Q4)>(p, g0, g0 + Cg, xq, xd, A.x_stride, G, nt, acc); break;
          case int(Format::Q5): chunk_sums<int(Format::Q5)>(p, g0, g0 + Cg, xq, xd, A.x_stride, G, nt, acc); break;
          default: chunk_sums<int(Format::Q8)>(p, g0, g0 + Cg, xq, xd, A.x_stride, G, nt, acc); break;
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

int sm_count() {
  static const int n = device_info().sms;
  return n;
}

Args make_args(const GemvOut* outs, int n_outs, const GemvIn& in) {
  if (n_outs < 1 || n_outs > 3) fail_input("internal: cuda::gemv takes 1-3 outputs");
  const int64_t K = outs[0].w.cols;
  if (K % 32 || K <= 0) fail_input("internal: cuda::gemv width not a multiple of 32");
  Args A;
  A.n_jobs = n_outs;
  A.cols = int(K);
  A.chunks = fused_chunks(K / 32);
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
  return A;
}

}  // namespace fused

using namespace fused;

void gemv(const GemvOut* outs, int n_outs, const GemvIn& in, int64_t n) {
  if (n <= 0) return;
  if (n >= kGemmMinRows && in.work_q && in.work_d && gemm_enabled()) {
    gemm(outs, n_outs, in, n);
    return;
  }
  Args A = make_args(outs, n_outs, in);
  const int64_t K = A.cols;
  const int blocks = A.block_end[2];
  A.x_stride = int(K) + 16;  // tokens 16 bytes apart mod 128: the mma's B loads hit distinct banks
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
