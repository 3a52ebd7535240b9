// Per-architecture pieces: reading Hugging Face config.json, and RoPE frequencies. The forward
// pass itself is shared (models/transformer.cpp); these files hold only what differs.
#pragma once
#include <nlohmann/json.hpp>

#include "core/config.h"

namespace r1::models {

// Fields both families spell the same way (sizes, eps, rope base in either spelling).
void read_common_hf(const nlohmann::json& hf, Config& c);

Config qwen2_from_hf(const nlohmann::json& hf);
Config llama_from_hf(const nlohmann::json& hf);
Config qwen3_from_hf(const nlohmann::json& hf);
// llama3 scaling of inverse frequencies (transformers' _compute_llama3_parameters).
void llama3_scale_inv_freq(const RopeScaling& s, std::vector<float>& inv_freq);

}  // namespace r1::models
