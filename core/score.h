// Scoring text under a model, the two measurements evaluation harnesses build on:
//  - the log-likelihood of a continuation given a context (lm-eval-harness' `loglikelihood`),
//  - perplexity over a long text in fixed windows, and the KL divergence of a model from a base
//    model on the same windows (llama-perplexity's measure of quantization quality).
// Log-probabilities are computed and summed in double; logits are never held beyond one chunk.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/session.h"

namespace r1 {

class ThreadPool;

// ln p(token) under softmax(logits), in double, and whether token is the argmax (the first
// index of the largest logit, as greedy decoding picks it).
struct TokenLogProb {
  double logprob = 0;
  bool top = false;
};
TokenLogProb token_log_prob(const float* logits, int64_t vocab, int32_t token);

struct ContinuationScore {
  double loglik = 0;             // sum of ln p(continuation token | everything before it)
  std::vector<double> logprobs;  // per continuation token
  bool greedy = true;            // every continuation token was the argmax
};

// Scores `continuation` after `context`, reusing the session's cache for the prefix shared with
// the previous call (several completions of one prompt cost one prompt). The context must not
// be empty: its last token's logits predict the first continuation token.
class ContinuationScorer {
 public:
  explicit ContinuationScorer(Session& s) : s_(s) {}
  ContinuationScore score(const std::vector<int32_t>& context, const std::vector<int32_t>& continuation);

 private:
  Session& s_;
  std::vector<int32_t> fed_;  // the tokens now in the session's cache, in order
};

// One-shot form: starts from an empty cache.
ContinuationScore score_tokens(Session& s, const std::vector<int32_t>& context,
                               const std::vector<int32_t>& continuation);

// ------------------------------------------------------------------------- text perplexity

// A window of the text: tokens [begin, begin + len); the tokens at window positions
// [first_target, len) are scored, each predicted from the window positions before it.
struct Window {
  int64_t begin = 0, len = 0, first_target = 1;
};

// stride 0: llama-perplexity's windows, non-overlapping, ctx tokens each (a shorter tail is
// dropped), the second half scored (positions ctx/2 + 1 .. ctx - 1). stride S (1 <= S < ctx):
// windows of ctx tokens every S tokens, the first scoring all it can and each later one its
// last S tokens, so every token but the first is scored exactly once.
std::vector<Window> plan_windows(int64_t n_tokens, int64_t ctx, int64_t stride);

// Sums over scored positions; the derived numbers come with standard errors of the mean.
struct TextStats {
  int64_t windows = 0, tokens = 0;
  double nll = 0, nll2 = 0;  // model: sum of -ln p(target) and of its square
  bool has_base = false;
  double base_nll = 0, base_nll2 = 0;
  double diff = 0, diff2 = 0;  // (model nll - base nll): gives the PPL ratio and its error
  double kl = 0, kl2 = 0;      // KL(base || model) per position
  double dp = 0, dp2 = 0;      // p_model(target) - p_base(target)
  int64_t same_top = 0;        // positions where both argmaxes agree
  bool interrupted = false;

  double ppl() const;
  double ppl_se() const;  // delta method: ppl * se(mean nll)
  double base_ppl() const;
  double base_ppl_se() const;
  double ppl_ratio() const;  // exp(mean(model nll - base nll)) = ppl / base_ppl
  double ppl_ratio_se() const;
  double kl_mean() const;
  double kl_se() const;
  double top1() const;  // fraction in [0, 1]
  double top1_se() const;
  double rms_dp() const;   // llama.cpp's "RMS Δp", as a fraction
  double mean_dp() const;  // mean of p_model(target) - p_base(target)
  void add(const TextStats& o);
};

struct TextEvalOptions {
  int64_t ctx = 512;
  int64_t stride = 0;
  int32_t bos = -1;                             // >= 0: the first token of every window becomes this
  ThreadPool* pool = nullptr;                   // for the per-position statistics (optional)
  const std::atomic<bool>* interrupt = nullptr;  // checked between chunks
  // After each window: the totals so far, windows done, windows planned.
  std::function<void(const TextStats&, int64_t, int64_t)> progress;
};

// Runs `model` (and `base`, if given, on the same windows) over the tokens. Both sessions must
// hold at least ctx positions and share the vocabulary.
TextStats evaluate_text(Session& model, Session* base, const std::vector<int32_t>& tokens,
                        const TextEvalOptions& o);

}  // namespace r1
