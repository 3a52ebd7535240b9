// Everything a command needs to run a packed model: the weights, tokenizer, chat template,
// generation defaults and stop tokens, loaded from one .r1m file.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "core/chat_template.h"
#include "quant/kv_format.h"
#include "core/sampler.h"
#include "core/tokenizer.h"
#include "models/model.h"

namespace r1 {

struct Runtime {
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tok;
  SamplerParams defaults;          // from the file's generation config, else R1's 0.6 / 0.95
  std::vector<int32_t> stop_ids;
  double load_s = 0;

  static Runtime load(const std::string& path);
  // The chat template (forced: "" to detect, or r1/chatml/llama3/raw); fails clearly for an
  // unknown one.
  ChatTemplate chat_template(const std::string& forced = "") const;
};

// Context length to use: `requested` if > 0 (checked against the model, and refused if its KV
// cache alone exceeds the available memory), else the model's maximum capped at 32768 and at what
// a quarter of the available memory holds for the KV cache. kv_in_ram false: the cache lives on
// a GPU, which checks a requested context against its own memory.
int64_t choose_ctx(const Config& c, int64_t requested, KvFormat kv, bool kv_in_ram = true);

// Bytes of memory available (MemAvailable), or 0 if unknown.
uint64_t available_memory();

}  // namespace r1
