// Models built in memory at the exact shapes of the real checkpoints, with random weights: for
// benchmarks on machines that cannot receive multi-gigabyte files. Speed does not depend on the
// weight values, only on shapes and formats, so these time exactly like packed models.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "models/model.h"
#include "quant/formats.h"

namespace r1 {

// Preset names: qwen-1.5b, qwen-7b, llama-8b, qwen-14b, qwen-32b, llama-70b, tiny.
const std::vector<std::string>& synthetic_presets();
// The config of a preset (REFERENCE.md §1 shapes, vocab, kv heads, bias, rope); fail_usage if unknown.
Config synthetic_config(const std::string& preset);

// A Model whose views point into one buffer it owns (Model::owned). Matrices use the format
// `r1 pack --quant quant` would choose for each tensor (quant/pack.h recipe_format), filled with
// random codes and plausible scales (weights of std ~0.02, like trained ones), norms 1 and small
// biases, so activations stay finite through every layer. Filled on all cores, every page
// touched (RSS is the model's size). Deterministic for a seed. No tokenizer.
std::unique_ptr<Model> make_synthetic_model(const Config& c, Format quant, uint64_t seed = 1);

}  // namespace r1
