// The loop guard: notices when generated text has fallen into a loop, the same span of tokens
// repeated back to back (the R1 distills do this inside <think> until the token cap). It fires
// when the latest T tokens each equal the token L before them (the first L excepted), with
// 1 <= L <= kMaxSpan and T >= max(kMinCopies L, kMinTokens): at least kMinCopies whole copies
// of a span of L tokens, and kMinTokens tokens in all.
//
// The thresholds are set against natural text: over the held-out Python
// (tests/fixtures/heldout.py.txt, 57,770 tokens of tiny-qwen2-py's tokenizer) the longest
// repeat is an 80-digit literal (Qwen splits digits: 79 tokens of span 1), spans of 2 to 42
// tokens cover at most 79 tokens, and no span of 43 to 256 tokens repeats 2 whole times.
#pragma once
#include <array>
#include <cstdint>

namespace r1 {

class LoopGuard {
 public:
  static constexpr int kMaxSpan = 256, kMinCopies = 3, kMinTokens = 128;

  LoopGuard();
  void reset();
  // Adds the next token; true when the tokens since the last reset end in a loop.
  bool push(int32_t token);
  // The span length of the loop push() found (the shortest), 0 before.
  int span() const { return span_; }

 private:
  // The last kMaxSpan tokens, each written twice (at i and i + kMaxSpan, i = position mod
  // kMaxSpan), so that the ones before a position lie back to back: t[n - p] = ring_[base - p].
  std::array<int32_t, 2 * kMaxSpan> ring_;
  // run_[p]: how many of the latest tokens each equal the token p before them; the tokens
  // then end in run_[p] + p tokens of period p. need_[p]: the run at which that is a loop.
  std::array<int32_t, kMaxSpan + 1> run_, need_;
  int64_t n_ = 0;
  int span_ = 0;
};

}  // namespace r1
