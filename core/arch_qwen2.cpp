// Qwen2 (R1-Distill-Qwen 1.5B/7B/14B/32B): biases on q/k/v, plain RoPE.
#include "core/arch.h"

namespace r1::hf {

Config qwen2_from_hf(const nlohmann::json& hf) {
  Config c;
  c.arch = Arch::Qwen2;
  read_common_hf(hf, c);
  c.qkv_bias = true;
  return c;
}

}  // namespace r1::hf
