// The CUDA backend's entry points, callable from plain C++ (no CUDA headers here). Pointers are
// device pointers unless named host_*; every launch goes on one stream and is checked, and a
// CUDA failure becomes an r1::Error with the call that failed.
//
// Numerics follow the CPU reference: q4/q8 weights run on int8-quantized activations (per token,
// per group of 32, exactly ref::quantize_act_q8), the group dot in integers (dp4a) and the
// scales in float, as ref::matvec_q8act; float formats accumulate in f32. Activations are f32,
// the KV cache f16 with the CPU's layout [slot, layer, kv head, ctx, head_dim].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "quant/formats.h"

namespace r1::cuda {

// --- the device ---
struct DeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0, sms = 0;
  uint64_t total_bytes = 0, free_bytes = 0;
};
// Whether a CUDA device this build can run on is present; if not, why (one line).
bool usable(std::string* why = nullptr);
DeviceInfo device_info();

void* alloc(uint64_t bytes, const std::string& what);  // fails with what and the sizes involved
void release(void* p);
void* alloc_pinned(uint64_t bytes);  // page-locked host memory (fast, truly asynchronous copies)
void release_pinned(void* p);
void to_device(void* dst, const void* host_src, uint64_t bytes);  // synchronous
void to_host(void* host_dst, const void* src, uint64_t bytes);    // synchronous (waits for the stream)
void to_device_async(void* dst, const void* host_src, uint64_t bytes);  // host_src must outlive the copy
void fill_bytes(void* p, int byte, uint64_t bytes);
void synchronize();

// A captured sequence of launches (one decode step), replayed with one launch.
struct Graph;
void begin_capture();
Graph* end_capture();
void replay(Graph* g);
void destroy(Graph* g);

// Device time of a region, for benchmarks: start(), then stop() returns milliseconds.
struct Timer;
Timer* timer_start();
float timer_stop(Timer* t);  // waits for the stream; deletes t

// Device memory read bandwidth in GB/s: the best of several passes over a buffer of `bytes`
// (the ceiling a decode step, which reads every weight once, is measured against).
double read_bandwidth_gbs(uint64_t bytes);
// Device-to-device copy bandwidth in GB/s, bytes read plus bytes written (the ceiling that
// llama.cpp's and r1's GPU numbers are quoted against): the best of several copies of bytes / 2.
double copy_bandwidth_gbs(uint64_t bytes);

// Per-launch device time, for r1 bench --profile. profile_start() enqueues a short delay (so
// that the host gets ahead of the device and launch gaps are not counted as kernel time), then
// every profile_mark(kind) after a launch records an event; profile_stop() waits and returns the
// time between each mark and the one before it. Marks outside start/stop, or while a graph is
// being captured, do nothing.
enum class Kind { Embed, Norm, Qkv, Rope, Attention, Quantize, O, GateUp, Down, LmHead, Argmax, Count };
const char* kind_name(Kind k);
void profile_start(float delay_ms);
void profile_mark(Kind k);
struct ProfileSpan {
  Kind kind;
  float ms;
};
std::vector<ProfileSpan> profile_stop();

// --- kernels ---
// A batch of n token rows as the matrices see it: f32 rows, and (for q4/q8 weights) their
// int8 codes and per-group scales from quantize().
struct Act {
  const float* x = nullptr;   // [n, cols]
  const int8_t* q = nullptr;  // [n, cols]
  const float* d = nullptr;   // [n, cols / 32]
};

// One matrix product of a launch: y[t, r] = (accumulate ? y[t, r] : 0) + bias[r] + W[r, :] . x[t, :]
struct MatOut {
  WeightView w;                 // device codes / scales
  float* y = nullptr;           // [n, w.rows]
  const float* bias = nullptr;  // [w.rows] or null
  bool accumulate = false;      // residual add fused into the write
};

// Up to 3 products that read the same input in one launch (q/k/v), in any mix of formats (float
// formats read a.x, q4/q8 read a.q and a.d). With glu, outs[0] and outs[1] are gate and up of one
// shape and format, and outs[0].y gets silu(gate) * up (no bias or accumulate; outs[1].y is not
// written).
// From kMmaMinTokens tokens on (unless tensor_cores is false), q4/q8 products run on the int8
// tensor cores: exact integer group sums, scales in float group by group, so a row's result
// differs from the one-token kernel's only in float summation order.
constexpr int64_t kMmaMinTokens = 16;
void matmul(const MatOut* outs, int n_outs, const Act& a, int64_t n, bool glu = false, bool tensor_cores = true);

// xq, xd = int8 codes and scales of each row of x, as ref::quantize_act_q8.   x: [n, cols]
void quantize(const float* x, int64_t n, int64_t cols, int8_t* xq, float* xd);
// out = rmsnorm(x) * w per row, and (xq non-null) its quantized form.   x, out: [n, dim]
void rmsnorm(float* out, const float* x, const float* w, int64_t n, int64_t dim, float eps, int8_t* xq = nullptr,
             float* xd = nullptr);
// x[t, :] = E[tokens[t], :] as floats.    tokens: [n] (device)   x: [n, E.cols]
// device_layout: E is in layout.h's device layout (the fused kernels'), else the file's.
void embed(const WeightView& E, const int32_t* tokens, int64_t n, float* x, bool device_layout = false);

// Where each row of a pass sits: its KV slot and position (device array, [n]).
struct RowPos {
  int32_t slot, pos;
};
struct KVLayout {
  uint16_t *k = nullptr, *v = nullptr;  // f16 [slots, layers, n_kv, ctx, hd]
  int64_t layers = 0, n_kv = 0, ctx = 0, hd = 0;
  // Rows in quant/kv_format.h's q8 (the fused kernels only): k and v then point at bytes, a row
  // being hd int8 codes and hd / 32 f32 scales, the CPU cache's bytes.
  bool q8 = false;
};
// Sampling on the device: the token Sampler::sample (core/sampler.cpp) picks from the same logits
// (after its repetition penalty and DRY, which stay on the host) with the uniform draw *u, bit for
// bit (CudaSession::forward_pick: run and chat with the fused kernels). Not yet run on a GPU.
// logits: [vocab]   out: [1]
struct SampleParams {
  float temperature = 0.6f, top_p = 0.95f, min_p = 0.0f;  // temperature > 0
  int top_k = 0;
};
uint64_t sample_scratch_bytes(int64_t vocab);  // the scratch sample() needs
void sample(const float* logits, int64_t vocab, const SampleParams& p, const double* u, void* scratch, int32_t* out);

// out[t] = the index of the largest of logits[t, :] (the first on ties, as the CPU's argmax), for
// each of n rows; with next_pos, also advances the position of row 0 (a greedy decode step
// whose next input token is out[0]).      logits: [n, vocab]   out: [n] (device)
void argmax(const float* logits, int64_t n, int64_t vocab, int32_t* out, int32_t* next_pos = nullptr);

// RoPE (rotate-half, angle pos * inv_freq[i]) on q and k in place, then k and v of each row into
// layer l of the cache at its slot and position.   q: [n, n_heads, hd]  k, v: [n, n_kv, hd]
void rope_store(float* q, float* k, const float* v, const RowPos* rows, int64_t n, int n_heads,
                const float* inv_freq, const KVLayout& kv, int64_t layer);
// Causal attention for each row over its slot's positions [0, pos]; GQA as ref::attention.
// max_pos: an upper bound of the rows' positions (sizes the split over positions).
// out: [n, n_heads, hd]; work: attention_work_floats(n, n_heads, hd, max_pos) floats. With xq,
// out is also quantized there (and xd) as quantize() would (for a q4/q8 o_proj).
void attention(float* out, const float* q, const RowPos* rows, int64_t n, int n_heads, const KVLayout& kv,
               int64_t layer, int64_t max_pos, float* work, int8_t* xq = nullptr, float* xd = nullptr);
constexpr int64_t kAttnChunk = 256;  // positions per split
inline uint64_t attention_work_floats(int64_t n, int n_heads, int64_t hd, int64_t max_pos) {
  return uint64_t(n) * uint64_t(n_heads) * uint64_t(max_pos / kAttnChunk + 1) * uint64_t(hd + 2);
}

// --- the fused kernels (a CudaBatch runs them when cuda_kernels() says so: models/cuda_batch.h) ---
// Their q4/q5/q8 weights are in layout.h's device layout (q5 native). A decode layer is five
// launches: q/k/v with the norm, bias, RoPE and KV write (gemv), attention (attention_fused),
// o_proj + residual, gate/up + SiLU, down + residual (gemv).

// What the fused product does with each pair of results (see gemv.cu).
enum class Epilogue {
  Store,       // y[t, r] = bias[r] + W[r, :] . x[t, :]
  Accumulate,  // y[t, r] += W[r, :] . x[t, :]          (residual add)
  RopeQ,       // y = RoPE at the row's position of (bias + W x), heads of in.kv.hd
  RopeK,       // the same into the K cache at the row's slot and position (f16)
  CacheV,      // bias + W x into the V cache (f16)
  Glu,         // y[t, r] = silu(W[r, :] . x) * (up[r, :] . x)
};
struct GemvOut {
  WeightView w;   // q4 / q5 / q8 in the device layout (the gate, for Glu)
  WeightView up;  // Glu: the up matrix (same shape and format)
  float* y = nullptr;
  const float* bias = nullptr;
  Epilogue epi = Epilogue::Store;
};
struct GemvIn {
  const float* x = nullptr;          // [.., cols]: token t reads row t, or row x_rows[t]
  const int32_t* x_rows = nullptr;   // device [n], or null
  const float* norm = nullptr;       // RMSNorm weight [cols] applied first, or null
  float eps = 0;
  const RowPos* rows = nullptr;      // RopeQ / RopeK / CacheV: each token's slot and position
  const float* inv_freq = nullptr;   // RoPE
  KVLayout kv;
  int64_t layer = 0;
  // Scratch for n tokens' int8 activations ([n, cols] bytes) and scales ([n, cols / 32] floats):
  // with it, 16 tokens or more run in large tiles (the same bits; R1_CUDA_GEMM=0: never).
  int8_t* work_q = nullptr;
  float* work_d = nullptr;
  // A q8 cache (kv.q8): RopeK and CacheV leave k and v as floats here ([n, n_kv * hd] each) for
  // kv_store_q8, which quantizes whole rows.
  float* k_stage = nullptr;
  float* v_stage = nullptr;
};
// Up to 3 products of one input in one launch, for n tokens (any n; a decode step is 1). Each
// token is normalized (optionally) and quantized per group of 32 as ref::quantize_act_q8, then
// dotted as ref::matvec_q8act; its results do not depend on the other tokens.
void gemv(const GemvOut* outs, int n_outs, const GemvIn& in, int64_t n);

// k and v of each row ([n, n_kv * hd] floats) into a q8 cache (kv.q8) at its slot and position,
// each row quantized as quant/kv_format.h's kv_quantize_q8 (bit for bit).
void kv_store_q8(const float* k, const float* v, const RowPos* rows, int64_t n, const KVLayout& kv, int64_t layer);

// Attention of every row over its slot's positions [0, pos] (RoPE'd q, f16 or q8 cache), split into at
// most kMaxAttnSplits chunks per row by the row's own position, merged in the same launch.
//   q, out: [n, n_heads, hd]   work: attention_fused_work_floats   counters: [n, n_kv] int32,
//   zero before the first launch (every launch leaves them zero)
constexpr int kMaxAttnSplits = 64;
inline uint64_t attention_fused_work_floats(int64_t n, int n_heads, int64_t hd) {
  return uint64_t(n) * uint64_t(n_heads) * uint64_t(kMaxAttnSplits) * uint64_t(hd + 2);
}
inline bool attention_fused_supports(int n_heads, int n_kv, int64_t hd) {  // GQA groups up to 8, hd 64 or 128
  return n_kv > 0 && n_heads % n_kv == 0 && n_heads / n_kv <= 8 && (hd == 64 || hd == 128);
}
// only: device [n] indices of the rows to take (work and counters then go by list position), or
// null for rows 0..n-1.
void attention_fused(float* out, const float* q, const RowPos* rows, int64_t n, int n_heads, const KVLayout& kv,
                     int64_t layer, float* work, int32_t* counters, const int32_t* only = nullptr);

// Prompt runs (2 or more consecutive positions of a slot) on tensor cores, without scratch: a
// tile is up to prompt_rows_per_tile() consecutive rows of one run (attention_prompt.cu). f16
// cache only. Its bits differ from attention_fused's, so a backend sends every row of a run of
// 2 or more there, and every single row to attention_fused, whatever else is in the pass.
struct PromptTile {
  int32_t row0, n;
};
int prompt_rows_per_tile(int n_heads, int n_kv);
void prompt_attention(float* out, const float* q, const RowPos* rows, const PromptTile* tiles, int64_t n_tiles,
                      int n_heads, const KVLayout& kv, int64_t layer);

}  // namespace r1::cuda
