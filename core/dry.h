// DRY ("Don't Repeat Yourself", by p-e-w), as llama.cpp defines it: a token that would extend a
// repeat of earlier text loses multiplier * base^(n - allowed_length) from its logit, where n is
// the length of the longest repeat it would extend and n >= allowed_length. Repeats are looked
// for within the last penalty_last_n tokens (prompt included) and reach back no further than the
// latest sequence breaker. Off by default (multiplier 0).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace r1 {

class Tokenizer;

struct DryParams {
  float multiplier = 0.0f;     // 0: off
  float base = 1.75f;          // >= 1
  int allowed_length = 2;      // repeats this long go unpunished; one token more costs `multiplier`
  int64_t penalty_last_n = -1;  // tokens looked at: -1 all, 0 off
  std::vector<std::string> breakers = {"\n", ":", "\"", "*"};
  bool on() const { return multiplier != 0.0f && penalty_last_n != 0; }
};

// The sequence breakers against a vocabulary, as llama.cpp processes the strings: a token whose
// text contains a breaker breaks a repeat by itself (and is never penalized); a token whose text
// ends with the start of a breaker breaks one when the tokens of the breaker's rest follow it.
class DryBreakers {
 public:
  static constexpr size_t kMaxChars = 40;  // longest breaker string
  static constexpr size_t kMaxTail = 20;   // tokens of a breaker's rest that are compared

  DryBreakers() = default;
  DryBreakers(const Tokenizer& tok, const std::vector<std::string>& breakers);
  // Already tokenized: each sequence is a head token and its tail (empty: breaks by itself).
  explicit DryBreakers(const std::vector<std::vector<int32_t>>& sequences);

  // The length of the longest breaker tail following a head at w[i] (w: n tokens), or -1.
  int64_t match(const int32_t* w, int64_t n, int64_t i) const;
  bool breaks_alone(int32_t token) const;

 private:
  void add(int32_t head, std::vector<int32_t> tail);
  std::unordered_multimap<int32_t, std::vector<int32_t>> seqs_;  // head -> tail
};

// Applies DRY to logits[vocab] after the tokens in history (the last one is the latest).
void apply_dry(float* logits, int64_t vocab, const DryParams& p, const DryBreakers& breakers,
               const std::vector<int32_t>& history);

}  // namespace r1
