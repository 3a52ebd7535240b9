// The fused products in large tiles (16 tokens or more: prompt chunks, big batches), with the
// bits of gemv.cu's tile kernel: the same prologue (fused::stage_token, kStageThreads threads),
// the same per-group terms (fused::add_term) summed in the same order (a chunk's groups from 0,
// then the chunks from 0) and the same epilogues. Only the reuse differs: a CTA of 8 warps
// covers 8 blocks (128 weight rows) and 64 tokens, so each weight byte is read once per 64
// tokens instead of once per 8.
//
// A prologue launch normalizes and quantizes every token into the workspace, its bytes in the
// order the mma's B fragments take them. Each warp streams its block's weights as gemv does (a
// quad's fragment words contiguous, the next step's loads in flight); the CTA's activations come
// through a 3-stage cp.async pipeline, one step (up to 4 groups of the 64 tokens) per stage.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/fused.cuh"

namespace r1::cuda {
namespace fused {
namespace {

constexpr int kGWarps = 8, kGThreads = kGWarps * 32;
constexpr int kGTokens = 64;               // per CTA: 8 mma columns of 8
constexpr int kStages = 3;
constexpr int kBStride = 4 * 32 + 16;      // bytes per token and stage: 4 groups, padded (banks)

// Byte b (0..31) of a group, in the order a thread's B fragment reads it: thread q's b0 (bytes
// 4q..4q+3) then its b1 (16+4q..16+4q+3), 8 bytes each.
__device__ __forceinline__ int b_order(int b) { return ((b % 16) / 4) * 8 + (b / 16) * 4 + b % 4; }

__global__ void __launch_bounds__(kStageThreads) k_stage(const Args A, int8_t* xq, float* xd) {
  __shared__ float red[32];
  const int t = blockIdx.x, K = A.cols, G = K / 32;
  stage_token(A, A.x_rows ? A.x_rows[t] : t, red,
              [&](int g, int lane, int8_t c) { xq[size_t(t) * K + g * 32 + b_order(lane)] = c; },
              [&](int g, float d) { xd[size_t(t) * G + g] = d; });
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Step s of the row's walk: chunk s / spc, its block s % spc of up to 4 groups.
struct StepAt {
  int g0, r;
  bool chunk_end;
};
__device__ __forceinline__ StepAt step_at(int s, int Cg) {
  const int spc = (Cg + 3) / 4, b = s % spc;
  return {(s / spc) * Cg + 4 * b, min(4, Cg - 4 * b), b == spc - 1};
}

__global__ void __launch_bounds__(kGThreads, 1) k_gemm(const Args A, int n, const int8_t* xq, const float* xd) {
  __shared__ __align__(16) int8_t Bs[kStages][kGTokens][kBStride];
  __shared__ __align__(16) float Xs[kStages][4][kGTokens];
  const int K = A.cols, G = K / 32, Cg = G / A.chunks, steps = A.chunks * ((Cg + 3) / 4);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, q = lane & 3, g4 = lane >> 2;
  const int t0 = blockIdx.y * kGTokens, total = A.block_end[2];
  const int blk = blockIdx.x * kGWarps + warp;
  const bool live = blk < total;
  int local = 0;
  const Job& J = job_of(A, live ? blk : 0, local);
  const PairPtrs p = live ? pair_ptrs(A, J, local, g4) : PairPtrs{};

  // activations of step s into stage buffer b: the 64 tokens' r groups, scales beside them
  auto load_b = [&](int b, int s) {
    const StepAt st = step_at(s, Cg);
    for (int i = threadIdx.x; i < kGTokens * st.r * 2; i += kGThreads) {  // 16-byte pieces
      const int t = i / (st.r * 2), piece = i % (st.r * 2);
      const bool in = t0 + t < n;
      cp_async16(&Bs[b][t][piece * 16], xq + size_t(in ? t0 + t : 0) * K + st.g0 * 32 + piece * 16, in);
    }
    for (int i = threadIdx.x; i < kGTokens * st.r; i += kGThreads) {
      const int j = i / kGTokens, t = i % kGTokens;
      const bool in = t0 + t < n;
      cp_async4(&Xs[b][j][t], xd + size_t(in ? t0 + t : 0) * G + st.g0 + j, in);
    }
  };
  load_b(0, 0);
  cp_async_commit();
  if (steps > 1) load_b(1, 1);
  cp_async_commit();

  float chunk[8][4], tot[8][4];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) chunk[i][e] = tot[i][e] = 0.f;
  Step cur, nxt;
  auto load_a = [&](Step& S, int s) {
    const StepAt st = step_at(s, Cg);
    switch (J.fmt) {
      case int(Format::Q4): load_step<int(Format::Q4)>(S, p.ca, p.sa, p.ha, p.cb, p.sb, p.hb, G, st.g0, st.r, q); break;
      case int(Format::Q5): load_step<int(Format::Q5)>(S, p.ca, p.sa, p.ha, p.cb, p.sb, p.hb, G, st.g0, st.r, q); break;
      default: load_step<int(Format::Q8)>(S, p.ca, p.sa, p.ha, p.cb, p.sb, p.hb, G, st.g0, st.r, q); break;
    }
  };
  if (live) load_a(cur, 0);
  for (int s = 0; s < steps; s++) {
    cp_async_wait_one();  // this step's stage has landed (the next one may still be on its way)
    __syncthreads();      // ... for every thread, and the stage about to be refilled is no longer read
    if (s + 2 < steps) load_b((s + 2) % kStages, s + 2);
    cp_async_commit();
    if (live && s + 1 < steps) load_a(nxt, s + 1);
    const StepAt st = step_at(s, Cg);
    const int b = s % kStages;
    if (live) {
#pragma unroll
      for (int j = 0; j < 4; j++) {
        if (j >= st.r) break;
        uint32_t a0, a1, a2, a3;
        switch (J.fmt) {
          case int(Format::Q4): a_fragment<int(Format::Q4)>(cur, j, q, a0, a1, a2, a3); break;
          case int(Format::Q5): a_fragment<int(Format::Q5)>(cur, j, q, a0, a1, a2, a3); break;
          default: a_fragment<int(Format::Q8)>(cur, j, q, a0, a1, a2, a3); break;
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {  // token column nt * 8 + g4 (B), outputs at nt * 8 + 2q (+1)
          const uint2 bf = *reinterpret_cast<const uint2*>(&Bs[b][nt * 8 + g4][j * 32 + q * 8]);
          int c[4] = {0, 0, 0, 0};
          mma_s8(c, a0, a1, a2, a3, bf.x, bf.y);
          const float2 x = *reinterpret_cast<const float2*>(&Xs[b][j][nt * 8 + 2 * q]);
          chunk[nt][0] = add_term(chunk[nt][0], cur.sa[j], x.x, c[0]);
          chunk[nt][1] = add_term(chunk[nt][1], cur.sa[j], x.y, c[1]);
          chunk[nt][2] = add_term(chunk[nt][2], cur.sb[j], x.x, c[2]);
          chunk[nt][3] = add_term(chunk[nt][3], cur.sb[j], x.y, c[3]);
        }
      }
      if (st.chunk_end)  // the row's result: 0 plus the chunk sums in order, as gemv's epilogue sums them
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
          for (int e = 0; e < 4; e++) tot[nt][e] += chunk[nt][e], chunk[nt][e] = 0.f;
    }
    cur = nxt;
  }
  if (!live || (p.ra < 0 && p.rb < 0)) return;
#pragma unroll
  for (int nt = 0; nt < 8; nt++)
#pragma unroll
    for (int u = 0; u < 2; u++) {
      const int tok = t0 + nt * 8 + 2 * q + u;
      if (tok < n) epilogue(A, J, p.ra, p.rb, tok, tot[nt][u], tot[nt][2 + u]);
    }
}

}  // namespace

bool gemm_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("R1_CUDA_GEMM");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

void gemm(const GemvOut* outs, int n_outs, const GemvIn& in, int64_t n) {
  const Args A = make_args(outs, n_outs, in);
  const int blocks = A.block_end[2];
  k_stage<<<unsigned(n), kStageThreads, 0, detail::stream()>>>(A, in.work_q, in.work_d);
  R1_CUDA_LAUNCHED("gemm prologue");
  const dim3 grid(unsigned((blocks + kGWarps - 1) / kGWarps), unsigned((n + kGTokens - 1) / kGTokens));
  k_gemm<<<grid, kGThreads, 0, detail::stream()>>>(A, int(n), in.work_q, in.work_d);
  R1_CUDA_LAUNCHED("gemm");
}

}  // namespace fused
}  // namespace r1::cuda
