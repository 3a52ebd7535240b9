// Per-architecture pieces: reading Hugging Face config.json (core/hf_config.cpp, one
// core/arch_*.cpp per family) and RoPE frequency scaling. The forward pass is shared
// (models/cpu_backend.cpp, models/cuda_batch.cpp), and the tensors are the schema's
// (core/schema.h); these files hold only what differs.
#pragma once
#include <nlohmann/json.hpp>

#include "core/config.h"

namespace r1 {

// A JSON float narrowed to float; out of range becomes inf, which validate_config refuses
// (a plain cast would be undefined behaviour).
float narrow_float(double v);
// A token id: a JSON integer that fits int32 (a plain get<int32_t> would wrap a huge value into
// a plausible id); fail_input naming `where` otherwise.
int32_t token_id_of(const nlohmann::json& v, const char* where = "model config");

namespace hf {

// Fields both families spell the same way (sizes, eps, rope base in either spelling).
void read_common_hf(const nlohmann::json& hf, Config& c);

Config qwen2_from_hf(const nlohmann::json& hf);
Config llama_from_hf(const nlohmann::json& hf);
Config qwen3_from_hf(const nlohmann::json& hf);
// llama3 scaling of inverse frequencies (transformers' _compute_llama3_parameters).
void llama3_scale_inv_freq(const RopeScaling& s, std::vector<float>& inv_freq);

}  // namespace hf
}  // namespace r1
