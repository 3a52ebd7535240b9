// Choosing the next token from logits: repetition penalty -> DRY -> greedy, or temperature ->
// top-k -> top-p -> min-p -> a draw (the order of transformers' logits processors, DRY where
// llama.cpp puts it). Deterministic for a given seed on every platform (own RNG, no std
// distributions).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dry.h"

namespace r1 {

struct SamplerParams {
  float temperature = 0.6f;  // 0: greedy
  float top_p = 0.95f;       // 1: off
  int top_k = 0;             // 0: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;  // 1: off
  DryParams dry;                    // off unless dry.multiplier > 0
  uint64_t seed = 0;
};

// A sampler's uniform draw in [0, 1): splitmix64 of state (advanced), its top 53 bits.
double draw_uniform(uint64_t& state);

// Throws r1::Error (Usage) naming the bad parameter.
void validate(const SamplerParams& p);

class Sampler {
 public:
  // dry: the processed sequence breakers of p.dry (needed only when DRY is on; kept by the caller).
  Sampler(const SamplerParams& p, int64_t vocab, const DryBreakers* dry = nullptr);
  // logits are modified in place. history: tokens so far (for the repetition penalty and DRY).
  int32_t sample(float* logits, const std::vector<int32_t>& history);
  // sample() with the uniform draw u given (greedy ignores it): sample() is pick(..., draw())
  // where the temperature is above 0. The GPU's sampler picks as this does for the same u.
  int32_t pick(float* logits, const std::vector<int32_t>& history, double u);
  // The next uniform draw of this sampler's generator (advances it): one per sampled token.
  double draw() { return draw_uniform(state_); }
  // The distribution the draw uses (after all filters), for tests: probabilities over the vocab.
  std::vector<float> distribution(const float* logits, const std::vector<int32_t>& history);
  const SamplerParams& params() const { return p_; }
  void reseed(uint64_t seed);

 private:
  void penalize(float* logits, const std::vector<int32_t>& history) const;  // repetition penalty, DRY
  // -> probabilities in probs_; idx_: the kept tokens, most likely first; kept_: their probabilities
  void filter(float* logits, const std::vector<int32_t>& history);
  void sort_to(int64_t upto);
  SamplerParams p_;
  const DryBreakers* dry_;
  int64_t vocab_;
  uint64_t state_;
  std::vector<float> probs_, kept_;
  std::vector<int32_t> idx_;
  int64_t sorted_ = 0;                      // idx_[0, sorted_) is in order
  std::vector<uint64_t> keys_, keys_tmp_;  // the radix sort's
};

}  // namespace r1
