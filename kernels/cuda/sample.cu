// The CPU sampler's pick (core/sampler.cpp, after its penalties) on the device, bit for bit: the
// arithmetic is core/sample_math.h's, the candidates are sorted by a stable radix sort (ties stay
// in id order, as the CPU breaks them), and every sequential sum the CPU takes is taken by one
// thread in the same order (the sums of blocks of 1024 in parallel, one thread each).
#include <cub/cub.cuh>

#include "core/sample_math.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda {
namespace {

constexpr int kThreads = 256;

struct Scratch {  // carved from one allocation, in this order
  float* mx;
  float *probs, *sorted;
  int32_t *ids, *sorted_ids;
  double* bsum;  // one per block of kSampleBlock
  void* cub;
  size_t cub_bytes;
};

int64_t n_blocks(int64_t vocab) { return (vocab + kSampleBlock - 1) / kSampleBlock; }

size_t cub_bytes(int64_t vocab) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                            static_cast<float*>(nullptr), static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr), int(vocab));
  return bytes;
}

Scratch carve(void* base, int64_t vocab) {
  auto up = [](uint64_t x) { return (x + 255) & ~uint64_t(255); };
  uint8_t* p = static_cast<uint8_t*>(base);
  Scratch s;
  s.mx = reinterpret_cast<float*>(p), p += 256;
  s.probs = reinterpret_cast<float*>(p), p += up(uint64_t(vocab) * 4);
  s.sorted = reinterpret_cast<float*>(p), p += up(uint64_t(vocab) * 4);
  s.ids = reinterpret_cast<int32_t*>(p), p += up(uint64_t(vocab) * 4);
  s.sorted_ids = reinterpret_cast<int32_t*>(p), p += up(uint64_t(vocab) * 4);
  s.bsum = reinterpret_cast<double*>(p), p += up(uint64_t(n_blocks(vocab)) * 8);
  s.cub = p;
  s.cub_bytes = cub_bytes(vocab);
  return s;
}

// The largest logit (NaN never wins, as std::max over the row on the CPU).
__global__ void k_max(const float* x, int64_t n, float* out) {
  __shared__ float red[kThreads / 32];
  float v = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (x[i] > v) v = x[i];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = red[0];
    for (int w = 1; w < kThreads / 32; w++) m = fmaxf(m, red[w]);
    *out = m;
  }
}

// Softmax numerators at temperature (cpu::sample_exp_row's bits) and the ids to sort with them.
__global__ void k_exp(const float* x, int64_t n, const float* mx, float t, float* probs, int32_t* ids) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  probs[i] = sample_exp(__fsub_rn(x[i], *mx) / t);
  ids[i] = int32_t(i);
}

// The rest in one block: the sums, top-k, top-p, min-p and the draw, as Sampler::filter and
// Sampler::sample take them.
__global__ void k_pick(const float* probs, const float* sorted, const int32_t* sorted_ids, int64_t vocab,
                       SampleParams p, const double* u, double* bsum, int32_t* out) {
  __shared__ double shared_mass, shared_ksum;
  __shared__ int64_t shared_keep;
  // bsum[b] = block b of f's values over [0, limit), one thread per block
  auto block_sums = [&](int64_t limit, auto f) {
    __syncthreads();
    for (int64_t b = threadIdx.x; b * kSampleBlock < limit; b += blockDim.x) {
      const int64_t from = b * kSampleBlock, to = min(from + kSampleBlock, limit);
      bsum[b] = block_sum(from, to, f);
    }
    __syncthreads();
  };
  auto total = [&](int64_t limit) {  // sum_in_blocks: the block sums in turn
    double s = 0;
    for (int64_t b = 0; b * kSampleBlock < limit; b++) s += bsum[b];
    return s;
  };
  auto ranked = [&](int64_t i) { return sorted[i]; };
  auto by_block = [&](int64_t b) { return bsum[b]; };
  int64_t keep = p.top_k > 0 ? min(int64_t(p.top_k), vocab) : vocab;
  if (p.top_p < 1.0f) {
    if (p.top_k > 0) block_sums(keep, ranked);
    else block_sums(vocab, [&](int64_t i) { return probs[i]; });
    if (threadIdx.x == 0) shared_mass = total(p.top_k > 0 ? keep : vocab);
    block_sums(keep, ranked);  // (the syncs inside make shared_mass visible)
    if (threadIdx.x == 0) shared_keep = first_crossing(keep, double(p.top_p) * shared_mass, true, ranked, by_block) + 1;
    __syncthreads();
    keep = shared_keep;
  }
  if (p.min_p > 0) {  // the kept ones are a prefix: the first below the floor, by bisection
    const float floor = p.min_p * sorted[0];
    int64_t lo = 1, hi = keep;  // sorted[lo - 1] >= floor; the answer lies in [lo, hi]
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (sorted[mid] >= floor) lo = mid + 1;
      else hi = mid;
    }
    keep = lo;
  }
  block_sums(keep, ranked);
  if (threadIdx.x == 0) shared_ksum = total(keep);
  __syncthreads();
  const double ksum = shared_ksum;
  auto kept = [&](int64_t i) { return float(double(sorted[i]) / ksum); };
  block_sums(keep, kept);
  if (threadIdx.x == 0) *out = sorted_ids[first_crossing(keep, *u, false, kept, by_block)];
}

}  // namespace

uint64_t sample_scratch_bytes(int64_t vocab) {
  auto up = [](uint64_t x) { return (x + 255) & ~uint64_t(255); };
  return 256 + 4 * up(uint64_t(vocab) * 4) + up(uint64_t(n_blocks(vocab)) * 8) + cub_bytes(vocab);
}

void sample(const float* logits, int64_t vocab, const SampleParams& p, const double* u, void* scratch, int32_t* out) {
  if (vocab <= 0 || vocab > INT32_MAX) fail_input("internal: sampling over " + std::to_string(vocab) + " logits");
  if (!(p.temperature > 0)) fail_input("internal: device sampling needs a temperature above 0");
  Scratch s = carve(scratch, vocab);
  cudaStream_t st = detail::stream();
  k_max<<<1, kThreads, 0, st>>>(logits, vocab, s.mx);
  R1_CUDA_LAUNCHED("sample max");
  k_exp<<<unsigned((vocab + 255) / 256), 256, 0, st>>>(logits, vocab, s.mx, p.temperature, s.probs, s.ids);
  R1_CUDA_LAUNCHED("sample exp");
  // stable: equal probabilities keep the ids' ascending order (the CPU's tie-break)
  R1_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(s.cub, s.cub_bytes, s.probs, s.sorted, s.ids, s.sorted_ids,
                                                          int(vocab), 0, 32, st));
  k_pick<<<1, kThreads, 0, st>>>(s.probs, s.sorted, s.sorted_ids, vocab, p, u, s.bsum, out);
  R1_CUDA_LAUNCHED("sample pick");
}

}  // namespace r1::cuda
