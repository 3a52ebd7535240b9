#include "models/cuda_batch.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/kv_cache.h"
#include "quant/half.h"

#include "quant/quantize.h"
#include "kernels/cuda/cuda.h"    // plain C++: sizes and the API (the kernels only with CUDA)
#include "kernels/cuda/layout.h"  // the fused kernels' weight layout

namespace r1 {

namespace {
CudaKernels kernels_from_env() {
  const char* e = std::getenv("R1_CUDA_KERNELS");
  if (!e || !*e || std::strcmp(e, "legacy") == 0) return CudaKernels::Legacy;
  if (std::strcmp(e, "fused") == 0) return CudaKernels::Fused;
  fail_usage(std::string("R1_CUDA_KERNELS: unknown kernel set '") + e + "' (legacy or fused)");
}
CudaKernels& kernels_ref() {
  static CudaKernels k = kernels_from_env();
  return k;
}

// Per-pass device buffers for `rows` tokens, in floats (int8 codes counted as floats / 4).
struct PassShape {
  int64_t H, Q, KV, F, V, wide;
  explicit PassShape(const Config& c)
      : H(c.hidden), Q(c.q_dim()), KV(c.kv_dim()), F(c.intermediate), V(c.vocab_size),
        wide(std::max({c.hidden, c.q_dim(), c.intermediate})) {}
  // x, xb, q, k, v, att, hb, logits, quantized codes (1 byte each) and scales
  uint64_t bytes(int64_t rows) const {
    const uint64_t floats = uint64_t(rows) * uint64_t(H + std::max(H, Q) + Q + 2 * KV + Q + F + V + wide / 32);
    return floats * 4 + uint64_t(rows) * uint64_t(wide) + uint64_t(rows) * 20;
  }
};

// Attention scratch for a pass of `rows` rows: the legacy split/combine work, or the fused split
// kernel's chunk partials and (row, kv head) counters for the rows it takes: every row with a q8
// cache, only single rows (one per slot) with f16, whose prompt runs need no scratch.
uint64_t attention_work_bytes(const Config& c, int64_t rows, int64_t slots, int64_t ctx, bool fused, KvFormat kv) {
  if (fused) {
    const int64_t split_rows = kv == KvFormat::F16 ? std::min(rows, slots) : rows;
    return cuda::attention_fused_work_floats(split_rows, int(c.n_heads), c.head_dim) * 4 +
           uint64_t(split_rows * c.n_kv_heads) * 4;
  }
  return cuda::attention_work_floats(rows, int(c.n_heads), c.head_dim, ctx - 1) * 4;
}

bool all_quantized(const Model& m) {
  bool q = is_quantized(m.embed.fmt) && is_quantized(m.lm_head.fmt);
  for (const LayerWeights& L : m.layers)
    for (const WeightView* w : L.matrices()) q = q && is_quantized(w->fmt);
  return q;
}
}  // namespace

CudaKernels cuda_kernels() { return kernels_ref(); }
void set_cuda_kernels(CudaKernels k) { kernels_ref() = k; }
const char* cuda_kernels_name(CudaKernels k) { return k == CudaKernels::Fused ? "fused" : "legacy"; }

bool cuda_fused(const Model& m) {
  const Config& c = m.cfg;
  return cuda_kernels() == CudaKernels::Fused && all_quantized(m) &&
         cuda::attention_fused_supports(int(c.n_heads), int(c.n_kv_heads), c.head_dim);
}

uint64_t cuda_bytes_needed(const Model& m, int64_t slots, int64_t ctx, int64_t rows, KvFormat kv) {
  const Config& c = m.cfg;
  return KVCache::bytes_for(c, ctx, kv, slots) + PassShape(c).bytes(rows) +
         attention_work_bytes(c, rows, slots, ctx, cuda_fused(m), kv);
}

int64_t cuda_prefill_chunk(const Model& m, KvFormat kv) {
  return cuda_fused(m) && kv == KvFormat::F16 ? 512 : kPrefillChunk;
}

int64_t cuda_pass_rows(const Model& m, int64_t slots, int64_t ctx, KvFormat kv) {
  return std::min<int64_t>(2 * cuda_prefill_chunk(m, kv), ctx) + slots;
}

// The legacy kernels have no q5 path: a q5 matrix goes up as the q8 matrix of the same values
// (exact; it costs q8's bandwidth on the GPU). The fused kernels read q5 as it is.
static Format device_format(Format f, bool fused) { return f == Format::Q5 && !fused ? Format::Q8 : f; }
static uint64_t mat_bytes(const WeightView& w, bool fused) {
  return align_up(tensor_bytes(device_format(w.fmt, fused), uint64_t(w.rows), uint64_t(w.cols)), 256);
}
static uint64_t vec_bytes(int64_t n) { return align_up(uint64_t(n) * 4, 256); }

uint64_t cuda_weight_bytes(const Model& m) {
  const bool f = cuda_fused(m);
  uint64_t s = vec_bytes(m.cfg.head_dim / 2);  // the RoPE frequencies
  for (const ModelTensor& e : model_tensors(m.cfg))
    s += e.matrix() ? mat_bytes(*m.matrix(e), f) : vec_bytes(int64_t(e.shape[0]));
  return s;
}

std::string cuda_model_problem(const Model& m) {
  if (m.cfg.qk_norm) return "the GPU kernels have no per-head q/k norm (" + std::string(m.cfg.arch_name()) + ") yet";
  return "";
}

std::string cuda_kv_problem(const Model& m, KvFormat kv) {
  if (kv == KvFormat::F16) return "";
  if (kv == KvFormat::Q8 && cuda_fused(m)) return "";
  if (kv == KvFormat::Q8)
    return cuda_kernels() == CudaKernels::Fused
               ? "--kv q8 on the GPU needs the fused kernels, which take q4/q5/q8 models only (or use --kv f16)"
               : "--kv q8 on the GPU needs the fused kernels, R1_CUDA_KERNELS=fused (or use --kv f16)";
  return std::string("--kv ") + kv_format_name(kv) + " is CPU only (the GPU keeps f16 or q8)";
}

std::vector<StepBytes> cuda_step_bytes(const Model& m, int64_t pos, KvFormat kvf) {
  const Config& c = m.cfg;
  const bool f = cuda_fused(m);
  auto b = [&](const WeightView& w) { return tensor_bytes(device_format(w.fmt, f), uint64_t(w.rows), uint64_t(w.cols)); };
  uint64_t qkv = 0, o = 0, gu = 0, dn = 0;
  for (const LayerWeights& L : m.layers)
    qkv += b(L.wq) + b(L.wk) + b(L.wv), o += b(L.wo), gu += b(L.gate) + b(L.up), dn += b(L.down);
  const uint64_t kv = KVCache::bytes_for(c, pos + 1, kvf);
  return {{"qkv", qkv}, {"attention", kv}, {"o_proj", o}, {"gate/up", gu}, {"down", dn}, {"lm_head", b(m.lm_head)}};
}

std::string cuda_fit_problem(const Model& m, int64_t slots, int64_t ctx, uint64_t free_bytes, const std::string& device,
                             KvFormat kv) {
  const Config& c = m.cfg;
  const uint64_t headroom = 512ull << 20;  // CUDA context, graphs, fragmentation
  const uint64_t wb = cuda_weight_bytes(m), kvb = KVCache::bytes_for(c, ctx, kv, slots);
  const uint64_t work = cuda_bytes_needed(m, slots, ctx, cuda_pass_rows(m, slots, ctx, kv), kv) - kvb;
  if (wb + kvb + work + headroom <= free_bytes) return "";
  // the longest context (a multiple of 256) that would fit: the need grows with ctx
  auto need = [&](int64_t t) { return wb + cuda_bytes_needed(m, slots, t, cuda_pass_rows(m, slots, t, kv), kv) + headroom; };
  int64_t lo = 0, hi = ctx / 256 + 1;  // lo * 256 fits (or lo == 0); hi * 256 > ctx does not
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (need(mid * 256) <= free_bytes ? lo : hi) = mid;
  }
  const int64_t fits = lo * 256;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "does not fit on %s: weights %.2f GB + KV cache %.2f GB (ctx %lld) + workspace %.2f GB > %.2f GB free; %s",
                device.c_str(), double(wb) / 1e9, double(kvb) / 1e9, (long long)ctx, double(work) / 1e9,
                double(free_bytes) / 1e9,
                fits > 0 ? ("try --ctx " + std::to_string(fits)).c_str()
                         : "try a smaller (q4) file, or --device cpu");
  return buf;
}

#ifndef R1_HAVE_CUDA
bool cuda_available(std::string* why) {
  if (why) *why = "this build of r1 has no CUDA backend (configure with nvcc present, or -DR1_CUDA=ON)";
  return false;
}
#else

bool cuda_available(std::string* why) { return cuda::usable(why); }

// The device copy of the weights: one allocation, each tensor at a 256-byte boundary, views
// with the device formats pointing into it (fused: layout.h's layout).
struct CudaWeights {
  uint8_t* base = nullptr;
  uint64_t bytes = 0;
  WeightView embed, lm_head;
  const float* final_norm = nullptr;
  float* inv_freq = nullptr;
  std::vector<LayerWeights> layers;

  ~CudaWeights() { cuda::release(base); }

  CudaWeights(const Model& m, bool fused, const std::function<void(uint64_t, uint64_t)>& on_upload) {
    const Config& c = m.cfg;
    bytes = cuda_weight_bytes(m);
    base = static_cast<uint8_t*>(cuda::alloc(bytes, "the weights"));
    uint64_t off = 0, shown = 0;
    auto copy = [&](const void* src, uint64_t n, uint64_t padded) {
      uint8_t* dst = base + off;
      cuda::to_device(dst, src, n);
      off += padded;
      if (on_upload && off - shown > bytes / 20) {
        shown = off;
        on_upload(off, bytes);
      }
      return dst;
    };
    std::vector<uint8_t> staged;  // a matrix converted for upload
    auto mat = [&](const WeightView& w) {
      const Format f = device_format(w.fmt, fused);
      const uint64_t n = tensor_bytes(f, uint64_t(w.rows), uint64_t(w.cols));
      const void* src = w.codes;
      if (f != w.fmt) {  // legacy: q5 as q8
        staged.resize(n);
        q5_to_q8(w, staged.data());
        src = staged.data();
      } else if (fused && (f == Format::Q4 || f == Format::Q5)) {
        staged.resize(n);
        cuda::to_device_layout(w, staged.data());
        src = staged.data();
      }
      return make_view(f, uint64_t(w.rows), uint64_t(w.cols), copy(src, n, align_up(n, 256)));
    };
    auto vec = [&](const float* v, int64_t n) {
      return reinterpret_cast<const float*>(copy(v, uint64_t(n) * 4, vec_bytes(n)));
    };
    inv_freq = const_cast<float*>(vec(m.inv_freq.data(), c.head_dim / 2));
    layers.assign(m.layers.size(), LayerWeights{});
    for (const ModelTensor& e : model_tensors(c)) {  // every tensor of the schema, in file order
      if (e.role == Role::Embed) embed = mat(m.embed);
      else if (e.role == Role::Output) lm_head = mat(m.lm_head);
      else if (e.role == Role::FinalNorm) final_norm = vec(m.final_norm, c.hidden);
      else if (const WeightView* w = m.layers[size_t(e.layer)].matrix(e.role)) *layers[size_t(e.layer)].matrix(e.role) = mat(*w);
      else *layers[size_t(e.layer)].vector(e.role) = vec(*m.layers[size_t(e.layer)].vector(e.role), int64_t(e.shape[0]));
    }
    if (c.tied_embeddings) lm_head = embed;
    if (on_upload) on_upload(bytes, bytes);
  }
};

struct CudaBatch::SampleBuffers {
  int64_t rows = 0;          // capacity
  void* scratch = nullptr;   // cuda::sample's
  double* u = nullptr;       // the draws [rows], device
  int32_t* picked = nullptr; // the tokens picked [rows], device
  double* host = nullptr;    // the draws, pinned (their copy is asynchronous)
  ~SampleBuffers() {
    cuda::release(scratch);
    cuda::release(u);
    cuda::release(picked);
    cuda::release_pinned(host);
  }
};

struct CudaBatch::Buffers {
  int64_t rows = 0;
  uint8_t* mem = nullptr;  // one allocation for the pass buffers
  float *x, *xb, *q, *k, *v, *att, *hb, *logits, *xd, *work;
  int8_t* xq;
  int32_t *tokens, *xrows, *single, *counters;
  cuda::RowPos* rowpos;
  cuda::PromptTile* tiles;
  cuda::KVLayout kv;
  // pinned staging: tokens [rows], (slot, pos) [rows], logit rows, single rows [rows] each, tiles [rows]
  int32_t* host = nullptr;
  ~Buffers() {
    cuda::release(mem);
    cuda::release(kv.k);
    cuda::release(kv.v);
    cuda::release_pinned(host);
  }
};

CudaBatch::CudaBatch(const Model& m, int64_t n_slots, int64_t ctx, KvFormat kv,
                     const std::function<void(uint64_t, uint64_t)>& on_upload)
    : m_(m), slots_(n_slots), ctx_(ctx), fused_(cuda_fused(m)), kv_fmt_(kv), chunk_(cuda_prefill_chunk(m, kv)) {
  const std::string kv_problem = cuda_kv_problem(m, kv), model_problem = cuda_model_problem(m);
  for (const std::string& p : {kv_problem, model_problem})
    if (!p.empty()) fail_usage("--device cuda: " + p + "; use --device cpu");
  std::string why;
  if (!cuda::usable(&why)) fail_input("--device cuda: " + why);
  const Config& c = m.cfg;
  // Everything up front, before the first big allocation: weights, cache, workspace.
  const cuda::DeviceInfo dev = cuda::device_info();
  const std::string problem = cuda_fit_problem(m, n_slots, ctx, dev.free_bytes, dev.name, kv);
  if (!problem.empty()) fail_input(problem);
  const uint64_t kvb = KVCache::bytes_for(c, ctx, kv, n_slots);
  w_ = std::make_unique<CudaWeights>(m, fused_, on_upload);
  b_ = std::make_unique<Buffers>();
  b_->kv = {nullptr, nullptr, c.n_layers, c.n_kv_heads, ctx, c.head_dim, kv == KvFormat::Q8};
  b_->kv.k = static_cast<uint16_t*>(cuda::alloc(kvb / 2, "the KV cache (keys)"));
  b_->kv.v = static_cast<uint16_t*>(cuda::alloc(kvb / 2, "the KV cache (values)"));
  reserve(cuda_pass_rows(m, n_slots, ctx, kv));
}

CudaBatch::~CudaBatch() { drop_graphs(); }

void CudaBatch::drop_graphs() {
  cuda::destroy(static_cast<cuda::Graph*>(graph_));
  cuda::destroy(static_cast<cuda::Graph*>(greedy_graph_));
  graph_ = greedy_graph_ = nullptr;
  for (auto& [rows, g] : decode_graphs_) cuda::destroy(static_cast<cuda::Graph*>(g));
  decode_graphs_.clear();
}

void CudaBatch::reserve(int64_t rows) {
  if (b_->rows >= rows) return;
  const Config& c = m_.cfg;
  drop_graphs();  // they point at the old buffers
  cuda::release(b_->mem);
  b_->mem = nullptr;
  cuda::release_pinned(b_->host);
  b_->host = nullptr;
  const PassShape s(c);
  const uint64_t work = attention_work_bytes(c, rows, slots_, ctx_, fused_, kv_fmt_);
  const int64_t split_rows = kv_fmt_ == KvFormat::F16 ? std::min(rows, slots_) : rows;
  const uint64_t counters = fused_ ? uint64_t(split_rows * c.n_kv_heads) * 4 : 0;
  uint64_t off = 0;
  std::vector<std::pair<void**, uint64_t>> parts = {
      {(void**)&b_->x, uint64_t(rows * s.H) * 4},           {(void**)&b_->xb, uint64_t(rows * std::max(s.H, s.Q)) * 4},
      {(void**)&b_->q, uint64_t(rows * s.Q) * 4},           {(void**)&b_->k, uint64_t(rows * s.KV) * 4},
      {(void**)&b_->v, uint64_t(rows * s.KV) * 4},          {(void**)&b_->att, uint64_t(rows * s.Q) * 4},
      {(void**)&b_->hb, uint64_t(rows * s.F) * 4},          {(void**)&b_->logits, uint64_t(rows * s.V) * 4},
      {(void**)&b_->xd, uint64_t(rows * (s.wide / 32)) * 4}, {(void**)&b_->work, work - counters},
      {(void**)&b_->xq, uint64_t(rows * s.wide)},           {(void**)&b_->tokens, uint64_t(rows) * 4},
      {(void**)&b_->rowpos, uint64_t(rows) * 8},            {(void**)&b_->xrows, uint64_t(rows) * 4},
      {(void**)&b_->single, uint64_t(rows) * 4},            {(void**)&b_->tiles, uint64_t(rows) * 8},
      {(void**)&b_->counters, std::max<uint64_t>(counters, 4)}};
  for (auto& p : parts) off += align_up(p.second, 256);
  b_->mem = static_cast<uint8_t*>(cuda::alloc(off, "the pass buffers"));
  off = 0;
  for (auto& p : parts) {
    *p.first = b_->mem + off;
    off += align_up(p.second, 256);
  }
  if (fused_) cuda::fill_bytes(b_->counters, 0, counters);  // the attention leaves them zero after each launch
  b_->host = static_cast<int32_t*>(cuda::alloc_pinned(uint64_t(rows) * 7 * 4));
  b_->rows = rows;
}

namespace {
// Rows of a pass that share a matrix-product path: a run of kMmaMinTokens rows or more goes alone
// (tensor cores), consecutive shorter runs go together (the one-token kernels, whose result per
// row does not depend on the other rows). A run's rows thus get the same bits whatever else is
// in the pass, as they would alone.
struct Segment {
  int64_t r0, n;
  bool tensor_cores;
};
std::vector<Segment> segments(const std::vector<SlotRun>& runs) {
  std::vector<Segment> out;
  int64_t r0 = 0;
  for (const SlotRun& g : runs) {
    const bool big = g.n >= cuda::kMmaMinTokens;
    if (!big && !out.empty() && !out.back().tensor_cores) out.back().n += g.n;
    else out.push_back({r0, g.n, big});
    r0 += g.n;
  }
  return out;
}

// cuda::matmul over each segment: outputs and activations offset to the segment's rows.
void matmul_rows(const std::vector<Segment>& segs, const cuda::MatOut* outs, int n_outs, const cuda::Act& a,
                 bool glu = false) {
  for (const Segment& s : segs) {
    cuda::MatOut o[3];
    for (int k = 0; k < n_outs; k++) {
      o[k] = outs[k];
      if (o[k].y) o[k].y += s.r0 * outs[k].w.rows;
    }
    const int64_t cols = outs[0].w.cols;
    const cuda::Act as{a.x ? a.x + s.r0 * cols : nullptr, a.q ? a.q + s.r0 * cols : nullptr,
                       a.d ? a.d + s.r0 * (cols / 32) : nullptr};
    cuda::matmul(o, n_outs, as, s.n, glu, s.tensor_cores);
  }
}

using cuda::Kind;
void mark(Kind k) { cuda::profile_mark(k); }
}  // namespace

void CudaBatch::enqueue(int64_t n, const std::vector<SlotRun>& runs, int64_t max_pos) {
  const Config& c = m_.cfg;
  const int64_t H = c.hidden, F = c.intermediate;
  Buffers& b = *b_;
  const cuda::Act act{b.xb, b.xq, b.xd};
  auto quantized = [](const WeightView& w) { return is_quantized(w.fmt); };
  const std::vector<Segment> segs = segments(runs);
  cuda::embed(w_->embed, b.tokens, n, b.x);  // x: [n, H]
  mark(Kind::Embed);
  for (int64_t l = 0; l < c.n_layers; l++) {
    const LayerWeights& L = w_->layers[size_t(l)];
    // attention block: xb = norm(x) (and its int8 form), q/k/v in one launch
    const bool qa = quantized(L.wq) || quantized(L.wk) || quantized(L.wv);
    cuda::rmsnorm(b.xb, b.x, L.attn_norm, n, H, c.norm_eps, qa ? b.xq : nullptr, b.xd);
    mark(Kind::Norm);
    const cuda::MatOut qkv[3] = {{L.wq, b.q, L.bq, false}, {L.wk, b.k, L.bk, false}, {L.wv, b.v, L.bv, false}};
    matmul_rows(segs, qkv, 3, act);
    mark(Kind::Qkv);
    cuda::rope_store(b.q, b.k, b.v, b.rowpos, n, int(c.n_heads), w_->inv_freq, b.kv, l);
    mark(Kind::Rope);
    const bool qo = quantized(L.wo);  // att: [n, Q], and its int8 form for a q4/q8 o_proj
    cuda::attention(b.att, b.q, b.rowpos, n, int(c.n_heads), b.kv, l, max_pos, b.work, qo ? b.xq : nullptr, b.xd);
    mark(Kind::Attention);
    const cuda::MatOut o{L.wo, b.x, nullptr, true};  // x += att Wo^T
    matmul_rows(segs, &o, 1, cuda::Act{b.att, b.xq, b.xd});
    mark(Kind::O);
    // MLP block: hb = silu(xb Wg^T) * (xb Wu^T) in one launch, x += hb Wd^T
    cuda::rmsnorm(b.xb, b.x, L.ffn_norm, n, H, c.norm_eps, quantized(L.gate) ? b.xq : nullptr, b.xd);
    mark(Kind::Norm);
    const cuda::MatOut gu[2] = {{L.gate, b.hb, nullptr, false}, {L.up, nullptr, nullptr, false}};
    matmul_rows(segs, gu, 2, act, /*glu=*/true);
    mark(Kind::GateUp);
    if (quantized(L.down)) {
      cuda::quantize(b.hb, n, F, b.xq, b.xd);
      mark(Kind::Quantize);
    }
    const cuda::MatOut dn{L.down, b.x, nullptr, true};
    matmul_rows(segs, &dn, 1, cuda::Act{b.hb, b.xq, b.xd});
    mark(Kind::Down);
  }
  // Final norm and lm_head for the rows whose logits are wanted, gathered in xb.
  int64_t rows = 0;
  for (int64_t s = 0, r0 = 0; s < int64_t(runs.size()); r0 += runs[size_t(s)].n, s++) {
    const SlotRun& g = runs[size_t(s)];
    if (g.logits == SlotRun::None) continue;
    const int64_t first = g.logits == SlotRun::All ? r0 : r0 + g.n - 1, cnt = r0 + g.n - first;
    cuda::rmsnorm(b.xb + rows * H, b.x + first * H, w_->final_norm, cnt, H, c.norm_eps,
                  quantized(w_->lm_head) ? b.xq + rows * H : nullptr, b.xd + rows * (H / 32));
    mark(Kind::Norm);
    rows += cnt;
  }
  if (rows > 0) {
    const cuda::MatOut lm{w_->lm_head, b.logits, nullptr, false};
    cuda::matmul(&lm, 1, act, rows, false, /*tensor_cores=*/false);  // at most a few rows per run
    mark(Kind::LmHead);
  }
}

// The fused pass: five launches a layer for all rows of the pass together (the products'
// arithmetic does not depend on how many rows share a launch, so a row gets the same bits alone,
// in a batch or in a prompt chunk).
void CudaBatch::enqueue_fused(int64_t n, const PassPlan& plan) {
  const Config& c = m_.cfg;
  const int heads = int(c.n_heads);
  Buffers& b = *b_;
  using E = cuda::Epilogue;
  cuda::GemvIn in;  // what every launch shares
  in.eps = c.norm_eps;
  in.rows = b.rowpos;
  in.inv_freq = w_->inv_freq;
  in.kv = b.kv;
  in.work_q = b.xq, in.work_d = b.xd;  // lets 16 rows or more run in large tiles
  cuda::embed(w_->embed, b.tokens, n, b.x, /*device_layout=*/true);  // x: [n, H]
  mark(Kind::Embed);
  for (int64_t l = 0; l < c.n_layers; l++) {
    const LayerWeights& L = w_->layers[size_t(l)];
    in.layer = l;
    // q = RoPE(norm(x) Wq^T + bq); k, v of each row into the cache at its slot and position
    const cuda::GemvOut qkv[3] = {{L.wq, {}, b.q, L.bq, E::RopeQ}, {L.wk, {}, nullptr, L.bk, E::RopeK},
                                  {L.wv, {}, nullptr, L.bv, E::CacheV}};
    in.x = b.x, in.norm = L.attn_norm;
    if (b.kv.q8) in.k_stage = b.k, in.v_stage = b.v;  // k, v as floats, then whole q8 rows
    cuda::gemv(qkv, 3, in, n);
    mark(Kind::Qkv);
    if (b.kv.q8) {
      cuda::kv_store_q8(b.k, b.v, b.rowpos, n, b.kv, l);
      mark(Kind::Rope);
    }
    // att: [n, Q]; prompt runs on tensor cores, single rows split over their positions
    if (plan.n_tiles > 0) cuda::prompt_attention(b.att, b.q, b.rowpos, b.tiles, plan.n_tiles, heads, b.kv, l);
    if (plan.n_single > 0)
      cuda::attention_fused(b.att, b.q, b.rowpos, plan.n_single, heads, b.kv, l, b.work, b.counters,
                            plan.single_identity ? nullptr : b.single);
    mark(Kind::Attention);
    const cuda::GemvOut o{L.wo, {}, b.x, nullptr, E::Accumulate};  // x += att Wo^T
    in.x = b.att, in.norm = nullptr;
    cuda::gemv(&o, 1, in, n);
    mark(Kind::O);
    const cuda::GemvOut gu{L.gate, L.up, b.hb, nullptr, E::Glu};  // hb = silu(norm(x) Wg^T) * (norm(x) Wu^T)
    in.x = b.x, in.norm = L.ffn_norm;
    cuda::gemv(&gu, 1, in, n);
    mark(Kind::GateUp);
    const cuda::GemvOut dn{L.down, {}, b.x, nullptr, E::Accumulate};  // x += hb Wd^T
    in.x = b.hb, in.norm = nullptr;
    cuda::gemv(&dn, 1, in, n);
    mark(Kind::Down);
  }
  if (plan.wanted > 0) {  // logits of the wanted rows (x_rows), the final norm fused
    const cuda::GemvOut lm{w_->lm_head, {}, b.logits, nullptr, E::Store};
    in.x = b.x, in.norm = w_->final_norm;
    in.x_rows = plan.wanted_identity ? nullptr : b.xrows;
    cuda::gemv(&lm, 1, in, plan.wanted);
    mark(Kind::LmHead);
  }
}

CudaBatch::PassPlan CudaBatch::stage_rows(const int32_t* tok, const SlotRun* runs, int64_t n_runs, int64_t n) {
  int32_t* h = b_->host;
  int32_t *xrows = h + 3 * n, *single = h + 4 * n, *tiles = h + 5 * n;
  PassPlan p;
  // with an f16 cache the fused kernels take prompt runs on tensor cores, in tiles of up to R rows
  const bool tiled = fused_ && !b_->kv.q8;
  const int64_t R = tiled ? cuda::prompt_rows_per_tile(int(m_.cfg.n_heads), int(m_.cfg.n_kv_heads)) : 0;
  for (int64_t s = 0, t = 0; s < n_runs; s++) {
    const SlotRun& g = runs[s];
    for (int64_t j = 0; j < g.n; j++, t++) {
      h[t] = tok[t];
      h[n + 2 * t] = int32_t(g.slot);
      h[n + 2 * t + 1] = int32_t(g.pos0 + j);
      if (g.logits == SlotRun::All || (g.logits == SlotRun::Last && j + 1 == g.n)) {
        p.wanted_identity = p.wanted_identity && int64_t(t) == p.wanted;
        xrows[p.wanted++] = int32_t(t);
      }
      if (!tiled || g.n == 1) {
        p.single_identity = p.single_identity && int64_t(t) == p.n_single;
        single[p.n_single++] = int32_t(t);
      } else if (j % R == 0) {
        tiles[2 * p.n_tiles] = int32_t(t), tiles[2 * p.n_tiles + 1] = int32_t(std::min<int64_t>(R, g.n - j));
        p.n_tiles++;
      }
    }
  }
  p.wanted_identity = p.wanted_identity && p.wanted == n;
  p.single_identity = p.single_identity && p.n_single == n;
  cuda::to_device_async(b_->tokens, h, uint64_t(n) * 4);
  cuda::to_device_async(b_->rowpos, h + n, uint64_t(n) * 8);
  if (!p.wanted_identity && p.wanted > 0) cuda::to_device_async(b_->xrows, xrows, uint64_t(p.wanted) * 4);
  if (!p.single_identity && p.n_single > 0) cuda::to_device_async(b_->single, single, uint64_t(p.n_single) * 4);
  if (p.n_tiles > 0) cuda::to_device_async(b_->tiles, tiles, uint64_t(p.n_tiles) * 8);
  return p;
}

CudaBatch::PassPlan CudaBatch::run_pass(const int32_t* tok, const SlotRun* runs, int64_t n_runs) {
  const int64_t n = check_pass(m_.cfg, tok, runs, n_runs, slots_, ctx_);
  reserve(n);
  const PassPlan plan = stage_rows(tok, runs, n_runs, n);
  if (fused_ && plan.n_tiles == 0 && plan.n_single == n && plan.wanted == n && plan.single_identity &&
      plan.wanted_identity) {
    // a decode pass (a token of each of n slots, each wanting logits): the fused kernels depend
    // on nothing but n and the device buffers, so one graph per n serves every such pass
    void*& g = decode_graphs_[n];
    if (!g) {
      cuda::begin_capture();
      enqueue_fused(n, plan);
      g = cuda::end_capture();
    }
    cuda::replay(static_cast<cuda::Graph*>(g));
  } else if (fused_) {
    int64_t max_pos = 0;
    for (int64_t s = 0; s < n_runs; s++) max_pos = std::max(max_pos, runs[s].pos0 + runs[s].n - 1);
    enqueue(n, std::vector<SlotRun>(runs, runs + n_runs), max_pos);
  }
  return plan;
}

void CudaBatch::forward(const int32_t* tok, const SlotRun* runs, int64_t n_runs, float* out) {
  const PassPlan plan = run_pass(tok, runs, n_runs);
  if (plan.wanted > 0) cuda::to_host(out, b_->logits, uint64_t(plan.wanted * m_.cfg.vocab_size) * 4);
  else cuda::synchronize();
}

void CudaBatch::replay_decode(int32_t token, int64_t pos) {
  const SlotRun run{0, pos, 1, SlotRun::Last};
  check_pass(m_.cfg, &token, &run, 1, slots_, ctx_);
  const PassPlan plan = stage_rows(&token, &run, 1, 1);
  if (!graph_) {  // attention sized for any position: the graph serves every step
    cuda::begin_capture();
    if (fused_) enqueue_fused(1, plan);
    else enqueue(1, {run}, ctx_ - 1);
    graph_ = cuda::end_capture();
  }
  cuda::replay(static_cast<cuda::Graph*>(graph_));
}

void CudaBatch::decode_one(int32_t token, int64_t pos, float* out) {
  replay_decode(token, pos);
  logits_to_host(out);
}

int32_t CudaBatch::decode_greedy(int32_t token, int64_t pos, int64_t steps) {
  const SlotRun run{0, pos, 1, SlotRun::Last};
  check_pass(m_.cfg, &token, &run, 1, slots_, ctx_);
  if (steps < 1 || pos + steps > ctx_) fail_input("internal: decode_greedy past the context");
  const PassPlan plan = stage_rows(&token, &run, 1, 1);
  if (!greedy_graph_) {  // a decode step whose argmax is the next step's token and position
    cuda::begin_capture();
    if (fused_) enqueue_fused(1, plan);
    else enqueue(1, {run}, ctx_ - 1);
    cuda::argmax(b_->logits, 1, m_.cfg.vocab_size, b_->tokens, &b_->rowpos->pos);
    greedy_graph_ = cuda::end_capture();
  }
  for (int64_t i = 0; i < steps; i++) cuda::replay(static_cast<cuda::Graph*>(greedy_graph_));
  int32_t last = 0;
  cuda::to_host(&last, b_->tokens, 4);
  return last;
}

bool CudaBatch::picks(const SamplerParams& p) const { return fused_ && p.repetition_penalty == 1.0f && !p.dry.on(); }

void CudaBatch::forward_pick(const int32_t* tok, const SlotRun* runs, int64_t n_runs, const RowPick* picks,
                             int32_t* picked, float* out) {
  pick_rows(run_pass(tok, runs, n_runs).wanted, picks, picked, out);
}

int32_t CudaBatch::decode_pick(int32_t token, int64_t pos, const RowPick& pick) {
  replay_decode(token, pos);
  int32_t out = -1;
  pick_rows(1, &pick, &out, nullptr);
  return out;
}

// After a pass whose wanted rows' logits are in b_->logits: greedy rows through the argmax
// kernel (a launch per run of consecutive ones), sampled rows through cuda::sample (one at a time,
// sharing the scratch), then the picked tokens and the other rows' logits back.
void CudaBatch::pick_rows(int64_t rows, const RowPick* want, int32_t* picked, float* out) {
  const int64_t V = m_.cfg.vocab_size;
  for (int64_t r = 0; r < rows; r++)
    if (want[r].p && !picks(*want[r].p)) fail_input("internal: the GPU cannot pick with these parameters");
  if (!sb_ || sb_->rows < rows) {
    sb_.reset();
    auto sb = std::make_unique<SampleBuffers>();
    sb->rows = std::max<int64_t>(rows, slots_);
    sb->scratch = cuda::alloc(cuda::sample_scratch_bytes(V), "the sampler's scratch");
    sb->u = static_cast<double*>(cuda::alloc(uint64_t(sb->rows) * 8, "the sampler's draws"));
    sb->picked = static_cast<int32_t*>(cuda::alloc(uint64_t(sb->rows) * 4, "the picked tokens"));
    sb->host = static_cast<double*>(cuda::alloc_pinned(uint64_t(sb->rows) * 8));
    sb_ = std::move(sb);
  }
  // the draws: the last copy from the pinned buffer has finished (every call ends synchronized)
  for (int64_t r = 0; r < rows; r++) sb_->host[r] = want[r].u;
  cuda::to_device_async(sb_->u, sb_->host, uint64_t(rows) * 8);
  auto greedy = [&](int64_t r) { return want[r].p && want[r].p->temperature == 0; };
  for (int64_t r = 0; r < rows;) {
    if (!want[r].p) { r++; continue; }
    if (greedy(r)) {
      int64_t e = r + 1;
      while (e < rows && greedy(e)) e++;
      cuda::argmax(b_->logits + r * V, e - r, V, sb_->picked + r);
      r = e;
      continue;
    }
    const SamplerParams& p = *want[r].p;
    cuda::SampleParams sp;
    sp.temperature = p.temperature, sp.top_p = p.top_p, sp.min_p = p.min_p, sp.top_k = p.top_k;
    cuda::sample(b_->logits + r * V, V, sp, sb_->u + r, sb_->scratch, sb_->picked + r);
    r++;
  }
  for (int64_t r = 0; r < rows;) {  // the logits of rows not picked, a copy per run of them
    if (want[r].p) { r++; continue; }
    int64_t e = r + 1;
    while (e < rows && !want[e].p) e++;
    cuda::to_host(out + r * V, b_->logits + r * V, uint64_t((e - r) * V) * 4);
    r = e;
  }
  cuda::to_host(picked, sb_->picked, uint64_t(rows) * 4);
}

void CudaBatch::logits_to_host(float* out) const { cuda::to_host(out, b_->logits, uint64_t(m_.cfg.vocab_size) * 4); }

std::vector<CudaBatch::KindTime> CudaBatch::profile_decode(int32_t token, int64_t pos, int64_t steps) {
  const SlotRun run{0, pos, 1, SlotRun::Last};
  check_pass(m_.cfg, &token, &run, 1, slots_, ctx_);
  if (steps < 1 || pos + steps > ctx_) fail_input("internal: profile_decode past the context");
  const PassPlan plan = stage_rows(&token, &run, 1, 1);
  cuda::synchronize();
  cuda::profile_start(2.0f);  // the host queues the first steps while this delay runs
  for (int64_t i = 0; i < steps; i++) {
    if (fused_) enqueue_fused(1, plan);
    else enqueue(1, {run}, ctx_ - 1);
    cuda::argmax(b_->logits, 1, m_.cfg.vocab_size, b_->tokens, &b_->rowpos->pos);
    mark(Kind::Argmax);
  }
  std::vector<KindTime> out(size_t(Kind::Count));
  for (size_t k = 0; k < out.size(); k++) out[k].kind = cuda::kind_name(Kind(k));
  for (const cuda::ProfileSpan& s : cuda::profile_stop()) {
    out[size_t(s.kind)].ms += s.ms;
    out[size_t(s.kind)].launches++;
  }
  return out;
}

void CudaBatch::fill_kv_random(int64_t depth) {
  const int64_t hd = b_->kv.hd, rb = kv_row_bytes(kv_fmt_, hd);
  std::vector<uint8_t> rows(size_t(depth * rb));
  std::vector<float> x(static_cast<size_t>(hd));
  uint32_t st = 12345;
  for (int64_t p = 0; p < depth; p++) {  // values in +-[0.5, 1), as rows of the cache's format
    for (auto& f : x) {
      st = st * 1664525u + 1013904223u;
      f = f16_to_f32(uint16_t(((st >> 8) & 0x83ffu) | 0x3800u));
    }
    kv_encode_row(kv_fmt_, x.data(), hd, rows.data() + p * rb);
  }
  // every (slot, layer, kv head) block gets the same random history: only the traffic matters
  const int64_t blocks = slots_ * b_->kv.layers * b_->kv.n_kv, stride = ctx_ * rb;
  for (int64_t i = 0; i < blocks; i++) {
    cuda::to_device(reinterpret_cast<uint8_t*>(b_->kv.k) + i * stride, rows.data(), rows.size());
    cuda::to_device(reinterpret_cast<uint8_t*>(b_->kv.v) + i * stride, rows.data(), rows.size());
  }
}

KvShape CudaBatch::kv_shape() const { return KvShape{b_->kv.layers, b_->kv.n_kv, b_->kv.hd, kv_fmt_}; }

// The device cache is [slot][layer][kv head][ctx] rows: slot 0 starts at offset 0, laid out as
// one CPU sequence's cache. One synchronous copy per (layer, K/V, head) run.
std::vector<uint8_t> CudaBatch::kv_save(int64_t n) const {
  if (n < 0 || n > ctx_) fail_input("internal: KV snapshot of " + std::to_string(n) + " positions");
  const KvShape sh = kv_shape();
  std::vector<uint8_t> out(size_t(sh.bytes(n)));
  uint8_t* dst = out.data();
  for_each_kv_run(sh, ctx_, n, [&](bool is_v, uint64_t off, uint64_t run) {
    cuda::to_host(dst, reinterpret_cast<const uint8_t*>(is_v ? b_->kv.v : b_->kv.k) + off, run);
    dst += run;
  });
  return out;
}

void CudaBatch::kv_load(const std::vector<uint8_t>& packed, int64_t n) {
  const KvShape sh = kv_shape();
  if (n < 0 || n > ctx_ || packed.size() != sh.bytes(n)) fail_input("internal: KV snapshot does not fit the cache");
  const uint8_t* src = packed.data();
  for_each_kv_run(sh, ctx_, n, [&](bool is_v, uint64_t off, uint64_t run) {
    cuda::to_device(reinterpret_cast<uint8_t*>(is_v ? b_->kv.v : b_->kv.k) + off, src, run);
    src += run;
  });
}

CudaSession::CudaSession(const Model& m, int64_t ctx, KvFormat kv, const std::function<void(uint64_t, uint64_t)>& on_upload)
    : batch_(m, 1, ctx, kv, on_upload), logits_(size_t(m.cfg.vocab_size)) {}

void CudaSession::truncate(int64_t n) {
  if (n < 0 || n > n_past_) fail_input("internal: bad KV truncation");
  n_past_ = n;
}

void CudaSession::kv_load(const std::vector<uint8_t>& rows, int64_t n) {
  batch_.kv_load(rows, n);
  n_past_ = n;
}

const float* CudaSession::forward(const int32_t* tokens, int64_t n, bool all_logits) {
  if (n == 1 && !all_logits) {  // a decode step: the captured graph
    check_append(tokens, n, n_past_, ctx(), vocab());
    batch_.decode_one(tokens[0], n_past_, logits_.data());
    n_past_ += 1;
    return logits_.data();
  }
  return append_in_chunks(batch_, tokens, n, all_logits, n_past_, logits_);
}

int32_t CudaSession::forward_pick(int32_t token, const SamplerParams& p, double u) {
  check_append(&token, 1, n_past_, ctx(), vocab());
  const int32_t next = batch_.decode_pick(token, n_past_, {&p, u});
  n_past_ += 1;
  return next;
}

const float* CudaSession::picked_logits() {
  batch_.logits_to_host(logits_.data());
  return logits_.data();
}

#endif  // R1_HAVE_CUDA

}  // namespace r1
