// What generation, chat, batch and score talk to, whatever the backend (CPU now, CUDA later).
// A Session is one sequence: it owns a KV cache and turns tokens into logits. A BatchSession holds
// many sequences, each in a KV slot of its own, and advances any of them together in one pass,
// so that the weights are read once per step for all of them (continuous batching).
#pragma once
#include <cstdint>
#include <vector>

namespace r1 {

struct Config;
struct KvShape;        // core/snapshot.h
struct SamplerParams;  // core/sampler.h

// Prompts run in passes of this many tokens (from the first uncached position), unless a backend
// says otherwise (BatchSession::prefill_chunk). Batched prefill keeps the same boundaries, so a
// sequence gets the same bits alone or in a batch.
inline constexpr int64_t kPrefillChunk = 64;

class Session {
 public:
  virtual ~Session() = default;
  virtual int64_t ctx() const = 0;     // positions the cache holds
  virtual int64_t n_past() const = 0;  // positions filled
  virtual int64_t vocab() const = 0;   // logits per position
  virtual void truncate(int64_t n) = 0;
  // Appends n tokens; returns the last token's logits [vocab], or all rows [n, vocab].
  virtual const float* forward(const int32_t* tokens, int64_t n, bool all_logits = false) = 0;
  // The token loop on the backend (the GPU): forward_pick appends one token and returns the next,
  // chosen from the new logits as Sampler::pick chooses with the same parameters and draw u,
  // without bringing the logits back. Only where picks(p) (the default: never; penalties and DRY
  // always stay with the caller's sampler). picked_logits: those logits [vocab], brought back.
  virtual bool picks(const SamplerParams&) const { return false; }
  virtual int32_t forward_pick(int32_t token, const SamplerParams& p, double u);
  virtual const float* picked_logits();
  // Chat's /save and /load: the KV rows of the filled positions as core/snapshot.h packs them,
  // and back (the cache then holds n positions); CPU and GPU keep the same rows. kv_shape is
  // false where a backend keeps no snapshot (the default), and kv_save/kv_load then refuse.
  virtual bool kv_shape(KvShape*) const { return false; }
  virtual std::vector<uint8_t> kv_save() const;
  virtual void kv_load(const std::vector<uint8_t>& rows, int64_t n);
};

// Consecutive tokens of one slot within a pass: they sit at positions [pos0, pos0 + n) of that
// slot and see its cache positions before them. `logits`: which rows get logits.
struct SlotRun {
  enum Logits { None, Last, All };
  int64_t slot = 0, pos0 = 0, n = 0;
  Logits logits = Last;
};

class BatchSession {
 public:
  virtual ~BatchSession() = default;
  virtual int64_t slots() const = 0;
  virtual int64_t ctx() const = 0;    // positions per slot
  virtual int64_t vocab() const = 0;
  // Prompt tokens per pass (the chunk boundaries every caller keeps): kPrefillChunk, or more
  // where the backend's results do not depend on how a prompt is cut (the GPU's fused kernels).
  virtual int64_t prefill_chunk() const { return kPrefillChunk; }
  // One pass over runs whose tokens lie back to back in `tokens` (a slot at most once).
  // Writes the wanted logits to `out`, run after run: [rows wanted, vocab].
  virtual void forward(const int32_t* tokens, const SlotRun* runs, int64_t n_runs, float* out) = 0;
  // The token loop on the backend (the GPU) for a pass: forward() where each wanted row r with
  // picks[r].p gets the token Sampler::pick chooses from its logits with *p and picks[r].u in
  // picked[r] instead of its logits in out; the other wanted rows' logits go to out as forward()
  // puts them (row r at out + r * vocab). Only where picks(*p) for each p given (the default:
  // never, as for Session).
  struct RowPick {
    const SamplerParams* p = nullptr;  // null: the row's logits come back
    double u = 0;
  };
  virtual bool picks(const SamplerParams&) const { return false; }
  virtual void forward_pick(const int32_t* tokens, const SlotRun* runs, int64_t n_runs, const RowPick* picks,
                            int32_t* picked, float* out);
};

// Checks of what a backend is asked to run, shared by CPU and CUDA: slot runs within the cache and
// token ids within the vocabulary (returns the rows of the pass); n tokens appended after n_past.
int64_t check_pass(const Config& c, const int32_t* tok, const SlotRun* runs, int64_t n_runs, int64_t slots, int64_t ctx);
void check_append(const int32_t* tokens, int64_t n, int64_t n_past, int64_t ctx, int64_t vocab);
// A single sequence's forward on slot 0 of b: n tokens from n_past (advanced) in b.prefill_chunk()
// passes; returns the last token's logits, or all rows ([n, vocab]), in `logits`.
const float* append_in_chunks(BatchSession& b, const int32_t* tokens, int64_t n, bool all_logits, int64_t& n_past,
                              std::vector<float>& logits);

}  // namespace r1
