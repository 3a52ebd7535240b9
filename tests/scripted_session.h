// A session that returns scripted logits, for the generation loop without a model: the i-th
// forward pass (the prompt's is the 0th) favours script[i] (token 0 past the end).
#pragma once
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/session.h"

namespace r1::test {

class ScriptedSession : public Session {
 public:
  ScriptedSession(std::vector<int32_t> script, int64_t vocab, int64_t ctx) : script_(std::move(script)), vocab_(vocab), ctx_(ctx) {
    logits_.resize(size_t(vocab));
  }
  int64_t ctx() const override { return ctx_; }
  int64_t n_past() const override { return n_; }
  int64_t vocab() const override { return vocab_; }
  void truncate(int64_t n) override { n_ = n; }
  const float* forward(const int32_t*, int64_t n, bool) override {
    if (n_ + n > ctx_) fail_input("context full");
    n_ += n;
    std::fill(logits_.begin(), logits_.end(), 0.0f);
    size_t step = size_t(calls_++);
    logits_[size_t(step < script_.size() ? script_[step] : 0)] = 100;
    return logits_.data();
  }
  int calls_ = 0;

 private:
  std::vector<int32_t> script_;
  int64_t vocab_, ctx_, n_ = 0;
  std::vector<float> logits_;
};

}  // namespace r1::test
