#include "models/cpu_backend.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/snapshot.h"
#include "kernels/cpu/cpu.h"

namespace r1 {

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
