// Everything on the GPU that is not a matrix product: RMSNorm (with the activation quantization
// fused in), the embedding lookup, RoPE with the KV write, and attention over the f16 cache.
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda {
namespace {

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sum (or max) for blocks of up to 1024 threads; every thread gets the result.
template <bool Max>
__device__ float block_reduce(float v, float* red) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = Max ? warp_max(v) : warp_sum(v);
  __syncthreads();  // red may still be read by an earlier reduction
  if (lane == 0) red[w] = v;
  __syncthreads();
  float r = lane < nw ? red[lane] : (Max ? -INFINITY : 0.f);
  r = Max ? warp_max(r) : warp_sum(r);
  return r;
}

// One warp per group of 32: lane i quantizes element i, as ref::quantize_act_q8.
__device__ __forceinline__ void quantize_group(float v, int8_t* q, float* d) {
  const float amax = warp_max(fabsf(v));
  const int lane = threadIdx.x & 31;
  if (lane == 0) *d = amax / 127.0f;
  const float id = amax != 0.f ? 127.0f / amax : 0.0f;
  q[lane] = int8_t(rintf(v * id));
}

__global__ void k_quantize(const float* x, int64_t groups, int8_t* q, float* d) {
  const int64_t g = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (g >= groups) return;  // whole warps leave together: groups are warp-aligned
  quantize_group(x[g * 32 + (threadIdx.x & 31)], q + g * 32, d + g);
}

// Any width: a thread per element, the row read back from memory to quantize it.
__global__ void k_rmsnorm(float* out, const float* x, const float* w, int dim, float eps, int8_t* xq, float* xd) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float* o = out + row * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_reduce<false>(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * w[i];
  if (!xq) return;
  __syncthreads();  // the row is written: warps now quantize it a group at a time
  const int lane = threadIdx.x & 31;
  for (int g = threadIdx.x >> 5; g < dim / 32; g += blockDim.x >> 5)
    quantize_group(o[g * 32 + lane], xq + row * dim + g * 32, xd + row * (dim / 32) + g);
}

// Widths that are a multiple of 32 (every model's): a thread holds 4 consecutive elements
// (chunk c = thread + k * blockDim) in registers, so a group of 32 is 8 neighbouring lanes and
// quantizes with shuffles, without reading the row back.
constexpr int kNormChunks = 4;  // per thread: widths up to 4 * 4 * blockDim
__global__ void k_rmsnorm4(float* out, const float* x, const float* w, int dim, float eps, int8_t* xq, float* xd) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const int chunks = dim / 4;
  float4 v[kNormChunks];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kNormChunks; k++) {
    const int c = threadIdx.x + k * blockDim.x;
    v[k] = c < chunks ? reinterpret_cast<const float4*>(x + row * dim)[c] : make_float4(0.f, 0.f, 0.f, 0.f);
    ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
  }
  ss = block_reduce<false>(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
#pragma unroll
  for (int k = 0; k < kNormChunks; k++) {
    const int c = threadIdx.x + k * blockDim.x;
    if (k * blockDim.x >= chunks) break;  // uniform over the block: the shuffles below stay full-warp
    const bool live = c < chunks;
    const float4 wv = live ? reinterpret_cast<const float4*>(w)[c] : make_float4(0.f, 0.f, 0.f, 0.f);
    const float4 o = make_float4(v[k].x * inv * wv.x, v[k].y * inv * wv.y, v[k].z * inv * wv.z, v[k].w * inv * wv.w);
    if (live) reinterpret_cast<float4*>(out + row * dim)[c] = o;
    if (!xq) continue;
    float amax = fmaxf(fmaxf(fabsf(o.x), fabsf(o.y)), fmaxf(fabsf(o.z), fabsf(o.w)));
#pragma unroll
    for (int m = 1; m < 8; m <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, m));
    if (!live) continue;
    const float id = amax != 0.f ? 127.0f / amax : 0.0f;
    const char4 q = make_char4(int8_t(rintf(o.x * id)), int8_t(rintf(o.y * id)), int8_t(rintf(o.z * id)),
                               int8_t(rintf(o.w * id)));
    reinterpret_cast<char4*>(xq + row * dim)[c] = q;
    if ((c & 7) == 0) xd[row * (dim / 32) + c / 8] = amax / 127.0f;
  }
}

// The level (w = scale * level) of weight c of row r of a q4/q5/q8 matrix in layout.h's device layout.
__device__ int device_level(const WeightView& E, int64_t r, int64_t c) {
  const int64_t G = E.cols / 32, g = c / 32, j = c % 32, q = (j % 16) / 4, k = j % 4;
  const uint8_t* row = E.codes + r * G * group_code_bytes(E.fmt);
  if (E.fmt == Format::Q8)  // words 0-3: bytes 4q.. of the group; 4-7: bytes 16+4q..
    return int(int8_t(row[fragment_word_offset(E.fmt, G, g, int(j / 16 * 4 + q)) + k]));
  const uint32_t w = *reinterpret_cast<const uint32_t*>(row + fragment_word_offset(E.fmt, G, g, int(q)));
  if (E.fmt == Format::Q4) return detail::q4_level(int(w >> (4 * (j < 16 ? k : 4 + k))) & 15);
  const uint32_t hb = reinterpret_cast<const uint32_t*>(E.codes + q5_device_hbits_offset(uint64_t(E.rows), uint64_t(E.cols)))[r * G + g];
  const int nib = int(w >> (8 * k + (j < 16 ? 0 : 4))) & 15;  // q5 keeps the file's word
  return (nib | int((hb >> j) & 1) << 4) - 16;
}

// dev: a quantized E is in layout.h's device layout.
__global__ void k_embed(WeightView E, const int32_t* tokens, float* x, bool dev) {
  const int64_t t = blockIdx.x, n = E.cols, r = tokens[t];
  float* o = x + t * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v;
    const int64_t g = i / 32, j = i % 32;
    switch (E.fmt) {
      case Format::F32: v = reinterpret_cast<const float*>(E.codes)[r * n + i]; break;
      case Format::F16: v = __half2float(__ushort_as_half(reinterpret_cast<const uint16_t*>(E.codes)[r * n + i])); break;
      case Format::BF16: v = __uint_as_float(uint32_t(reinterpret_cast<const uint16_t*>(E.codes)[r * n + i]) << 16); break;
      case Format::Q8:
        v = __half2float(__ushort_as_half(E.scales[(r * n + i) / 32])) *
            float(dev ? device_level(E, r, i) : int(reinterpret_cast<const int8_t*>(E.codes)[r * n + i]));
        break;
      case Format::Q5:  // the device layout only (the legacy upload widens q5 to q8)
        v = __half2float(__ushort_as_half(E.scales[r * (n / 32) + g])) * float(device_level(E, r, i));
        break;
      default: {
        const uint8_t b = E.codes[r * n / 2 + g * 16 + (j & 15)];
        const int lv = dev ? device_level(E, r, i) : detail::q4_level(j < 16 ? b & 15 : b >> 4);
        v = __half2float(__ushort_as_half(E.scales[r * (n / 32) + g])) * float(lv);
      }
    }
    o[i] = v;
  }
}

__device__ __forceinline__ int64_t kv_offset(const KVLayout& kv, int64_t slot, int64_t layer, int64_t h, int64_t pos) {
  return (((slot * kv.layers + layer) * kv.n_kv + h) * kv.ctx + pos) * kv.hd;
}

// Block per (row, head) of q and k together, thread per rotated pair.
__global__ void k_rope_store(float* q, float* k, const float* v, const RowPos* rows, int n_heads, const float* inv_freq,
                             KVLayout kv, int64_t layer) {
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y, hd = int(kv.hd), half = hd / 2, nkv = int(kv.n_kv);
  const RowPos rp = rows[t];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float a = float(rp.pos) * inv_freq[i];
    float s, c;
    sincosf(a, &s, &c);
    float* p = h < n_heads ? q + (t * n_heads + h) * hd : k + (t * nkv + (h - n_heads)) * hd;
    const float x0 = p[i], x1 = p[i + half];
    const float y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
    p[i] = y0;
    p[i + half] = y1;
    if (h >= n_heads) {
      const int kh = h - n_heads;
      const int64_t off = kv_offset(kv, rp.slot, layer, kh, rp.pos);
      const float* vr = v + (t * nkv + kh) * hd;
      kv.k[off + i] = __half_as_ushort(__float2half_rn(y0));
      kv.k[off + i + half] = __half_as_ushort(__float2half_rn(y1));
      kv.v[off + i] = __half_as_ushort(__float2half_rn(vr[i]));
      kv.v[off + i + half] = __half_as_ushort(__float2half_rn(vr[i + half]));
    }
  }
}

// Attention, split over positions (flash-decoding): block (split, head, row) scores positions
// [split * kChunk, ...) up to the row's own, and leaves (max, sum, unnormalized output) for the
// combine step. Scores: a thread per position; output: a thread per dimension.
constexpr int kChunk = 256, kAttnThreads = 128, kMaxHd = 256;

__global__ void __launch_bounds__(kAttnThreads) k_attn_split(const float* q, const RowPos* rows, int n_heads, KVLayout kv,
                                                             int64_t layer, int splits, float* work) {
  __shared__ float qs[kMaxHd];
  __shared__ float p[kChunk];
  __shared__ float red[32];
  const int split = blockIdx.x, h = blockIdx.y;
  const int64_t t = blockIdx.z;
  const RowPos rp = rows[t];
  const int p0 = split * kChunk;
  if (p0 > rp.pos) return;  // beyond this row: the combine step skips it
  const int len = min(kChunk, rp.pos + 1 - p0);
  const int hd = int(kv.hd), group = n_heads / int(kv.n_kv), kvh = h / group;
  const float* qh = q + (t * n_heads + h) * hd;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qh[i];
  __syncthreads();
  const int64_t base = kv_offset(kv, rp.slot, layer, kvh, p0);
  const float scale = 1.0f / sqrtf(float(hd));
  float m = -INFINITY;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const uint4* kr = reinterpret_cast<const uint4*>(kv.k + base + int64_t(j) * hd);
    float s = 0.f;
    for (int c = 0; c < hd / 8; c++) {
      const uint4 u = kr[c];
      const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[e]));
        s += qs[c * 8 + 2 * e] * f.x;
        s += qs[c * 8 + 2 * e + 1] * f.y;
      }
    }
    s *= scale;
    p[j] = s;
    m = fmaxf(m, s);
  }
  m = block_reduce<true>(m, red);
  float l = 0.f;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const float e = expf(p[j] - m);
    p[j] = e;
    l += e;
  }
  l = block_reduce<false>(l, red);  // its barriers also publish p[]
  float* out = work + ((t * n_heads + h) * int64_t(splits) + split) * (hd + 2);
  if (threadIdx.x == 0) out[0] = m, out[1] = l;
  const uint16_t* vb = kv.v + base;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.f;
    for (int j = 0; j < len; j++) a += p[j] * __half2float(__ushort_as_half(vb[int64_t(j) * hd + d]));
    out[2 + d] = a;
  }
}

// Merges the splits of (head, row). With xq, also quantizes the row's output for o_proj: a
// thread per dimension (hd a multiple of 32), so each warp holds one group of 32.
__global__ void k_attn_combine(float* out, const RowPos* rows, int n_heads, int hd, int splits, const float* work,
                               int8_t* xq, float* xd) {
  const int h = blockIdx.x;
  const int64_t t = blockIdx.y;
  const int used = rows[t].pos / kChunk + 1;
  const float* w = work + (t * n_heads + h) * int64_t(splits) * (hd + 2);
  float M = -INFINITY;
  for (int s = 0; s < used; s++) M = fmaxf(M, w[s * (hd + 2)]);
  float L = 0.f;
  for (int s = 0; s < used; s++) L += w[s * (hd + 2) + 1] * expf(w[s * (hd + 2)] - M);
  const int64_t row0 = (t * n_heads + h) * hd;  // this head's first element in out [n, n_heads * hd]
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.f;
    for (int s = 0; s < used; s++) a += w[s * (hd + 2) + 2 + d] * expf(w[s * (hd + 2)] - M);
    const float o = a / L;
    out[row0 + d] = o;
    if (xq) quantize_group(o, xq + row0 + (d & ~31), xd + (row0 + d) / 32);
  }
}

// One block per row: the first index of the row's maximum (NaN never wins).
__global__ void k_argmax(const float* logits, int64_t vocab, int32_t* out, int32_t* next_pos) {
  __shared__ float bv[32];
  __shared__ int32_t bi[32];
  const int64_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  float v = -INFINITY;
  int32_t idx = INT32_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (x[i] > v) v = x[i], idx = int32_t(i);  // ascending i: the first of equals stays
  auto better = [](float a, int32_t ia, float b, int32_t ib) { return b > a || (b == a && ib < ia); };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (better(v, idx, ov, oi)) v = ov, idx = oi;
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) bv[w] = v, bi[w] = idx;
  __syncthreads();
  if (w == 0) {
    v = lane < nw ? bv[lane] : -INFINITY;
    idx = lane < nw ? bi[lane] : INT32_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
      if (better(v, idx, ov, oi)) v = ov, idx = oi;
    }
    if (lane == 0) {
      out[row] = idx == INT32_MAX ? 0 : idx;
      if (next_pos && row == 0) *next_pos += 1;
    }
  }
}

__global__ void k_read(const uint4* p, uint64_t n, uint32_t* sink) {
  uint32_t acc = 0;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
    const uint4 u = __ldcs(p + i);
    acc ^= u.x ^ u.y ^ u.z ^ u.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads; practically never taken
}

}  // namespace

double read_bandwidth_gbs(uint64_t bytes) {
  bytes = bytes / 16 * 16;
  auto* buf = static_cast<uint4*>(alloc(bytes + 16, "the bandwidth buffer"));
  fill_bytes(buf, 0x5a, bytes + 16);
  uint32_t* sink = reinterpret_cast<uint32_t*>(reinterpret_cast<uint8_t*>(buf) + bytes);
  const DeviceInfo d = device_info();
  double best = 0;
  for (int i = 0; i < 6; i++) {
    Timer* t = timer_start();
    k_read<<<unsigned(d.sms * 8), 512, 0, detail::stream()>>>(buf, bytes / 16, sink);
    R1_CUDA_LAUNCHED("read");
    const float ms = timer_stop(t);
    if (i > 0) best = std::max(best, double(bytes) / (double(ms) * 1e6));
  }
  release(buf);
  return best;
}

double copy_bandwidth_gbs(uint64_t bytes) {
  const uint64_t half = bytes / 2 / 256 * 256;
  auto* buf = static_cast<uint8_t*>(alloc(2 * half, "the bandwidth buffer"));
  fill_bytes(buf, 0x5a, 2 * half);
  double best = 0;
  for (int i = 0; i < 6; i++) {
    Timer* t = timer_start();
    R1_CUDA_CHECK(cudaMemcpyAsync(buf + half, buf, half, cudaMemcpyDeviceToDevice, detail::stream()));
    const float ms = timer_stop(t);
    if (i > 0) best = std::max(best, double(2 * half) / (double(ms) * 1e6));
  }
  release(buf);
  return best;
}

void quantize(const float* x, int64_t n, int64_t cols, int8_t* xq, float* xd) {
  if (cols % 32) fail_input("internal: cuda::quantize width not a multiple of 32");
  const int64_t groups = n * cols / 32;
  if (groups == 0) return;
  const int threads = 256;
  k_quantize<<<unsigned((groups * 32 + threads - 1) / threads), threads, 0, detail::stream()>>>(x, groups, xq, xd);
  R1_CUDA_LAUNCHED("quantize");
}

void rmsnorm(float* out, const float* x, const float* w, int64_t n, int64_t dim, float eps, int8_t* xq, float* xd) {
  if (n <= 0) return;
  if (xq && dim % 32) fail_input("internal: cuda::rmsnorm quantized width not a multiple of 32");
  if (dim % 32 == 0 && dim <= 4 * kNormChunks * 1024) {
    const int chunks = int(dim / 4), threads = std::min(1024, (chunks + 32 * kNormChunks - 1) / (32 * kNormChunks) * 32);
    k_rmsnorm4<<<unsigned(n), std::max(threads, 32), 0, detail::stream()>>>(out, x, w, int(dim), eps, xq, xd);
  } else {
    const int threads = dim >= 1024 ? 1024 : dim >= 256 ? 256 : 128;
    k_rmsnorm<<<unsigned(n), threads, 0, detail::stream()>>>(out, x, w, int(dim), eps, xq, xd);
  }
  R1_CUDA_LAUNCHED("rmsnorm");
}

void argmax(const float* logits, int64_t n, int64_t vocab, int32_t* out, int32_t* next_pos) {
  if (n <= 0) return;
  k_argmax<<<unsigned(n), 1024, 0, detail::stream()>>>(logits, vocab, out, next_pos);
  R1_CUDA_LAUNCHED("argmax");
}

void embed(const WeightView& E, const int32_t* tokens, int64_t n, float* x, bool device_layout) {
  if (n <= 0) return;
  if (E.fmt == Format::Q5 && !device_layout) fail_input("internal: q5 embeddings need the device layout");
  k_embed<<<unsigned(n), 256, 0, detail::stream()>>>(E, tokens, x, device_layout);
  R1_CUDA_LAUNCHED("embed");
}

void rope_store(float* q, float* k, const float* v, const RowPos* rows, int64_t n, int n_heads, const float* inv_freq,
                const KVLayout& kv, int64_t layer) {
  if (n <= 0) return;
  if (kv.hd % 2) fail_input("internal: odd head_dim");
  const int threads = std::min(256, int((kv.hd / 2 + 31) / 32 * 32));
  k_rope_store<<<dim3(unsigned(n), unsigned(n_heads + kv.n_kv)), threads, 0, detail::stream()>>>(q, k, v, rows, n_heads,
                                                                                                 inv_freq, kv, layer);
  R1_CUDA_LAUNCHED("rope_store");
}

static int attn_splits(int64_t max_pos) { return int(max_pos / kChunk + 1); }
static_assert(kChunk == kAttnChunk, "the work-size formula in cuda.h");

void attention(float* out, const float* q, const RowPos* rows, int64_t n, int n_heads, const KVLayout& kv, int64_t layer,
               int64_t max_pos, float* work, int8_t* xq, float* xd) {
  if (n <= 0) return;
  if (kv.hd % 8 || kv.hd > kMaxHd) fail_input("cuda: head_dim " + std::to_string(kv.hd) + " not supported (multiple of 8, at most 256)");
  if (kv.n_kv <= 0 || n_heads % kv.n_kv) fail_input("internal: heads not a multiple of kv heads");
  const int splits = attn_splits(max_pos);
  k_attn_split<<<dim3(unsigned(splits), unsigned(n_heads), unsigned(n)), kAttnThreads, 0, detail::stream()>>>(
      q, rows, n_heads, kv, layer, splits, work);
  R1_CUDA_LAUNCHED("attention");
  if (xq && kv.hd % 32) fail_input("internal: quantized attention output needs head_dim a multiple of 32");
  k_attn_combine<<<dim3(unsigned(n_heads), unsigned(n)), unsigned(kv.hd), 0, detail::stream()>>>(
      out, rows, n_heads, int(kv.hd), splits, work, xq, xd);
  R1_CUDA_LAUNCHED("attention combine");
}

}  // namespace r1::cuda
