// The decoder on an NVIDIA GPU: the same pass as CpuBatch (models/cpu_backend.cpp), step for step,
// with weights uploaded once and everything but the logits kept on the device. Built only with
// CUDA (R1_HAVE_CUDA); cuda_available() says whether this binary and machine can run it.
#pragma once
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quant/kv_format.h"
#include "core/sampler.h"
#include "core/session.h"
#include "core/snapshot.h"
#include "models/model.h"

namespace r1 {

// Whether --device cuda can run here; if not, why (one line).
bool cuda_available(std::string* why = nullptr);

// Which kernels a CudaBatch runs. Legacy (the default until a GPU run verifies the other): the
// file's layout with q5 widened to q8, ten launches a layer. Fused (kernels/cuda/gemv.cu,
// attention.cu): the device layout of kernels/cuda/layout.h with q5 native, five launches a
// decode layer. R1_CUDA_KERNELS=legacy|fused at first use, unless set_cuda_kernels() was called.
enum class CudaKernels { Legacy, Fused };
CudaKernels cuda_kernels();
void set_cuda_kernels(CudaKernels k);
const char* cuda_kernels_name(CudaKernels k);
// Whether model m runs the fused kernels: they are selected, every matrix is q4/q5/q8 and the
// attention shape is one they support; otherwise it runs the legacy ones.
bool cuda_fused(const Model& m);

// Device bytes a model needs besides its weights: KV cache for slots x ctx, workspace for `rows`
// tokens per pass. Used to refuse up front what would not fit.
uint64_t cuda_bytes_needed(const Model& m, int64_t slots, int64_t ctx, int64_t rows, KvFormat kv = KvFormat::F16);
// The weights as uploaded (each tensor 256-byte aligned).
uint64_t cuda_weight_bytes(const Model& m);
// The device-memory plan, checked before anything big is allocated: "" if weights + KV cache +
// workspace (+ headroom for the CUDA context) fit in free_bytes, else a one-line error saying
// what does not fit and what would (a shorter --ctx, a q4 file, --device cpu).
std::string cuda_fit_problem(const Model& m, int64_t slots, int64_t ctx, uint64_t free_bytes, const std::string& device,
                             KvFormat kv = KvFormat::F16);
// "" if the GPU kernels run this model's architecture, else why not (a phrase; models/backend.cpp
// makes it a message).
std::string cuda_model_problem(const Model& m);
// "" if the GPU can keep this model's cache in format kv (f16 always; q8 with the fused kernels),
// else why not (a phrase).
std::string cuda_kv_problem(const Model& m, KvFormat kv);
// Prompt tokens per pass on the GPU: 512 with the fused kernels and an f16 cache (their bits do
// not depend on the chunking, and prompt runs take the tensor-core attention, which needs no
// scratch), else kPrefillChunk.
int64_t cuda_prefill_chunk(const Model& m, KvFormat kv);
// Rows per pass a CudaBatch is sized for: two prompt chunks (what the batch scheduler puts in a
// pass) and one row per slot.
int64_t cuda_pass_rows(const Model& m, int64_t slots, int64_t ctx, KvFormat kv);

// What a decode step reads, by kernel kind (bench --profile): bytes of the matrices as they sit
// on the device, and of the KV cache at position pos (one sequence).
struct StepBytes {
  std::string kind;
  uint64_t bytes;
};
std::vector<StepBytes> cuda_step_bytes(const Model& m, int64_t pos, KvFormat kv = KvFormat::F16);

#ifdef R1_HAVE_CUDA
struct CudaWeights;  // the device copy of a Model's weights

class CudaBatch : public BatchSession {
 public:
  // Uploads the weights (shared by nothing else) and allocates the KV cache (f16, or q8 with the
  // fused kernels) and workspace; fails with what does not fit, and what would, before
  // allocating anything big. on_upload: the weights copied so far (may be empty).
  CudaBatch(const Model& m, int64_t n_slots, int64_t ctx, KvFormat kv = KvFormat::F16,
            const std::function<void(uint64_t, uint64_t)>& on_upload = {});
  ~CudaBatch() override;
  int64_t slots() const override { return slots_; }
  int64_t ctx() const override { return ctx_; }
  int64_t vocab() const override { return m_.cfg.vocab_size; }
  int64_t prefill_chunk() const override { return chunk_; }
  bool fused() const { return fused_; }
  void forward(const int32_t* tokens, const SlotRun* runs, int64_t n_runs, float* out) override;
  // One token of slot 0 at position pos, through a CUDA graph captured on first use; logits to out.
  void decode_one(int32_t token, int64_t pos, float* out);
  // `steps` greedy tokens of slot 0 from `token` at position pos, on the device: each step's
  // graph ends with an argmax that becomes the next step's input, and nothing comes back until
  // the last step. Returns the last token chosen.
  int32_t decode_greedy(int32_t token, int64_t pos, int64_t steps);
  // The token loop on the device, with the fused kernels (opt-in like them until a GPU run
  // verifies it): greedy rows through the argmax kernel, sampled ones through cuda::sample (the
  // CPU sampler's pick for the same parameters and draw); penalties and DRY stay on the host.
  bool picks(const SamplerParams& p) const override;
  void forward_pick(const int32_t* tokens, const SlotRun* runs, int64_t n_runs, const RowPick* picks, int32_t* picked,
                    float* out) override;
  // decode_one, then the next token picked on the device; only the token comes back.
  // logits_to_host: the logits of that step.
  int32_t decode_pick(int32_t token, int64_t pos, const RowPick& pick);
  void logits_to_host(float* out) const;
  // Device time per kernel kind of `steps` greedy decode steps from `token` at pos, launched
  // without the graph (bench --profile): total milliseconds and launches per kind.
  struct KindTime {
    std::string kind;
    double ms = 0;
    int64_t launches = 0;
  };
  std::vector<KindTime> profile_decode(int32_t token, int64_t pos, int64_t steps);
  // Slot 0's first n positions, packed as core/snapshot.h packs a cache (chat /save), and back
  // (/load). The rows are the CPU cache's bytes in the same format, so a snapshot moves between
  // devices.
  KvShape kv_shape() const;
  std::vector<uint8_t> kv_save(int64_t n) const;
  void kv_load(const std::vector<uint8_t>& packed, int64_t n);
  // Random f16 in +-[0.5, 1) at positions [0, depth) of every slot (benchmarks at depth).
  void fill_kv_random(int64_t depth);

 private:
  struct Buffers;
  void reserve(int64_t rows);
  void replay_decode(int32_t token, int64_t pos);  // decode_one's graph (captured on first use)
  // The picks of a pass's `rows` wanted rows (forward_pick's), after its kernels.
  void pick_rows(int64_t rows, const RowPick* want, int32_t* picked, float* out);
  // The kernels of one pass over n rows whose tokens and positions are already on the device.
  void enqueue(int64_t n, const std::vector<SlotRun>& runs, int64_t max_pos);
  // What a pass sends where (stage_rows): rows wanting logits, single rows for the split
  // attention, prompt tiles for the tensor-core one.
  struct PassPlan {
    int64_t wanted = 0, n_single = 0, n_tiles = 0;
    bool wanted_identity = true, single_identity = true;
  };
  // The same with the fused kernels.
  void enqueue_fused(int64_t n, const PassPlan& plan);
  // Tokens, positions and the pass plan to the device (pinned staging, asynchronous copies).
  PassPlan stage_rows(const int32_t* tok, const SlotRun* runs, int64_t n_runs, int64_t n);
  PassPlan run_pass(const int32_t* tok, const SlotRun* runs, int64_t n_runs);  // checks, stages, enqueues
  const Model& m_;
  int64_t slots_, ctx_;
  bool fused_;
  KvFormat kv_fmt_;
  int64_t chunk_;  // prefill_chunk()
  std::unique_ptr<CudaWeights> w_;
  std::unique_ptr<Buffers> b_;
  struct SampleBuffers;  // decode_sample's, allocated on first use
  std::unique_ptr<SampleBuffers> sb_;
  void* graph_ = nullptr;         // cuda::Graph of decode_one
  void* greedy_graph_ = nullptr;  // ... with the argmax (decode_greedy)
  std::map<int64_t, void*> decode_graphs_;  // fused decode passes of n rows, by n (run_pass)
  void drop_graphs();
};

// One sequence on the GPU: a one-slot CudaBatch; prompts run in prefill_chunk() passes, single
// tokens through the captured decode graph.
class CudaSession : public Session {
 public:
  CudaSession(const Model& m, int64_t ctx, KvFormat kv = KvFormat::F16,
              const std::function<void(uint64_t, uint64_t)>& on_upload = {});
  int64_t ctx() const override { return batch_.ctx(); }
  int64_t n_past() const override { return n_past_; }
  int64_t vocab() const override { return batch_.vocab(); }
  void truncate(int64_t n) override;
  void set_n_past(int64_t n) { n_past_ = n; }
  CudaBatch& batch() { return batch_; }
  const float* forward(const int32_t* tokens, int64_t n, bool all_logits = false) override;
  // The token loop on the device: CudaBatch::decode_pick.
  bool picks(const SamplerParams& p) const override { return batch_.picks(p); }
  int32_t forward_pick(int32_t token, const SamplerParams& p, double u) override;
  const float* picked_logits() override;
  bool kv_shape(KvShape* out) const override { return *out = batch_.kv_shape(), true; }
  std::vector<uint8_t> kv_save() const override { return batch_.kv_save(n_past_); }
  void kv_load(const std::vector<uint8_t>& rows, int64_t n) override;

 private:
  CudaBatch batch_;
  int64_t n_past_ = 0;
  std::vector<float> logits_;
};
#endif

}  // namespace r1
