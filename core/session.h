// One sequence being run by some backend (CPU now, CUDA later): it owns a KV cache and turns
// tokens into logits. Generation, chat, batch and score talk to this interface only.
#pragma once
#include <cstdint>

namespace r1 {

class Session {
 public:
  virtual ~Session() = default;
  virtual int64_t ctx() const = 0;     // positions the cache holds
  virtual int64_t n_past() const = 0;  // positions filled
  virtual int64_t vocab() const = 0;   // logits per position
  virtual void truncate(int64_t n) = 0;
  // Appends n tokens; returns the last token's logits [vocab], or all rows [n, vocab].
  virtual const float* forward(const int32_t* tokens, int64_t n, bool all_logits = false) = 0;
};

}  // namespace r1
