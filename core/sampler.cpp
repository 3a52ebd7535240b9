#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "core/sample_math.h"
#include "kernels/cpu/cpu.h"

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

double draw_uniform(uint64_t& state) { return double(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0); }

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

// idx[0, n), in ascending order on entry, ordered by probability, descending: a stable LSD
// radix sort on the probabilities' bits (they are >= 0, so their bits order as they do), ties
// staying in id order; bytes that are the same in every key skipped. For long ranges, where a
// comparison sort costs milliseconds.
static void radix_sort_by_prob(const float* prob, int32_t* idx, int64_t n, std::vector<uint64_t>& a,
                               std::vector<uint64_t>& b) {
  a.resize(size_t(n));
  b.resize(size_t(n));
  uint32_t all_or = 0, all_and = ~0u;
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits;
    std::memcpy(&bits, &prob[idx[i]], 4);
    a[size_t(i)] = uint64_t(~bits) << 32 | uint32_t(idx[i]);
    all_or |= ~bits, all_and &= ~bits;
  }
  for (int shift = 0; shift < 32; shift += 8) {
    if (((all_or ^ all_and) >> shift & 0xff) == 0) continue;  // this byte is the same in every key
    size_t count[257] = {};
    for (uint64_t k : a) count[(k >> (32 + shift) & 0xff) + 1]++;
    for (int d = 0; d < 256; d++) count[d + 1] += count[d];
    for (uint64_t k : a) b[count[k >> (32 + shift) & 0xff]++] = k;
    a.swap(b);
  }
  for (int64_t i = 0; i < n; i++) idx[i] = int32_t(uint32_t(a[size_t(i)]));
}

// idx_[sorted_, upto) become the next most likely tokens, in order (probability descending, the
// lower id first on ties), taken from idx_[sorted_, vocab): only as much as a filter looks at is sorted.
void Sampler::sort_to(int64_t upto) {
  upto = std::min(upto, vocab_);
  if (upto <= sorted_) return;
  if (upto - sorted_ > 16384) {  // most of the vocabulary (--top-p 1): sort all of it, afresh
    std::iota(idx_.begin(), idx_.end(), 0);
    radix_sort_by_prob(probs_.data(), idx_.data(), vocab_, keys_, keys_tmp_);
    sorted_ = vocab_;
    return;
  }
  auto by_prob = [&](int32_t a, int32_t b) { return probs_[size_t(a)] > probs_[size_t(b)] || (probs_[size_t(a)] == probs_[size_t(b)] && a < b); };
  std::partial_sort(idx_.begin() + sorted_, idx_.begin() + upto, idx_.end(), by_prob);
  sorted_ = upto;
}

// The filters run on the candidates in order of probability and every sum is taken in the order
// of core/sample_math.h, so that the GPU's sampler (kernels/cuda/sample.cu) gives the same bits.
void Sampler::filter(float* logits, const std::vector<int32_t>& history) {
  penalize(logits, history);
  // softmax numerators at temperature
  float mx = -INFINITY;
  for (int64_t i = 0; i < vocab_; i++) mx = std::max(mx, logits[i]);
  cpu::sample_exp_row(logits, vocab_, mx, p_.temperature, probs_.data());
  idx_.resize(size_t(vocab_));
  std::iota(idx_.begin(), idx_.end(), 0);
  sorted_ = 0;
  const float* pr = probs_.data();
  // the i-th most likely candidate's probability, sorting as far as asked (i grows in each pass)
  auto ranked = [&](int64_t i) {
    if (i >= sorted_) sort_to(std::max({i + 1, 4 * sorted_, int64_t(256)}));  // each sort scans the rest
    return pr[idx_[size_t(i)]];
  };
  int64_t keep = p_.top_k > 0 ? std::min<int64_t>(p_.top_k, vocab_) : vocab_;
  // top-p: the smallest prefix whose mass reaches top_p of the mass top-k kept
  if (p_.top_p < 1.0f) {
    const double mass = p_.top_k > 0 ? sum_in_blocks(keep, ranked) : sum_in_blocks(vocab_, [&](int64_t i) { return pr[i]; });
    auto block = [&](int64_t b) {
      const int64_t from = b * kSampleBlock;
      return block_sum(from, std::min(from + kSampleBlock, keep), ranked);
    };
    keep = first_crossing(keep, double(p_.top_p) * mass, true, ranked, block) + 1;
  }
  // min-p: drop tokens below min_p times the top probability (the kept ones are a prefix)
  if (p_.min_p > 0) {
    const float floor = p_.min_p * ranked(0);
    int64_t i = 1;
    while (i < keep && ranked(i) >= floor) i++;
    keep = i;
  }
  // renormalize over the kept set (the draw walks it in order); zero the rest
  sort_to(keep);
  const double ksum = sum_in_blocks(keep, ranked);
  kept_.resize(size_t(keep));
  for (int64_t i = 0; i < keep; i++) kept_[size_t(i)] = float(double(pr[idx_[size_t(i)]]) / ksum);
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
  return probs_;
}

int32_t Sampler::sample(float* logits, const std::vector<int32_t>& history) {
  return pick(logits, history, p_.temperature == 0 ? 0.0 : draw());
}

int32_t Sampler::pick(float* logits, const std::vector<int32_t>& history, double u) {
  if (p_.temperature == 0) {
    penalize(logits, history);
    return int32_t(std::max_element(logits, logits + vocab_) - logits);
  }
  filter(logits, history);
  // the first kept token whose running mass exceeds u
  const int64_t n = int64_t(kept_.size());
  auto at = [&](int64_t i) { return kept_[size_t(i)]; };
  auto block = [&](int64_t b) { return block_sum(b * kSampleBlock, std::min((b + 1) * kSampleBlock, n), at); };
  return idx_[size_t(first_crossing(n, u, false, at, block))];
}

}  // namespace r1
