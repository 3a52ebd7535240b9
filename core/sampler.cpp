#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace r1 {

void validate(const SamplerParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > 100)
    fail_usage("--temp must be a number in [0, 100]");
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1) fail_usage("--top-p must be in (0, 1]");
  if (p.top_k < 0) fail_usage("--top-k must be >= 0");
  if (!std::isfinite(p.min_p) || p.min_p < 0 || p.min_p > 1) fail_usage("--min-p must be in [0, 1]");
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0 || p.repetition_penalty > 100)
    fail_usage("--repeat-penalty must be in (0, 100]");
  const DryParams& d = p.dry;
  if (!std::isfinite(d.multiplier) || d.multiplier < 0 || d.multiplier > 1e6) fail_usage("--dry-multiplier must be in [0, 1e6]");
  if (!std::isfinite(d.base) || d.base < 1 || d.base > 1e6) fail_usage("--dry-base must be in [1, 1e6]");
  if (d.allowed_length < 0) fail_usage("--dry-allowed-length must be >= 0");
  if (d.penalty_last_n < -1) fail_usage("--dry-penalty-last-n must be -1 (all), 0 (off) or a count");
  for (const std::string& b : d.breakers)
    if (b.empty() || b.size() > DryBreakers::kMaxChars)
      fail_usage("--dry-sequence-breaker must be 1 to " + std::to_string(DryBreakers::kMaxChars) + " bytes");
}

static uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Sampler::Sampler(const SamplerParams& p, int64_t vocab, const DryBreakers* dry)
    : p_(p), dry_(dry), vocab_(vocab), state_(p.seed) {
  if (p.dry.on() && !dry) fail_usage("internal: DRY without its sequence breakers");
  probs_.resize(size_t(vocab));
  idx_.resize(size_t(vocab));
}

void Sampler::reseed(uint64_t seed) { state_ = seed; }

double Sampler::uniform() { return double(splitmix64(state_) >> 11) * (1.0 / 9007199254740992.0); }

static void apply_penalty(float* logits, int64_t vocab, float penalty, const std::vector<int32_t>& history) {
  if (penalty != 1.0f) {
    // transformers: divide positive logits, multiply negative ones, once per distinct token
    std::vector<int32_t> seen(history);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen)
      if (t >= 0 && t < vocab) {
        float& l = logits[t];
        l = l > 0 ? l / penalty : l * penalty;
      }
  }
}

void Sampler::penalize(float* logits, const std::vector<int32_t>& history) const {
  apply_penalty(logits, vocab_, p_.repetition_penalty, history);
  if (p_.dry.on()) apply_dry(logits, vocab_, p_.dry, *dry_, history);
}

void Sampler::filter(float* logits, const std::vector<int32_t>& history) {
  penalize(logits, history);
  // softmax at temperature
  float mx = -INFINITY;
  for (int64_t i = 0; i < vocab_; i++) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab_; i++) {
    float e = std::exp((logits[i] - mx) / p_.temperature);
    probs_[size_t(i)] = e;
    sum += e;
  }
  // candidates by descending probability (only as many as needed are sorted)
  int64_t n = vocab_;
  std::iota(idx_.begin(), idx_.end(), 0);
  auto by_prob = [&](int32_t a, int32_t b) { return probs_[size_t(a)] > probs_[size_t(b)] || (probs_[size_t(a)] == probs_[size_t(b)] && a < b); };
  int64_t keep = p_.top_k > 0 ? std::min<int64_t>(p_.top_k, n) : n;
  // top-p needs the sorted prefix; sort lazily in growing blocks
  int64_t sorted = std::min<int64_t>(keep, 1024);
  std::partial_sort(idx_.begin(), idx_.begin() + sorted, idx_.begin() + (p_.top_k > 0 ? keep : n), by_prob);
  if (p_.top_k > 0 && sorted < keep) std::sort(idx_.begin() + sorted, idx_.begin() + keep, by_prob), sorted = keep;
  // top-p: smallest prefix whose mass reaches top_p (of the top-k-filtered mass)
  double kept_mass = 0;
  if (p_.top_k > 0) for (int64_t i = 0; i < keep; i++) kept_mass += probs_[size_t(idx_[size_t(i)])];
  else kept_mass = sum;
  if (p_.top_p < 1.0f) {
    double acc = 0;
    int64_t i = 0;
    for (;; i++) {
      if (i == sorted && sorted < keep) {
        int64_t more = std::min<int64_t>(keep, sorted * 4);
        std::partial_sort(idx_.begin() + sorted, idx_.begin() + more, idx_.begin() + keep, by_prob);
        sorted = more;
      }
      if (i >= keep) break;
      acc += probs_[size_t(idx_[size_t(i)])];
      if (acc >= p_.top_p * kept_mass) { i++; break; }
    }
    keep = std::max<int64_t>(1, std::min(i, keep));
  }
  // min-p: drop tokens below min_p times the top probability
  if (p_.min_p > 0) {
    const float top = probs_[size_t(idx_[0])];
    int64_t i = 1;
    while (i < keep && i < sorted && probs_[size_t(idx_[size_t(i)])] >= p_.min_p * top) i++;
    if (i < keep && i >= sorted) {  // unsorted tail: filter by value (order does not matter for the draw)
      int64_t w = i;
      for (int64_t j = i; j < keep; j++)
        if (probs_[size_t(idx_[size_t(j)])] >= p_.min_p * top) idx_[size_t(w++)] = idx_[size_t(j)];
      i = w;
    }
    keep = i;
  }
  // renormalize over the kept set; zero the rest
  double ksum = 0;
  for (int64_t i = 0; i < keep; i++) ksum += probs_[size_t(idx_[size_t(i)])];
  kept_.resize(size_t(keep));
  for (int64_t i = 0; i < keep; i++) kept_[size_t(i)] = float(probs_[size_t(idx_[size_t(i)])] / ksum);
  std::fill(probs_.begin(), probs_.end(), 0.0f);
  for (int64_t i = 0; i < keep; i++) probs_[size_t(idx_[size_t(i)])] = kept_[size_t(i)];
  idx_.resize(size_t(keep));
}

std::vector<float> Sampler::distribution(const float* logits, const std::vector<int32_t>& history) {
  std::vector<float> l(logits, logits + vocab_);
  if (p_.temperature == 0) {
    penalize(l.data(), history);
    std::vector<float> d(size_t(vocab_), 0.0f);
    d[size_t(std::max_element(l.begin(), l.end()) - l.begin())] = 1;
    return d;
  }
  filter(l.data(), history);
  idx_.resize(size_t(vocab_));
  return probs_;
}

int32_t Sampler::sample(float* logits, const std::vector<int32_t>& history) {
  if (p_.temperature == 0) {
    penalize(logits, history);
    return int32_t(std::max_element(logits, logits + vocab_) - logits);
  }
  filter(logits, history);
  double u = uniform(), acc = 0;
  int32_t pick = idx_.back();
  for (int32_t t : idx_) {
    acc += probs_[size_t(t)];
    if (u < acc) { pick = t; break; }
  }
  idx_.resize(size_t(vocab_));
  return pick;
}

}  // namespace r1
