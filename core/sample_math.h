// The arithmetic of sampling that the CPU sampler (core/sampler.cpp) and the GPU's
// (kernels/cuda/sample.cu) share, so that for a seed both pick the same token: an exp of explicit
// fmas (glibc's expf and CUDA's differ in the last bit), and sums in one fixed order, blocks of
// kSampleBlock summed in turn, then the blocks' sums in turn (the GPU sums the blocks in
// parallel; the bits are the same).
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define R1_HD __host__ __device__ inline
#else
#define R1_HD inline
#endif

namespace r1 {

inline constexpr int64_t kSampleBlock = 1024;

// e^x for x <= 0 (a logit minus the largest, over the temperature), within 2 ulp; 0 below -86
// (where e^x nears the subnormals) and for NaN.
R1_HD float sample_exp(float x) {
  if (!(x >= -86.0f)) return 0.0f;
  if (x > 0.0f) x = 0.0f;
  const float n = rintf(x * 1.44269504f);  // x / ln 2, to the nearest integer: -124..0
  float r = fmaf(n, -0.693145751953125f, x);  // x - n ln 2 in two parts (ln 2's high part has
  r = fmaf(n, -1.428606765330187e-6f, r);     // 16 bits, so n times it is exact): |r| <= 0.35
  float p = 1.0f / 5040;  // Taylor to r^7: the error is below r^8 / 8! = 6e-9
  p = fmaf(p, r, 1.0f / 720);
  p = fmaf(p, r, 1.0f / 120);
  p = fmaf(p, r, 1.0f / 24);
  p = fmaf(p, r, 1.0f / 6);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  const int e = int(n) + 127;  // 2^n as a float's bits: 3..127, a normal number
  union {
    uint32_t u;
    float f;
  } scale{uint32_t(e) << 23};
  return p * scale.f;
}

// Sum of x[0..n) in blocks of kSampleBlock: each block's values in turn, then the blocks' sums in
// turn. at(i) gives x[i] (a value from memory, or 0 for one that does not count).
template <class At>
R1_HD double block_sum(int64_t from, int64_t to, At at) {
  double s = 0;
  for (int64_t i = from; i < to; i++) s += double(at(i));
  return s;
}
template <class At>
inline double sum_in_blocks(int64_t n, At at) {
  double total = 0;
  for (int64_t b = 0; b < n; b += kSampleBlock) total += block_sum(b, b + kSampleBlock < n ? b + kSampleBlock : n, at);
  return total;
}

// The first i whose running sum of x[0..i] (in the same blocks: the sums of the whole blocks
// before, then x of its block one by one) is >= t (inclusive) or > t (strict). The block it lies
// in is the first whose running sum crosses t; if the values inside that block do not cross it
// (a rounding apart), its last index; n - 1 if nothing crosses. block_sums(b): the sum of
// block b, as block_sum gives it.
template <class At, class BlockSums>
R1_HD int64_t first_crossing(int64_t n, double t, bool inclusive, At at, BlockSums block_sums) {
  auto crosses = [&](double acc) { return inclusive ? acc >= t : t < acc; };
  double before = 0;
  for (int64_t b = 0; b < n; b += kSampleBlock) {
    const int64_t end = b + kSampleBlock < n ? b + kSampleBlock : n;
    const double with = before + block_sums(b / kSampleBlock);
    if (!crosses(with) && end < n) {
      before = with;
      continue;
    }
    double acc = before;
    for (int64_t i = b; i < end; i++) {
      acc += double(at(i));
      if (crosses(acc)) return i;
    }
    return end - 1;
  }
  return n - 1;
}

}  // namespace r1
