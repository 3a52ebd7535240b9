// Shared by the CUDA sources: the one stream every launch goes on, and error checks that turn a
// CUDA failure into an r1::Error naming the call.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/layout.h"
#include "quant/formats.h"

namespace r1::cuda::detail {

cudaStream_t stream();
[[noreturn]] void fail_cuda(cudaError_t e, const char* what, const char* file, int line);

// The q4 codebook as four words of int8 levels (layout.h).
constexpr uint32_t kT0 = kQ4T0, kT1 = kQ4T1, kT2 = kQ4T2, kT3 = kQ4T3;

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
