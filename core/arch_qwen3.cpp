// Qwen3 (the decoder of Qwen2 without q/k/v biases, with an RMSNorm over each head of q and k
// before RoPE): the config flag qk_norm, and in the schema two [head_dim] norm weights per layer.
#include "core/error.h"
#include "core/arch.h"

namespace r1::hf {

Config qwen3_from_hf(const nlohmann::json& hf) {
  Config c;
  c.arch = Arch::Qwen3;
  read_common_hf(hf, c);
  c.qkv_bias = hf.value("attention_bias", false);
  c.qk_norm = true;
  return c;
}

}  // namespace r1::hf
