#include "models/transformer.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/snapshot.h"
#include "kernels/cpu/cpu.h"

namespace r1 {

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto m = std::make_unique<Model>();
  m->file = R1File::open(path);
  const R1File& f = *m->file;
  if (!f.meta().contains("config")) fail_input(path + ": metadata has no model config");
  m->cfg = config_from_json(f.meta()["config"]);
  const Config& c = m->cfg;

  // Every tensor of the schema present at its shape; 1-D ones f32, matrices in any weight format.
  for (const ModelTensor& e : model_tensors(c)) {
    const TensorInfo& t = f.get(e.name);
    if (t.shape != e.shape) fail_input(path + ": tensor " + e.name + " has the wrong shape for this config");
    if (!e.matrix() && t.fmt != Format::F32) fail_input(path + ": tensor " + e.name + " must be f32");
  }
  m->bind([&](const ModelTensor& e) { return f.get(e.name).view(); },
          [&](const ModelTensor& e) { return reinterpret_cast<const float*>(f.get(e.name).data); });
  return m;
}

WeightView* LayerWeights::matrix(Role r) {
  switch (r) {
    case Role::Q: return &wq;
    case Role::K: return &wk;
    case Role::V: return &wv;
    case Role::O: return &wo;
    case Role::Gate: return &gate;
    case Role::Up: return &up;
    case Role::Down: return &down;
    default: return nullptr;
  }
}

const float** LayerWeights::vector(Role r) {
  switch (r) {
    case Role::AttnNorm: return &attn_norm;
    case Role::QBias: return &bq;
    case Role::KBias: return &bk;
    case Role::VBias: return &bv;
    case Role::QNorm: return &q_norm;
    case Role::KNorm: return &k_norm;
    case Role::FfnNorm: return &ffn_norm;
    default: return nullptr;
  }
}

void Model::bind(const std::function<WeightView(const ModelTensor&)>& mat,
                 const std::function<const float*(const ModelTensor&)>& vec) {
  const Config& c = cfg;
  layers.assign(size_t(c.n_layers), LayerWeights{});
  for (const ModelTensor& e : model_tensors(c)) {
    if (e.role == Role::Embed) embed = mat(e);
    else if (e.role == Role::Output) lm_head = mat(e);
    else if (e.role == Role::FinalNorm) final_norm = vec(e);
    else if (WeightView* w = layers[size_t(e.layer)].matrix(e.role)) *w = mat(e);
    else *layers[size_t(e.layer)].vector(e.role) = vec(e);
  }
  if (c.tied_embeddings) lm_head = embed;
  inv_freq = rope_inv_freq(c);
}

const WeightView* Model::matrix(const ModelTensor& t) const {
  if (t.role == Role::Embed) return &embed;
  if (t.role == Role::Output) return &lm_head;
  return t.layer >= 0 ? layers[size_t(t.layer)].matrix(t.role) : nullptr;
}

uint64_t Model::weight_bytes() const {
  auto b = [](const WeightView& w) { return tensor_bytes(w.fmt, uint64_t(w.rows), uint64_t(w.cols)); };
  uint64_t s = b(lm_head);
  for (auto& L : layers)
    for (const WeightView* w : L.matrices()) s += b(*w);
  return s;
}

static void check_tokens(const int32_t* tok, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; i++)
    if (tok[i] < 0 || tok[i] >= vocab)
      fail_input("token id " + std::to_string(tok[i]) + " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
}

int64_t check_pass(const Config& c, const int32_t* tok, const SlotRun* runs, int64_t n_runs, int64_t slots, int64_t ctx) {
  int64_t n = 0;
  for (int64_t s = 0; s < n_runs; s++) {
    const SlotRun& g = runs[s];
    if (g.slot < 0 || g.slot >= slots || g.n <= 0 || g.pos0 < 0 || g.pos0 + g.n > ctx)
      fail_input("internal: bad slot run (slot " + std::to_string(g.slot) + ", positions " + std::to_string(g.pos0) +
                 "+" + std::to_string(g.n) + ")");
    n += g.n;
  }
  if (n == 0) fail_input("internal: forward with no tokens");
  check_tokens(tok, n, c.vocab_size);
  return n;
}

void check_append(const int32_t* tokens, int64_t n, int64_t n_past, int64_t ctx, int64_t vocab) {
  if (n <= 0) fail_input("internal: forward with no tokens");
  if (n_past + n > ctx)
    fail_input("context full: " + std::to_string(n_past + n) + " tokens do not fit in --ctx " + std::to_string(ctx));
  check_tokens(tokens, n, vocab);  // all of them before any chunk runs: a refused prompt leaves the cache as it was
}

CpuBatch::CpuBatch(const Model& m, int64_t n_slots, int64_t ctx, KvFormat kv, ThreadPool& pool)
    : m_(m), pool_(pool), kv_(m.cfg, ctx, kv, n_slots) {
  reserve(std::min<int64_t>(kPrefillChunk, ctx));
}

void CpuBatch::reserve(int64_t rows) {
  if (rows <= rows_) return;
  const Config& c = m_.cfg;
  rows_ = rows;
  x_.resize(size_t(rows * c.hidden));
  xb_.resize(size_t(rows * std::max(c.hidden, c.q_dim())));
  q_.resize(size_t(rows * c.q_dim()));
  k_.resize(size_t(rows * c.kv_dim()));
  v_.resize(size_t(rows * c.kv_dim()));
  att_.resize(size_t(rows * c.q_dim()));
  hb_.resize(size_t(rows * c.intermediate));
  hb2_.resize(size_t(rows * c.intermediate));
  cs_.resize(size_t(rows * c.head_dim));
}

// One pass over the rows of every run; writes the wanted logits to out ([rows wanted, vocab]).
void CpuBatch::forward(const int32_t* tok, const SlotRun* runs, int64_t n_runs, float* out) {
  const Config& c = m_.cfg;
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate, hd = c.head_dim;
  const int64_t n = check_pass(c, tok, runs, n_runs, slots(), ctx());  // rows in this pass
  reserve(n);
  float *x = x_.data(), *xb = xb_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *att = att_.data(), *hb = hb_.data(), *hb2 = hb2_.data();
  // RoPE angles depend on the position only: cos/sin of each row once, not once per layer.
  // cs: [n, hd] = cos[hd / 2] sin[hd / 2] per row; float32 angles like the reference: pos * inv_freq
  for (int64_t s = 0, t = 0; s < n_runs; s++)
    for (int64_t j = 0; j < runs[s].n; j++, t++) {
      const float pos = float(runs[s].pos0 + j);
      for (int64_t i = 0; i < hd / 2; i++) {
        const float a = pos * m_.inv_freq[size_t(i)];
        cs_[size_t(t * hd + i)] = std::cos(a);
        cs_[size_t(t * hd + hd / 2 + i)] = std::sin(a);
      }
    }
  auto add_bias = [&](float* y, const float* b, int64_t dim) {
    if (!b) return;
    for (int64_t t = 0; t < n; t++)
      for (int64_t i = 0; i < dim; i++) y[t * dim + i] += b[i];
  };

  for (int64_t t = 0; t < n; t++) cpu::dequant_row(m_.embed, tok[t], x + t * H);  // x: [n, H]

  for (int64_t l = 0; l < c.n_layers; l++) {
    const LayerWeights& L = m_.layers[size_t(l)];
    // attention block
    for (int64_t t = 0; t < n; t++) cpu::rmsnorm(xb + t * H, x + t * H, L.attn_norm, H, c.norm_eps);
    {  // q: [n, Q], k and v: [n, KV]; one pass over the threads for the three
      const WeightView W[3] = {L.wq, L.wk, L.wv};
      float* const Y[3] = {q, k, v};
      cpu::matmul_multi(pool_, W, 3, xb, n, Y);
    }
    add_bias(q, L.bq, Q);
    add_bias(k, L.bk, KV);
    add_bias(v, L.bv, KV);
    if (L.q_norm)  // Qwen3: each head of q and k normalized on its own
      for (int64_t t = 0; t < n; t++) {
        for (int64_t h = 0; h < c.n_heads; h++) cpu::rmsnorm(q + t * Q + h * hd, q + t * Q + h * hd, L.q_norm, hd, c.norm_eps);
        for (int64_t h = 0; h < c.n_kv_heads; h++) cpu::rmsnorm(k + t * KV + h * hd, k + t * KV + h * hd, L.k_norm, hd, c.norm_eps);
      }
    for (int64_t s = 0, t = 0; s < n_runs; s++)
      for (int64_t j = 0; j < runs[s].n; j++, t++) {
        const float* cosv = cs_.data() + t * hd;
        const float* sinv = cosv + hd / 2;
        cpu::rope(q + t * Q, c.n_heads, hd, cosv, sinv);
        cpu::rope(k + t * KV, c.n_kv_heads, hd, cosv, sinv);
        kv_.store(l, runs[s].pos0 + j, k + t * KV, v + t * KV, runs[s].slot);
      }
    // each run against its own slot's cache      att: [n, Q]
    for (int64_t s = 0, r0 = 0; s < n_runs; r0 += runs[s].n, s++)
      cpu::attention(pool_, att + r0 * Q, q + r0 * Q, kv_.k_layer(l, runs[s].slot), kv_.v_layer(l, runs[s].slot), kv_.fmt,
                     kv_.ctx, runs[s].pos0, runs[s].n, int(c.n_heads), int(c.n_kv_heads), int(hd));
    cpu::matmul(pool_, L.wo, att, n, xb);  // [n, H]
    for (int64_t i = 0; i < n * H; i++) x[i] += xb[i];

    // MLP block
    for (int64_t t = 0; t < n; t++) cpu::rmsnorm(xb + t * H, x + t * H, L.ffn_norm, H, c.norm_eps);
    {  // hb, hb2: [n, F]
      const WeightView W[2] = {L.gate, L.up};
      float* const Y[2] = {hb, hb2};
      cpu::matmul_multi(pool_, W, 2, xb, n, Y);
    }
    cpu::silu_mul(hb, hb2, n * F);
    cpu::matmul(pool_, L.down, hb, n, xb);  // [n, H]
    for (int64_t i = 0; i < n * H; i++) x[i] += xb[i];
  }

  // Final norm and lm_head: only for the rows whose logits are wanted, gathered in xb.
  int64_t rows = 0;
  for (int64_t s = 0, r0 = 0; s < n_runs; r0 += runs[s].n, s++) {
    const int64_t first = runs[s].logits == SlotRun::All ? r0 : r0 + runs[s].n - 1;
    if (runs[s].logits == SlotRun::None) continue;
    for (int64_t t = first; t < r0 + runs[s].n; t++, rows++)
      cpu::rmsnorm(xb + rows * H, x + t * H, m_.final_norm, H, c.norm_eps);
  }
  if (rows > 0) cpu::matmul(pool_, m_.lm_head, xb, rows, out);
}

CpuSession::CpuSession(const Model& m, int64_t ctx, KvFormat kv, ThreadPool& pool)
    : batch_(m, 1, ctx, kv, pool), logits_(size_t(m.cfg.vocab_size)) {}

void CpuSession::truncate(int64_t n) {
  if (n < 0 || n > n_past_) fail_input("internal: bad KV truncation");
  n_past_ = n;
}

const float* append_in_chunks(BatchSession& b, const int32_t* tokens, int64_t n, bool all_logits, int64_t& n_past,
                              std::vector<float>& logits) {
  check_append(tokens, n, n_past, b.ctx(), b.vocab());
  if (all_logits) logits.resize(size_t(n * b.vocab()));
  const int64_t chunk = b.prefill_chunk();
  for (int64_t done = 0; done < n; done += chunk) {
    const int64_t len = std::min(chunk, n - done);
    SlotRun seg{0, n_past, len, all_logits ? SlotRun::All : done + len == n ? SlotRun::Last : SlotRun::None};
    b.forward(tokens + done, &seg, 1, logits.data() + (all_logits ? done * b.vocab() : 0));
    n_past += len;
  }
  return logits.data();
}

bool CpuSession::kv_shape(KvShape* out) const { return *out = r1::kv_shape(kv()), true; }
std::vector<uint8_t> CpuSession::kv_save() const { return kv_extract(kv(), n_past_); }
void CpuSession::kv_load(const std::vector<uint8_t>& rows, int64_t n) {
  kv_restore(kv_mut(), rows, n);
  n_past_ = n;
}

const float* CpuSession::forward(const int32_t* tokens, int64_t n, bool all_logits) {
  return append_in_chunks(batch_, tokens, n, all_logits, n_past_, logits_);
}

}  // namespace r1
