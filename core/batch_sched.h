// Continuous batching: up to slots() sequences advance together, one pass per step with one
// token of every decoding sequence, so the weights are read once for all of them. A finished
// sequence is reported at once and its slot takes the next job in the same step. New prompts
// are prefilled in the same passes, in the session's prefill chunks from position 0 (the boundaries a
// lone sequence uses), so each sequence's tokens are the ones it would get alone.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/generate.h"
#include "core/session.h"
#include "core/tokenizer.h"

namespace r1 {

struct BatchJob {
  size_t tag = 0;               // the caller's, handed back with the result
  std::vector<int32_t> prompt;  // non-empty, shorter than the session's ctx
  GenOptions opt;               // opt.interrupt is ignored: run_batched takes its own
};

struct BatchPlan {
  // Prompt rows per pass beyond the decode rows (at least one chunk runs when any is waiting):
  // bounds the scratch memory and keeps decoding sequences moving while others prefill.
  int64_t prefill_rows = 0;  // 0: two of the session's prefill chunks
  const std::atomic<bool>* interrupt = nullptr;
};

// Runs jobs from next_job (false: none left) until every one is done; on_done gets each as it
// finishes. Returns false when interrupted: the sequences still running then are dropped
// (not reported), so their jobs can run again later.
bool run_batched(BatchSession& s, const Tokenizer& tok, const std::function<bool(BatchJob&)>& next_job,
                 const std::function<void(const BatchJob&, GenResult&)>& on_done, const BatchPlan& plan = {});

}  // namespace r1
