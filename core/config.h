// One small config struct covers both families; flags say where they differ.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace r1 {

enum class Arch { Qwen2, Llama, Qwen3 };

struct RopeScaling {  // llama3 frequency scaling; type "" = none
  std::string type;
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_max_pos = 8192;
};

struct Config {
  Arch arch = Arch::Qwen2;
  int64_t vocab_size = 0, hidden = 0, intermediate = 0, n_layers = 0;
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0, max_pos = 0;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  float norm_eps = 1e-6f;
  bool qkv_bias = false;   // Qwen2
  bool qk_norm = false;    // Qwen3: RMSNorm over each head of q and k, before RoPE
  bool tied_embeddings = false;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;  // generation stops on any of these

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  const char* arch_name() const { return arch == Arch::Qwen2 ? "qwen2" : arch == Arch::Llama ? "llama" : "qwen3"; }
};

// The fewest positions a model may have: a chat template's prompt alone takes a dozen, so fewer
// would pack a model that no prompt fits.
inline constexpr int64_t kMinContext = 64;

// r1's own spelling, stored in the .r1m metadata.
nlohmann::json config_to_json(const Config& c);
Config config_from_json(const nlohmann::json& j);  // validates ranges; fail_input on nonsense
void validate_config(const Config& c);

// Hugging Face config.json (both the published spelling and transformers 5's), by architecture.
Config config_from_hf(const nlohmann::json& hf);

// RoPE inverse frequencies [head_dim / 2], with the config's scaling applied.
std::vector<float> rope_inv_freq(const Config& c);

}  // namespace r1
