#include "core/loop_guard.h"

#include <algorithm>

namespace r1 {

LoopGuard::LoopGuard() {
  for (int p = 0; p <= kMaxSpan; p++) need_[size_t(p)] = std::max(kMinCopies * p, kMinTokens) - p;
  reset();
}

void LoopGuard::reset() {
  ring_.fill(-1);  // no token: never equal to one
  run_.fill(0);
  n_ = 0;
  span_ = 0;
}

bool LoopGuard::push(int32_t token) {
  const int base = int(n_ % kMaxSpan) + kMaxSpan;
  // One pass over every span length, without branches (it vectorizes); the rare hit is then
  // looked up.
  int hit = 0;
  for (int p = 1; p <= kMaxSpan; p++) {
    const int32_t r = ring_[size_t(base - p)] == token ? run_[size_t(p)] + 1 : 0;
    run_[size_t(p)] = r;
    hit |= r >= need_[size_t(p)];
  }
  ring_[size_t(base - kMaxSpan)] = ring_[size_t(base)] = token;
  n_++;
  if (!hit) return false;
  for (int p = 1; p <= kMaxSpan; p++)
    if (run_[size_t(p)] >= need_[size_t(p)]) {
      span_ = p;
      break;
    }
  return true;
}

}  // namespace r1
