// The decoder shared by both families: weights as views into the mapped .r1m file, and the
// forward pass on the CPU. A token's path: embedding row -> per layer (RMSNorm, q/k/v, RoPE,
// attention over the KV cache, o_proj, residual, RMSNorm, SiLU-gated MLP, residual) -> final
// RMSNorm -> lm_head -> logits.
#pragma once
#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/kv_cache.h"
#include "core/r1m.h"
#include "core/schema.h"
#include "core/session.h"
#include "kernels/cpu/threadpool.h"
#include "quant/formats.h"

namespace r1 {

struct LayerWeights {
  const float* attn_norm = nullptr;       // [hidden]
  WeightView wq, wk, wv, wo;              // [q_dim, hidden] [kv_dim, hidden] x2 [hidden, q_dim]
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // Qwen2 only
  const float *q_norm = nullptr, *k_norm = nullptr;          // Qwen3 only: [head_dim]
  const float* ffn_norm = nullptr;        // [hidden]
  WeightView gate, up, down;              // [ffn, hidden] x2, [hidden, ffn]

  // The matrices, for whatever goes over all of them (byte counts, uploads, format checks).
  std::array<const WeightView*, 7> matrices() const { return {&wq, &wk, &wv, &wo, &gate, &up, &down}; }
  // Where a schema role binds (null for a role outside the layers).
  WeightView* matrix(Role r);
  const float** vector(Role r);
  const WeightView* matrix(Role r) const { return const_cast<LayerWeights*>(this)->matrix(r); }
  const float* const* vector(Role r) const { return const_cast<LayerWeights*>(this)->vector(r); }
};

struct Model {
  std::unique_ptr<R1File> file;
  std::shared_ptr<uint8_t> owned;         // weights held in memory (synthetic models); views point into it
  Config cfg;
  WeightView embed, lm_head;              // [vocab, hidden]
  const float* final_norm = nullptr;      // [hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> inv_freq;            // [head_dim / 2]

  // Opens and validates: every tensor the config needs, at its shape, in a usable format.
  static std::unique_ptr<Model> load(const std::string& path);
  uint64_t weight_bytes() const;  // bytes read per decoded token (all matrices but the embedding)
  const WeightView* matrix(const ModelTensor& t) const;  // the view bound to a matrix of the schema
  // Points the views at the schema's tensors (core/schema.h), from a file or synthetic.
  void bind(const std::function<WeightView(const ModelTensor&)>& mat,
            const std::function<const float*(const ModelTensor&)>& vec);
};

// Checks of what a backend is asked to run, shared by CPU and CUDA: slot runs within the cache and
// token ids within the vocabulary (returns the rows of the pass); n tokens appended after n_past.
int64_t check_pass(const Config& c, const int32_t* tok, const SlotRun* runs, int64_t n_runs, int64_t slots, int64_t ctx);
void check_append(const int32_t* tokens, int64_t n, int64_t n_past, int64_t ctx, int64_t vocab);
// A single sequence's forward on slot 0 of b: n tokens from n_past (advanced) in b.prefill_chunk()
// passes; returns the last token's logits, or all rows ([n, vocab]), in `logits`.
const float* append_in_chunks(BatchSession& b, const int32_t* tokens, int64_t n, bool all_logits, int64_t& n_past,
                              std::vector<float>& logits);

// Many sequences on the CPU, each in a slot of one KV cache (slots x ctx positions, allocated up
// front). A pass runs rows of any slots together: matrices see all rows at once ([rows, cols]
// products, weights read once per pass), RoPE, KV stores and attention go by each row's slot and
// position. A matmul row equals the matvec of that row bit for bit, so a sequence's results do
// not depend on what else is in the pass.
class CpuBatch : public BatchSession {
 public:
  CpuBatch(const Model& m, int64_t n_slots, int64_t ctx, KvFormat kv, ThreadPool& pool);
  int64_t slots() const override { return kv_.n_slots; }
  int64_t ctx() const override { return kv_.ctx; }
  int64_t vocab() const override { return m_.cfg.vocab_size; }
  void forward(const int32_t* tokens, const SlotRun* runs, int64_t n_runs, float* out) override;
  const KVCache& kv() const { return kv_; }
  KVCache& kv_mut() { return kv_; }

 private:
  void reserve(int64_t rows);  // scratch for `rows` tokens per pass (grow-only)
  const Model& m_;
  ThreadPool& pool_;
  KVCache kv_;
  int64_t rows_ = 0;
  std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_, cs_;
};

// One sequence on the CPU: a one-slot CpuBatch and how many positions are filled. forward()
// appends tokens (in chunks of kPrefillChunk); truncate() rewinds (to reuse a common prefix).
class CpuSession : public Session {
 public:
  CpuSession(const Model& m, int64_t ctx, KvFormat kv, ThreadPool& pool);
  int64_t ctx() const override { return batch_.ctx(); }
  int64_t n_past() const override { return n_past_; }
  int64_t vocab() const override { return batch_.vocab(); }
  void truncate(int64_t n) override;
  const KVCache& kv() const { return batch_.kv(); }
  KVCache& kv_mut() { return batch_.kv_mut(); }
  void set_n_past(int64_t n) { n_past_ = n; }
  bool kv_shape(KvShape* out) const override;
  std::vector<uint8_t> kv_save() const override;
  void kv_load(const std::vector<uint8_t>& rows, int64_t n) override;

  // Runs n tokens at positions [n_past, n_past + n). Returns the logits of the last token
  // ([vocab]) or, with all_logits, of every token ([n, vocab]). Valid until the next call.
  const float* forward(const int32_t* tokens, int64_t n, bool all_logits = false) override;

 private:
  CpuBatch batch_;
  int64_t n_past_ = 0;
  std::vector<float> logits_;
};

}  // namespace r1
