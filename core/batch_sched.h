// Continuous batching: up to slots() sequences advance together, one pass per step with one
// token of every decoding sequence, so the weights are read once for all of them. A finished
// sequence is reported at once and its slot takes the next job in the same step. New prompts
// are prefilled in the same passes, in the session's prefill chunks from position 0 (the boundaries a
// lone sequence uses), so each sequence's tokens are the ones it would get alone. With prefix
// reuse (r1 serve) a job instead starts after the longest prefix a free slot still holds.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "core/generate.h"
#include "core/session.h"
#include "core/tokenizer.h"

namespace r1 {

struct BatchJob {
  size_t tag = 0;               // the caller's, handed back with the result
  std::vector<int32_t> prompt;  // non-empty, shorter than the session's ctx
  GenOptions opt;               // opt.interrupt is ignored: the plan's is used
  SeqDecoder::OnEvent on_event; // the streamed text (on the scheduler's thread); may be empty
  // Set by the caller (any thread) to drop the job: its slot is freed before the next pass and
  // nothing is reported.
  const std::atomic<bool>* cancel = nullptr;
};

struct BatchPlan {
  // Prompt rows per pass beyond the decode rows (at least one chunk runs when any is waiting):
  // bounds the scratch memory and keeps decoding sequences moving while others prefill.
  int64_t prefill_rows = 0;  // 0: two of the session's prefill chunks
  const std::atomic<bool>* interrupt = nullptr;
  // A new job goes to the free slot holding the longest prefix of its prompt and runs only the
  // rest (the chunk boundaries then differ from a lone run's).
  bool reuse_prefix = false;
};

class BatchScheduler {
 public:
  BatchScheduler(BatchSession& s, const Tokenizer& tok, BatchPlan plan = {});
  ~BatchScheduler();
  // Runs jobs from next_job (false: none now) until none is running and next_job has none; a
  // free slot asks next_job again before every pass. on_done gets each job as it finishes.
  // Returns false when interrupted: the sequences still running are dropped (not reported), so
  // their jobs can run again later. Slots keep their cached tokens between calls.
  bool run(const std::function<bool(BatchJob&)>& next_job, const std::function<void(const BatchJob&, GenResult&)>& on_done);

 private:
  struct Slot;
  void admit(BatchJob& job);  // into the free slot holding most of its prompt (or the first)
  BatchSession& s_;
  const Tokenizer& tok_;
  BatchPlan plan_;
  std::vector<Slot> slots_;
};

// One run over a fresh scheduler (r1 batch).
bool run_batched(BatchSession& s, const Tokenizer& tok, const std::function<bool(BatchJob&)>& next_job,
                 const std::function<void(const BatchJob&, GenResult&)>& on_done, const BatchPlan& plan = {});

}  // namespace r1
