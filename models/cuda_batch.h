// The decoder on an NVIDIA GPU: the same pass as CpuBatch (models/transformer.cpp), step for step,
// with weights uploaded once and everything but the logits kept on the device. Built only with
// CUDA (R1_HAVE_CUDA); cuda_available() says whether this binary and machine can run it.
#pragma once
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/session.h"
#include "models/transformer.h"

namespace r1 {

// Whether --device cuda can run here; if not, why (one line).
bool cuda_available(std::string* why = nullptr);

// Device bytes a model needs besides its weights: KV cache for slots x ctx, workspace for `rows`
// tokens per pass. Used to refuse up front what would not fit.
uint64_t cuda_bytes_needed(const Model& m, int64_t slots, int64_t ctx, int64_t rows);
// The weights as uploaded (each tensor 256-byte aligned).
uint64_t cuda_weight_bytes(const Model& m);
// The device-memory plan, checked before anything big is allocated: "" if weights + KV cache +
// workspace (+ headroom for the CUDA context) fit in free_bytes, else a one-line error saying
// what does not fit and what would (a shorter --ctx, a q4 file, --device cpu).
std::string cuda_fit_problem(const Model& m, int64_t slots, int64_t ctx, uint64_t free_bytes, const std::string& device);
// Rows per pass a CudaBatch is first sized for.
inline int64_t cuda_pass_rows(int64_t slots, int64_t ctx) { return std::min<int64_t>(kPrefillChunk, ctx) + slots; }

#ifdef R1_HAVE_CUDA
struct CudaWeights;  // the device copy of a Model's weights

class CudaBatch : public BatchSession {
 public:
  // Uploads the weights (shared by nothing else) and allocates the f16 KV cache and workspace;
  // fails with what does not fit, and what would, before allocating anything big.
  CudaBatch(const Model& m, int64_t n_slots, int64_t ctx);
  ~CudaBatch() override;
  int64_t slots() const override { return slots_; }
  int64_t ctx() const override { return ctx_; }
  int64_t vocab() const override { return m_.cfg.vocab_size; }
  void forward(const int32_t* tokens, const SlotRun* runs, int64_t n_runs, float* out) override;
  // One token of slot 0 at position pos, through a CUDA graph captured on first use; logits to out.
  void decode_one(int32_t token, int64_t pos, float* out);
  // Random f16 in +-[0.5, 1) at positions [0, depth) of every slot (benchmarks at depth).
  void fill_kv_random(int64_t depth);

 private:
  struct Buffers;
  void reserve(int64_t rows);
  // The kernels of one pass over n rows whose tokens and positions are already on the device.
  void enqueue(int64_t n, const std::vector<SlotRun>& runs, int64_t max_pos);
  const Model& m_;
  int64_t slots_, ctx_;
  std::unique_ptr<CudaWeights> w_;
  std::unique_ptr<Buffers> b_;
  void* graph_ = nullptr;  // cuda::Graph of decode_one
  std::vector<int32_t> h_rows_;  // host staging of tokens and row positions
};

// One sequence on the GPU: a one-slot CudaBatch; prompts run in kPrefillChunk passes, single
// tokens through the captured decode graph.
class CudaSession : public Session {
 public:
  CudaSession(const Model& m, int64_t ctx);
  int64_t ctx() const override { return batch_.ctx(); }
  int64_t n_past() const override { return n_past_; }
  int64_t vocab() const override { return batch_.vocab(); }
  void truncate(int64_t n) override;
  void set_n_past(int64_t n) { n_past_ = n; }
  CudaBatch& batch() { return batch_; }
  const float* forward(const int32_t* tokens, int64_t n, bool all_logits = false) override;

 private:
  CudaBatch batch_;
  int64_t n_past_ = 0;
  std::vector<float> logits_;
};
#endif

}  // namespace r1
