// The loop guard's definition, checked directly (for the tests; independent of core/loop_guard).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace r1::test {

// The thresholds the guard promises: a span of 1 to 256 tokens, at least 3 copies, at least 128
// tokens.
constexpr size_t kLoopSpan = 256, kLoopCopies = 3, kLoopTokens = 128;

// How many tokens of `ids` have been generated when they first end in a loop, by the definition:
// the latest T tokens each equal the one L before them (the first L of them excepted), with
// L <= kLoopSpan and T >= max(kLoopCopies L, kLoopTokens); -1 if never. Position by position.
inline int64_t first_loop(const std::vector<int32_t>& ids) {
  for (size_t e = 1; e <= ids.size(); e++)
    for (size_t L = 1; L <= kLoopSpan; L++) {
      const size_t T = std::max(kLoopCopies * L, kLoopTokens);
      if (e < T) continue;
      bool periodic = true;
      for (size_t i = e - T + L; i < e && periodic; i++) periodic = ids[i] == ids[i - L];
      if (periodic) return int64_t(e);
    }
  return -1;
}

}  // namespace r1::test
