#include "core/score.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/threadpool.h"

namespace r1 {

namespace {

// Rows of logits asked for per forward call: bounds memory at kChunk x vocab floats per model
// whatever the window, and matches the CPU session's own prefill chunk.
constexpr int64_t kChunk = 64;

struct RowStats {
  float max;
  int64_t argmax;
  double log_z;  // ln sum exp(logit), so ln p(i) = logit[i] - log_z
};

RowStats row_stats(const float* x, int64_t n) {
  int64_t b = 0;
  for (int64_t i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  const double m = x[b];
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += std::exp(double(x[i]) - m);
  return {x[b], b, m + std::log(s)};
}

void check_token(int32_t t, int64_t vocab) {
  if (t < 0 || t >= vocab)
    fail_input("token id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
}

double mean_of(double s, int64_t n) { return n > 0 ? s / double(n) : 0.0; }

// Standard error of the mean from a sum and a sum of squares.
double se_of(double s, double s2, int64_t n) {
  if (n < 2) return 0.0;
  const double m = s / double(n);
  const double var = std::max(0.0, s2 / double(n) - m * m);
  return std::sqrt(var / double(n - 1));
}

// One scored position: what the model (and the base, if any) says about the target.
struct PositionResult {
  double nll = 0, base_nll = 0, kl = 0, dp = 0;
  bool same_top = false;
};

PositionResult score_position(const float* q, const float* p, int64_t vocab, int32_t target) {
  PositionResult r;
  const RowStats sq = row_stats(q, vocab);
  const double lq_t = double(q[target]) - sq.log_z;
  r.nll = -lq_t;
  if (!p) return r;
  const RowStats sp = row_stats(p, vocab);
  const double lp_t = double(p[target]) - sp.log_z;
  r.base_nll = -lp_t;
  // KL(base || model) = sum_i p_i (ln p_i - ln q_i); identical rows give exactly 0.
  double kl = 0;
  for (int64_t i = 0; i < vocab; i++) {
    const double lp = double(p[i]) - sp.log_z, lq = double(q[i]) - sq.log_z;
    kl += std::exp(lp) * (lp - lq);
  }
  r.kl = kl;
  r.dp = std::exp(lq_t) - std::exp(lp_t);
  r.same_top = sq.argmax == sp.argmax;
  return r;
}

}  // namespace

TokenLogProb token_log_prob(const float* logits, int64_t vocab, int32_t token) {
  check_token(token, vocab);
  const RowStats s = row_stats(logits, vocab);
  return {double(logits[token]) - s.log_z, s.argmax == token};
}

// ----------------------------------------------------------------------- continuation scores

ContinuationScore ContinuationScorer::score(const std::vector<int32_t>& context,
                                            const std::vector<int32_t>& continuation) {
  if (context.empty()) fail_input("nothing to condition on: the context has no tokens");
  ContinuationScore out;
  if (continuation.empty()) return out;
  const int64_t V = s_.vocab();
  for (int32_t t : continuation) check_token(t, V);

  std::vector<int32_t> all(context);
  all.insert(all.end(), continuation.begin(), continuation.end());
  const int64_t feed = int64_t(all.size()) - 1;  // the last token's logits are not needed
  if (feed > s_.ctx())
    fail_input(std::to_string(all.size()) + " tokens do not fit in the context of " + std::to_string(s_.ctx()));

  // Keep the cached prefix shared with the previous call, but always re-run the context's last
  // token: its logits predict the first continuation token.
  const int64_t first_row = int64_t(context.size()) - 1;
  int64_t keep = 0;
  const int64_t lim = std::min({int64_t(fed_.size()), first_row, s_.n_past()});
  while (keep < lim && fed_[size_t(keep)] == all[size_t(keep)]) keep++;
  s_.truncate(keep);
  fed_.resize(size_t(keep));

  if (keep < first_row) {
    s_.forward(all.data() + keep, first_row - keep);
    fed_.insert(fed_.end(), all.begin() + keep, all.begin() + first_row);
  }
  out.logprobs.reserve(continuation.size());
  for (int64_t p = first_row; p < feed; p += kChunk) {
    const int64_t n = std::min(kChunk, feed - p);
    const float* logits = s_.forward(all.data() + p, n, /*all_logits=*/true);
    fed_.insert(fed_.end(), all.begin() + p, all.begin() + p + n);
    for (int64_t r = 0; r < n; r++) {
      TokenLogProb t = token_log_prob(logits + r * V, V, all[size_t(p + r + 1)]);
      out.logprobs.push_back(t.logprob);
      out.loglik += t.logprob;
      out.greedy = out.greedy && t.top;
    }
  }
  return out;
}

ContinuationScore score_tokens(Session& s, const std::vector<int32_t>& context, const std::vector<int32_t>& continuation) {
  s.truncate(0);
  ContinuationScorer sc(s);
  return sc.score(context, continuation);
}

// --------------------------------------------------------------------------- text windows

std::vector<Window> plan_windows(int64_t n, int64_t ctx, int64_t stride) {
  if (ctx < 4) fail_usage("--ctx must be at least 4 tokens for perplexity");
  std::vector<Window> w;
  if (stride == 0) {
    if (n < ctx)
      fail_input("the text has " + std::to_string(n) + " tokens, fewer than one window of " + std::to_string(ctx) +
                 "; use a smaller --ctx");
    for (int64_t k = 0; k < n / ctx; k++) w.push_back({k * ctx, ctx, ctx / 2 + 1});
    return w;
  }
  if (stride < 1 || stride >= ctx)
    fail_usage("--stride must be between 1 and --ctx - 1 (" + std::to_string(ctx - 1) + ")");
  if (n < 2) fail_input("the text has fewer than 2 tokens: nothing to score");
  int64_t prev_end = 0;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + ctx, n);
    w.push_back({begin, end - begin, std::max<int64_t>(prev_end - begin, 1)});
    prev_end = end;
    if (end == n) break;
  }
  return w;
}

double TextStats::ppl() const { return std::exp(mean_of(nll, tokens)); }
double TextStats::ppl_se() const { return ppl() * se_of(nll, nll2, tokens); }
double TextStats::base_ppl() const { return std::exp(mean_of(base_nll, tokens)); }
double TextStats::base_ppl_se() const { return base_ppl() * se_of(base_nll, base_nll2, tokens); }
double TextStats::ppl_ratio() const { return std::exp(mean_of(diff, tokens)); }
double TextStats::ppl_ratio_se() const { return ppl_ratio() * se_of(diff, diff2, tokens); }
double TextStats::kl_mean() const { return mean_of(kl, tokens); }
double TextStats::kl_se() const { return se_of(kl, kl2, tokens); }
double TextStats::top1() const { return mean_of(double(same_top), tokens); }
double TextStats::top1_se() const {
  const double p = top1();
  return tokens > 1 ? std::sqrt(p * (1 - p) / double(tokens - 1)) : 0.0;
}
double TextStats::rms_dp() const { return std::sqrt(mean_of(dp2, tokens)); }
double TextStats::mean_dp() const { return mean_of(dp, tokens); }

void TextStats::add(const TextStats& o) {
  windows += o.windows;
  tokens += o.tokens;
  nll += o.nll, nll2 += o.nll2;
  base_nll += o.base_nll, base_nll2 += o.base_nll2;
  diff += o.diff, diff2 += o.diff2;
  kl += o.kl, kl2 += o.kl2;
  dp += o.dp, dp2 += o.dp2;
  same_top += o.same_top;
  has_base = has_base || o.has_base;
  interrupted = interrupted || o.interrupted;
}

TextStats evaluate_text(Session& model, Session* base, const std::vector<int32_t>& tokens, const TextEvalOptions& o) {
  const int64_t V = model.vocab();
  if (base && base->vocab() != V)
    fail_input("the two models have different vocabularies (" + std::to_string(V) + " and " +
               std::to_string(base->vocab()) + " tokens)");
  for (int32_t t : tokens) check_token(t, V);
  if (o.bos >= 0) check_token(o.bos, V);
  const std::vector<Window> wins = plan_windows(int64_t(tokens.size()), o.ctx, o.stride);
  for (Session* s : {&model, base})
    if (s && s->ctx() < o.ctx)
      fail_input("internal: a session of " + std::to_string(s->ctx()) + " positions for windows of " + std::to_string(o.ctx));

  TextStats total;
  total.has_base = base != nullptr;
  std::vector<int32_t> w;
  std::vector<PositionResult> rows(static_cast<size_t>(kChunk));
  for (size_t wi = 0; wi < wins.size(); wi++) {
    const Window& win = wins[wi];
    w.assign(tokens.begin() + win.begin, tokens.begin() + win.begin + win.len);
    if (o.bos >= 0) w[0] = o.bos;
    const int64_t first_row = win.first_target - 1;  // logits at position j predict token j + 1
    for (Session* s : {&model, base}) {
      if (!s) continue;
      s->truncate(0);
      if (first_row > 0) s->forward(w.data(), first_row);
    }
    TextStats ws;
    ws.has_base = base != nullptr;
    for (int64_t p = first_row; p < win.len - 1; p += kChunk) {
      if (o.interrupt && o.interrupt->load()) {
        total.interrupted = true;  // a partial window is dropped: the totals stay whole windows
        return total;
      }
      const int64_t n = std::min(kChunk, win.len - 1 - p);
      // Each session keeps its own logits buffer, so both rows stay valid together.
      const float* q = model.forward(w.data() + p, n, /*all_logits=*/true);
      const float* pb = base ? base->forward(w.data() + p, n, /*all_logits=*/true) : nullptr;
      auto work = [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; r++)
          rows[size_t(r)] = score_position(q + r * V, pb ? pb + r * V : nullptr, V, w[size_t(p + r + 1)]);
      };
      if (o.pool) o.pool->parallel_for(n, work);
      else work(0, n, 0);
      // Summed in order, so the result does not depend on the thread count.
      for (int64_t r = 0; r < n; r++) {
        const PositionResult& x = rows[size_t(r)];
        ws.tokens++;
        ws.nll += x.nll, ws.nll2 += x.nll * x.nll;
        if (!base) continue;
        ws.base_nll += x.base_nll, ws.base_nll2 += x.base_nll * x.base_nll;
        const double d = x.nll - x.base_nll;
        ws.diff += d, ws.diff2 += d * d;
        ws.kl += x.kl, ws.kl2 += x.kl * x.kl;
        ws.dp += x.dp, ws.dp2 += x.dp * x.dp;
        ws.same_top += x.same_top;
      }
    }
    ws.windows = 1;
    total.add(ws);
    if (o.progress) o.progress(total, int64_t(wi) + 1, int64_t(wins.size()));
  }
  return total;
}

}  // namespace r1
