// The CPU backend: the forward pass shared by every family, over the weights of models/model.h.
// A token's path: embedding row -> per layer (RMSNorm, q/k/v, RoPE,
// attention over the KV cache, o_proj, residual, RMSNorm, SiLU-gated MLP, residual) -> final
// RMSNorm -> lm_head -> logits.
#pragma once
#include <memory>
#include <vector>

#include "core/kv_cache.h"
#include "core/session.h"
#include "core/threadpool.h"
#include "models/model.h"

namespace r1 {

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
