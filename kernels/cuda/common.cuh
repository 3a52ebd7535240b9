// Shared by the CUDA sources: the one stream every launch goes on, and error checks that turn a
// CUDA failure into an r1::Error naming the call.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"
#include "kernels/cuda/cuda.h"
#include "quant/formats.h"

namespace r1::cuda::detail {

cudaStream_t stream();
[[noreturn]] void fail_cuda(cudaError_t e, const char* what, const char* file, int line);

// The q4 codebook as four words of int8 levels (byte permutes look codes up in them).
constexpr uint32_t pack4(int a, int b, int c, int d) {
  return uint32_t(uint8_t(int8_t(a))) | uint32_t(uint8_t(int8_t(b))) << 8 | uint32_t(uint8_t(int8_t(c))) << 16 |
         uint32_t(uint8_t(int8_t(d))) << 24;
}
constexpr uint32_t kT0 = pack4(kQ4Levels[0], kQ4Levels[1], kQ4Levels[2], kQ4Levels[3]);
constexpr uint32_t kT1 = pack4(kQ4Levels[4], kQ4Levels[5], kQ4Levels[6], kQ4Levels[7]);
constexpr uint32_t kT2 = pack4(kQ4Levels[8], kQ4Levels[9], kQ4Levels[10], kQ4Levels[11]);
constexpr uint32_t kT3 = pack4(kQ4Levels[12], kQ4Levels[13], kQ4Levels[14], kQ4Levels[15]);

__device__ __forceinline__ int q4_level(int code) {
  const uint32_t w = code < 8 ? (code < 4 ? kT0 : kT1) : (code < 12 ? kT2 : kT3);
  return int(int8_t(uint8_t(w >> (8 * (code & 3)))));
}

// One matrix of a product launch, as kernels take it (MatOut flattened).
struct MatJob {
  int fmt = 0, rows = 0;
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  float* y = nullptr;
  const float* bias = nullptr;
  int accumulate = 0;
};
inline MatJob mat_job(const MatOut& o) {
  return MatJob{int(o.w.fmt), int(o.w.rows), o.w.codes, o.w.scales, o.y, o.bias, o.accumulate ? 1 : 0};
}

// Tensor-core product of q4/q8 weights of one format (qgemm.cu); false if the outputs are not.
bool qgemm(const MatOut* outs, int n_outs, const Act& a, int64_t n, bool glu);

}  // namespace r1::cuda::detail

#define R1_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t e_ = (call);                                                             \
    if (e_ != cudaSuccess) r1::cuda::detail::fail_cuda(e_, #call, __FILE__, __LINE__);   \
  } while (0)
// After a launch: a bad configuration shows up here, a fault in the kernel at the next sync.
#define R1_CUDA_LAUNCHED(name) R1_CUDA_CHECK(cudaPeekAtLastError())
