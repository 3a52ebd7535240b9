#include "models/transformer.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/cpu.h"

namespace r1 {

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto m = std::make_unique<Model>();
  m->file = R1File::open(path);
  const R1File& f = *m->file;
  if (!f.meta().contains("config")) fail_input(path + ": metadata has no model config");
  m->cfg = config_from_json(f.meta()["config"]);
  const Config& c = m->cfg;

  // Every expected tensor present at its shape; 1-D ones f32, matrices in any weight format.
  for (auto& e : expected_tensors(c)) {
    const TensorInfo& t = f.get(e.name);
    if (t.shape != e.shape) fail_input(path + ": tensor " + e.name + " has the wrong shape for this config");
    if (e.shape.size() == 1 && t.fmt != Format::F32) fail_input(path + ": tensor " + e.name + " must be f32");
  }
  m->bind([&](const std::string& n) { return f.get(n).view(); },
          [&](const std::string& n) { return reinterpret_cast<const float*>(f.get(n).data); });
  return m;
}

void Model::bind(const std::function<WeightView(const std::string&)>& mat,
                 const std::function<const float*(const std::string&)>& vec) {
  const Config& c = cfg;
  embed = mat("model.embed_tokens.weight");
  lm_head = c.tied_embeddings ? embed : mat("lm_head.weight");
  final_norm = vec("model.norm.weight");
  layers.clear();
  for (int64_t l = 0; l < c.n_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = vec(p + "input_layernorm.weight");
    L.wq = mat(p + "self_attn.q_proj.weight");
    L.wk = mat(p + "self_attn.k_proj.weight");
    L.wv = mat(p + "self_attn.v_proj.weight");
    L.wo = mat(p + "self_attn.o_proj.weight");
    if (c.qkv_bias) {
      L.bq = vec(p + "self_attn.q_proj.bias");
      L.bk = vec(p + "self_attn.k_proj.bias");
      L.bv = vec(p + "self_attn.v_proj.bias");
    }
    L.ffn_norm = vec(p + "post_attention_layernorm.weight");
    L.gate = mat(p + "mlp.gate_proj.weight");
    L.up = mat(p + "mlp.up_proj.weight");
    L.down = mat(p + "mlp.down_proj.weight");
    layers.push_back(L);
  }
  inv_freq = rope_inv_freq(c);
}

uint64_t Model::weight_bytes() const {
  auto b = [](const WeightView& w) { return tensor_bytes(w.fmt, uint64_t(w.rows), uint64_t(w.cols)); };
  uint64_t s = b(lm_head);
  for (auto& L : layers) s += b(L.wq) + b(L.wk) + b(L.wv) + b(L.wo) + b(L.gate) + b(L.up) + b(L.down);
  return s;
}

CpuSession::CpuSession(const Model& m, int64_t ctx, bool kv_f16, ThreadPool& pool)
    : m_(m), pool_(pool), kv_(m.cfg, ctx, kv_f16) {
  const Config& c = m.cfg;
  chunk_ = std::min<int64_t>(64, ctx);
  x_.resize(size_t(chunk_ * c.hidden));
  xb_.resize(size_t(chunk_ * std::max(c.hidden, c.q_dim())));
  q_.resize(size_t(chunk_ * c.q_dim()));
  k_.resize(size_t(chunk_ * c.kv_dim()));
  v_.resize(size_t(chunk_ * c.kv_dim()));
  att_.resize(size_t(chunk_ * c.q_dim()));
  hb_.resize(size_t(chunk_ * c.intermediate));
  hb2_.resize(size_t(chunk_ * c.intermediate));
  logits_.resize(size_t(c.vocab_size));
  cs_.resize(size_t(c.head_dim));
}

void CpuSession::truncate(int64_t n) {
  if (n < 0 || n > n_past_) fail_input("internal: bad KV truncation");
  n_past_ = n;
}

const float* CpuSession::forward(const int32_t* tokens, int64_t n, bool all_logits) {
  if (n <= 0) fail_input("internal: forward with no tokens");
  if (n_past_ + n > kv_.ctx)
    fail_input("context full: " + std::to_string(n_past_ + n) + " tokens do not fit in --ctx " + std::to_string(kv_.ctx));
  for (int64_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= m_.cfg.vocab_size)
      fail_input("token id " + std::to_string(tokens[i]) + " is outside the vocabulary (0.." +
                 std::to_string(m_.cfg.vocab_size - 1) + ")");
  if (all_logits) logits_.resize(size_t(n * m_.cfg.vocab_size));
  for (int64_t done = 0; done < n; done += chunk_) {
    int64_t len = std::min(chunk_, n - done);
    const bool last = done + len == n;
    Logits want = all_logits ? Logits::All : last ? Logits::Last : Logits::None;
    forward_chunk(tokens + done, len, logits_.data() + (all_logits ? done * m_.cfg.vocab_size : 0), want);
  }
  return logits_.data();
}

// Runs a chunk of n tokens; writes the wanted logits to out ([vocab] or [n, vocab]).
void CpuSession::forward_chunk(const int32_t* tok, int64_t n, float* out, Logits want) {
  const Config& c = m_.cfg;
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate, hd = c.head_dim;
  const int64_t pos0 = n_past_;
  float *x = x_.data(), *xb = xb_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *att = att_.data(), *hb = hb_.data(), *hb2 = hb2_.data();
  // RoPE angles depend on the position only: cos/sin of each token once, not once per layer.
  // cs: [n, hd] = cos[hd / 2] sin[hd / 2] per token; float32 angles like the reference: pos * inv_freq
  if (cs_.size() < size_t(n * hd)) cs_.resize(size_t(n * hd));
  for (int64_t t = 0; t < n; t++) {
    const float pos = float(pos0 + t);
    for (int64_t i = 0; i < hd / 2; i++) {
      const float a = pos * m_.inv_freq[size_t(i)];
      cs_[size_t(t * hd + i)] = std::cos(a);
      cs_[size_t(t * hd + hd / 2 + i)] = std::sin(a);
    }
  }
  auto mm = [&](const WeightView& W, const float* in, float* o) {  // o[n, rows] = in[n, cols] W^T
    if (n == 1) cpu::matvec(pool_, W, in, o);
    else cpu::matmul(pool_, W, in, n, o);
  };
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
    mm(L.wq, xb, q);  // [n, Q]
    mm(L.wk, xb, k);  // [n, KV]
    mm(L.wv, xb, v);  // [n, KV]
    add_bias(q, L.bq, Q);
    add_bias(k, L.bk, KV);
    add_bias(v, L.bv, KV);
    for (int64_t t = 0; t < n; t++) {
      const float* cosv = cs_.data() + t * hd;
      const float* sinv = cosv + hd / 2;
      cpu::rope(q + t * Q, c.n_heads, hd, cosv, sinv);
      cpu::rope(k + t * KV, c.n_kv_heads, hd, cosv, sinv);
      kv_.store(l, pos0 + t, k + t * KV, v + t * KV);
    }
    cpu::attention(pool_, att, q, kv_.k_layer(l), kv_.v_layer(l), kv_.f16, kv_.ctx, pos0, n, int(c.n_heads),
                   int(c.n_kv_heads), int(hd));  // att: [n, Q]
    mm(L.wo, att, xb);                           // [n, H]
    for (int64_t i = 0; i < n * H; i++) x[i] += xb[i];

    // MLP block
    for (int64_t t = 0; t < n; t++) cpu::rmsnorm(xb + t * H, x + t * H, L.ffn_norm, H, c.norm_eps);
    mm(L.gate, xb, hb);  // [n, F]
    mm(L.up, xb, hb2);   // [n, F]
    cpu::silu_mul(hb, hb2, n * F);
    mm(L.down, hb, xb);  // [n, H]
    for (int64_t i = 0; i < n * H; i++) x[i] += xb[i];
  }
  n_past_ += n;
  if (want == Logits::None) return;

  // Final norm and lm_head: only for the rows whose logits are wanted.
  const int64_t first = want == Logits::All ? 0 : n - 1, rows = n - first;
  for (int64_t t = first; t < n; t++) cpu::rmsnorm(xb + (t - first) * H, x + t * H, m_.final_norm, H, c.norm_eps);
  if (rows == 1) cpu::matvec(pool_, m_.lm_head, xb, out);
  else cpu::matmul(pool_, m_.lm_head, xb, rows, out);
}

}  // namespace r1
