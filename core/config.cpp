#include "core/config.h"

#include <cmath>

#include "core/arch.h"
#include "core/error.h"

namespace r1 {

float narrow_float(double v) { return std::fabs(v) < 3e38 ? float(v) : INFINITY; }

int32_t token_id_of(const nlohmann::json& v, const char* where) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT32_MAX)) ||
      v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
    fail_input(std::string(where) + ": token id out of range");
  return int32_t(v.get<int64_t>());
}


void validate_config(const Config& c) {
  auto bad = [](const std::string& w) { fail_input("model config: " + w); };
  auto in = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
  if (!in(c.vocab_size, 1, 1 << 22)) bad("vocab_size out of range");
  if (!in(c.hidden, 1, 1 << 16)) bad("hidden_size out of range");
  if (!in(c.intermediate, 1, 1 << 18)) bad("intermediate_size out of range");
  if (!in(c.n_layers, 1, 1024)) bad("num_hidden_layers out of range");
  if (!in(c.n_heads, 1, 1024) || !in(c.n_kv_heads, 1, c.n_heads) || c.n_heads % c.n_kv_heads != 0)
    bad("attention heads inconsistent");
  if (!in(c.head_dim, 2, 1024) || c.head_dim % 2 != 0) bad("head_dim must be even and at most 1024");
  if (!in(c.max_pos, kMinContext, 1 << 24))
    bad("max_position_embeddings " + std::to_string(c.max_pos) + " is out of range (" + std::to_string(kMinContext) +
        " to " + std::to_string(1 << 24) + "): fewer positions cannot hold a chat prompt and its answer");
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) bad("rope_theta must be positive");
  if (!(c.norm_eps > 0) || !(c.norm_eps < 1)) bad("rms_norm_eps out of range");
  if (c.rope_scaling.type == "llama3" &&
      (!(c.rope_scaling.factor >= 1) || !(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor) ||
       !(c.rope_scaling.low_freq_factor > 0) || c.rope_scaling.original_max_pos < 1))
    bad("llama3 rope scaling parameters out of range");
  if (c.bos_id >= c.vocab_size) bad("bos token id out of range");
  for (auto e : c.eos_ids)
    if (e < 0 || e >= c.vocab_size) bad("eos token id out of range");
}

nlohmann::json config_to_json(const Config& c) {
  nlohmann::json j = {
      {"arch", c.arch_name()},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden},
      {"intermediate_size", c.intermediate},
      {"num_layers", c.n_layers},
      {"num_heads", c.n_heads},
      {"num_kv_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_pos},
      {"rope_theta", c.rope_theta},
      {"rms_norm_eps", c.norm_eps},
      {"qkv_bias", c.qkv_bias},
      {"tie_word_embeddings", c.tied_embeddings},
      {"bos_token_id", c.bos_id},
      {"eos_token_ids", c.eos_ids},
  };
  if (c.qk_norm) j["qk_norm"] = true;  // absent in files of the families without it
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {{"type", c.rope_scaling.type},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_pos}};
  }
  return j;
}

// Integers must be JSON integers in range: nlohmann converts a float to an integer with a
// plain cast, which is undefined behaviour when it does not fit.
static int64_t int_at(const nlohmann::json& j, const char* key) {
  const auto& v = j.at(key);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    fail_input(std::string("model config: ") + key + " is not an integer");
  return v.get<int64_t>();
}

Config config_from_json(const nlohmann::json& j) {
  try {
    Config c;
    std::string arch = j.at("arch").get<std::string>();
    if (arch == "qwen2") c.arch = Arch::Qwen2;
    else if (arch == "llama") c.arch = Arch::Llama;
    else if (arch == "qwen3") c.arch = Arch::Qwen3;
    else fail_input("model config: unknown arch '" + arch + "'");
    c.vocab_size = int_at(j, "vocab_size");
    c.hidden = int_at(j, "hidden_size");
    c.intermediate = int_at(j, "intermediate_size");
    c.n_layers = int_at(j, "num_layers");
    c.n_heads = int_at(j, "num_heads");
    c.n_kv_heads = int_at(j, "num_kv_heads");
    c.head_dim = int_at(j, "head_dim");
    c.max_pos = int_at(j, "max_position_embeddings");
    c.rope_theta = j.at("rope_theta").get<double>();
    c.norm_eps = narrow_float(j.at("rms_norm_eps").get<double>());
    c.qkv_bias = j.at("qkv_bias").get<bool>();
    c.qk_norm = j.contains("qk_norm") && j.at("qk_norm").get<bool>();
    c.tied_embeddings = j.at("tie_word_embeddings").get<bool>();
    c.bos_id = token_id_of(j.at("bos_token_id"));
    if (!j.at("eos_token_ids").is_array()) fail_input("model config: eos_token_ids is not a list");
    for (const auto& e : j.at("eos_token_ids")) c.eos_ids.push_back(token_id_of(e));
    const auto& rs = j.at("rope_scaling");
    if (!rs.is_null()) {
      c.rope_scaling.type = rs.at("type").get<std::string>();
      if (c.rope_scaling.type != "llama3") fail_input("model config: unknown rope scaling");
      c.rope_scaling.factor = rs.at("factor").get<double>();
      c.rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<double>();
      c.rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<double>();
      c.rope_scaling.original_max_pos = int_at(rs, "original_max_position_embeddings");
    }
    validate_config(c);
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail_input(std::string("model config: ") + e.what());
  }
}

std::vector<float> rope_inv_freq(const Config& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  // float32 like transformers: theta ** (2j / hd)
  for (int64_t j = 0; j < half; j++)
    f[size_t(j)] = float(1.0 / std::pow(c.rope_theta, double(float(2 * j) / float(c.head_dim))));
  if (c.rope_scaling.type == "llama3") hf::llama3_scale_inv_freq(c.rope_scaling, f);
  return f;
}

}  // namespace r1
