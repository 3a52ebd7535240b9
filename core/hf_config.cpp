// Hugging Face config.json, both the published spelling and transformers 5's: the fields every
// architecture spells alike here, and the dispatch to the one file per architecture
// (core/arch_*.cpp) that fills in where it differs.
#include <cmath>

#include "core/arch.h"
#include "core/config.h"
#include "core/error.h"

namespace r1 {

namespace hf {

static int64_t get_int(const nlohmann::json& j, const char* key, int64_t dflt = -1) {
  if (!j.contains(key) || j[key].is_null()) {
    if (dflt < 0) fail_input(std::string("config.json: missing ") + key);
    return dflt;
  }
  if (!j[key].is_number_integer()) fail_input(std::string("config.json: ") + key + " is not an integer");
  return j[key].get<int64_t>();
}

void read_common_hf(const nlohmann::json& hf, Config& c) {
  c.vocab_size = get_int(hf, "vocab_size");
  c.hidden = get_int(hf, "hidden_size");
  c.intermediate = get_int(hf, "intermediate_size");
  c.n_layers = get_int(hf, "num_hidden_layers");
  c.n_heads = get_int(hf, "num_attention_heads");
  c.n_kv_heads = get_int(hf, "num_key_value_heads", c.n_heads);
  // Without head_dim, the heads split the hidden size: say so when they cannot, rather than
  // report whatever the truncated quotient then fails.
  if (c.n_heads > 0 && c.hidden > 0 && (!hf.contains("head_dim") || hf["head_dim"].is_null()) && c.hidden % c.n_heads != 0)
    fail_input("config.json: hidden_size " + std::to_string(c.hidden) + " is not a multiple of num_attention_heads " +
               std::to_string(c.n_heads) + " (and there is no head_dim)");
  c.head_dim = c.n_heads > 0 ? get_int(hf, "head_dim", c.hidden / c.n_heads) : 0;
  c.max_pos = get_int(hf, "max_position_embeddings", 4096);
  c.norm_eps = narrow_float(hf.value("rms_norm_eps", 1e-6));
  c.tied_embeddings = hf.value("tie_word_embeddings", false);
  if (hf.value("use_sliding_window", false))
    fail_input("config.json: sliding-window attention is not supported");

  // RoPE: transformers 5 nests everything in rope_parameters; published configs use
  // rope_theta + rope_scaling.
  const nlohmann::json* rp = nullptr;
  if (hf.contains("rope_parameters") && hf["rope_parameters"].is_object()) rp = &hf["rope_parameters"];
  double theta = hf.value("rope_theta", 10000.0);
  if (rp && rp->contains("rope_theta")) theta = (*rp)["rope_theta"].get<double>();
  c.rope_theta = theta;
  const nlohmann::json* rs = nullptr;
  if (hf.contains("rope_scaling") && hf["rope_scaling"].is_object()) rs = &hf["rope_scaling"];
  else if (rp) rs = rp;
  if (rs) {
    std::string type = rs->value("rope_type", rs->value("type", std::string("default")));
    if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = rs->value("factor", 8.0);
      c.rope_scaling.low_freq_factor = rs->value("low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = rs->value("high_freq_factor", 4.0);
      c.rope_scaling.original_max_pos = get_int(*rs, "original_max_position_embeddings", 8192);
    } else if (type != "default") {
      fail_input("config.json: unsupported rope_type '" + type + "'");
    }
  }

  if (hf.contains("bos_token_id") && hf["bos_token_id"].is_number_integer()) c.bos_id = token_id_of(hf["bos_token_id"], "config.json");
  if (hf.contains("eos_token_id")) {
    const auto& e = hf["eos_token_id"];
    if (e.is_number_integer()) c.eos_ids.push_back(token_id_of(e, "config.json"));
    else if (e.is_array())
      for (auto& x : e)
        if (x.is_number_integer()) c.eos_ids.push_back(token_id_of(x, "config.json"));
  }
}

}  // namespace hf

Config config_from_hf(const nlohmann::json& hf) {
  try {
    if (!hf.is_object()) fail_input("config.json is not a JSON object");
    std::string arch;
    if (hf.contains("architectures") && hf["architectures"].is_array() && !hf["architectures"].empty())
      arch = hf["architectures"][0].get<std::string>();
    std::string mt = hf.value("model_type", std::string());
    Config c;
    if (arch == "Qwen2ForCausalLM" || (arch.empty() && mt == "qwen2")) c = hf::qwen2_from_hf(hf);
    else if (arch == "LlamaForCausalLM" || (arch.empty() && mt == "llama")) c = hf::llama_from_hf(hf);
    else if (arch == "Qwen3ForCausalLM" || (arch.empty() && mt == "qwen3")) c = hf::qwen3_from_hf(hf);
    else fail_input("config.json: unknown architecture '" + (arch.empty() ? mt : arch) +
                    "' (r1 runs Qwen2ForCausalLM, LlamaForCausalLM and Qwen3ForCausalLM)");
    validate_config(c);
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail_input(std::string("config.json: ") + e.what());
  }
}

}  // namespace r1
