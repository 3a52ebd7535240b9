// Jobs for the tests of the token loop on the backend (BatchSession::forward_pick): greedy,
// sampled, top-k + min-p, a think budget (r1's own tokens between draws) and a repetition penalty
// (left to the scheduler's sampler), with prompts of one to two chunks so that prompt and decode
// rows share passes. Run through the batch scheduler on any backend.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/batch_sched.h"

namespace r1test {

struct PickJob {
  float temp, penalty;
  int top_k, budget;
  std::string prompt;
};

inline const std::vector<PickJob>& pick_jobs() {
  static const std::string longer(300, 'x');
  static const std::vector<PickJob> jobs = {
      {0, 1, 0, -1, "def f(a):\n"},          {0.8f, 1, 0, -1, "import os\n" + longer},
      {1.0f, 1, 20, -1, "class A:\n"},       {0.7f, 1, 0, 6, "for i in range(3):\n"},
      {0.8f, 1.3f, 0, -1, "x = [1, 2"},      {0.6f, 1, 0, -1, "# sort a list\n" + longer}};
  return jobs;
}

// Every job, max_new tokens each (no stop token, no loop guard): results by job index.
inline std::map<size_t, r1::GenResult> run_pick_jobs(r1::BatchSession& s, const r1::Tokenizer& tok, int64_t max_new) {
  std::map<size_t, r1::GenResult> out;
  size_t at = 0;
  auto next = [&](r1::BatchJob& j) {
    if (at == pick_jobs().size()) return false;
    const PickJob& J = pick_jobs()[at];
    j.tag = at++;
    j.prompt = tok.encode(J.prompt);
    j.opt.sampling.temperature = J.temp, j.opt.sampling.repetition_penalty = J.penalty;
    j.opt.sampling.top_k = J.top_k, j.opt.sampling.min_p = J.top_k > 0 ? 0.05f : 0.0f;
    j.opt.sampling.seed = 11 + j.tag;
    j.opt.max_new = max_new;
    j.opt.on_loop = r1::OnLoop::Off;
    j.opt.starts_in_think = J.budget >= 0;
    j.opt.think_budget = J.budget;
    return true;
  };
  r1::run_batched(s, tok, next, [&](const r1::BatchJob& j, r1::GenResult& r) { out[j.tag] = r; });
  return out;
}

// The tokens of a job's max_new the backend picks: all but the first (from the prompt's logits)
// and r1's own closing of the reasoning; none under a penalty.
inline int64_t picked_tokens(const PickJob& J, const r1::Tokenizer& tok, int64_t max_new) {
  if (J.penalty != 1) return 0;
  const r1::GenOptions o;
  const int64_t own = J.budget >= 0 ? int64_t(tok.encode("\n\n" + o.think_budget_message + "\n").size()) + 1 : 0;
  return max_new - 1 - own;
}

}  // namespace r1test
