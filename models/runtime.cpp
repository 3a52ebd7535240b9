#include "models/runtime.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/generate.h"
#include "core/kv_cache.h"
#include "core/tokenizer_load.h"

namespace r1 {

static TokenizerSource source_from_meta(const nlohmann::json& meta, const std::string& origin) {
  TokenizerSource src;
  src.origin = origin;
  if (!meta.contains("tokenizer") || !meta["tokenizer"].is_object()) fail_input(origin + ": no tokenizer in the file");
  const auto& t = meta["tokenizer"];
  if (t.contains("json") && t["json"].is_string()) {
    src.tokenizer_json = t["json"].get<std::string>();
  } else if (t.contains("sentencepiece_b64") && t["sentencepiece_b64"].is_string()) {
    const std::string& b = t["sentencepiece_b64"].get_ref<const std::string&>();
    auto val = [](char c) -> int {
      if (c >= 'A' && c <= 'Z') return c - 'A';
      if (c >= 'a' && c <= 'z') return c - 'a' + 26;
      if (c >= '0' && c <= '9') return c - '0' + 52;
      if (c == '+') return 62;
      if (c == '/') return 63;
      return -1;
    };
    uint32_t acc = 0;
    int bits = 0;
    for (char c : b) {
      if (c == '=') break;
      int v = val(c);
      if (v < 0) fail_input(origin + ": corrupt sentencepiece model in metadata");
      acc = (acc << 6) | uint32_t(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        src.sentencepiece_model += char((acc >> bits) & 0xff);
      }
    }
  } else {
    fail_input(origin + ": no tokenizer in the file");
  }
  src.tokenizer_config_json = meta.value("tokenizer_config", nlohmann::json::object()).dump();
  return src;
}

TokenizerSource load_tokenizer_source_r1m(const std::string& path) {
  auto f = R1File::open(path);
  return source_from_meta(f->meta(), path);
}

Runtime Runtime::load(const std::string& path) {
  auto t0 = std::chrono::steady_clock::now();
  Runtime rt;
  rt.model = Model::load(path);
  const auto& meta = rt.model->file->meta();
  rt.tok.emplace(Tokenizer::load(source_from_meta(meta, path)));
  // A tokenizer may name more tokens than the embedding has rows (reserved specials); the model
  // never produces them, and a prompt that uses one is refused by the forward pass.
  const auto& gen = meta.value("generation", nlohmann::json::object());
  // Values from the file are untrusted: a number out of any sane range falls back to the
  // default (converting it to float or int would be undefined behaviour).
  auto num = [&](const char* k, float d) {
    if (!gen.contains(k) || !gen[k].is_number()) return d;
    const double v = gen[k].get<double>();
    return std::fabs(v) <= 1e6 ? float(v) : d;
  };
  auto int_in = [](const nlohmann::json& v, int64_t lo, int64_t hi) {
    return v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)) &&
           v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  };
  rt.defaults.temperature = num("temperature", 0.6f);
  rt.defaults.top_p = num("top_p", 0.95f);
  rt.defaults.top_k = gen.contains("top_k") && int_in(gen["top_k"], 0, INT32_MAX) ? int(gen["top_k"].get<int64_t>()) : 0;
  rt.defaults.min_p = num("min_p", 0.0f);
  rt.defaults.repetition_penalty = num("repetition_penalty", 1.0f);
  if (gen.value("do_sample", true) == false) rt.defaults.temperature = 0;
  std::vector<int32_t> eos = rt.model->cfg.eos_ids;
  if (gen.contains("eos_token_id")) {
    const auto& e = gen["eos_token_id"];
    if (int_in(e, 0, INT32_MAX)) eos.push_back(int32_t(e.get<int64_t>()));
    if (e.is_array())
      for (auto& x : e)
        if (int_in(x, 0, INT32_MAX)) eos.push_back(int32_t(x.get<int64_t>()));
  }
  rt.stop_ids = default_stop_ids(eos, *rt.tok);
  rt.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rt;
}

ChatTemplate Runtime::chat_template(const std::string& forced) const {
  return ChatTemplate::from_config(model->file->meta().value("tokenizer_config", nlohmann::json::object()).dump(), forced);
}

uint64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

int64_t choose_ctx(const Config& c, int64_t requested, KvFormat kv, bool kv_in_ram) {
  const uint64_t avail = available_memory();
  if (requested > 0) {
    if (requested > c.max_pos)
      fail_usage("--ctx " + std::to_string(requested) + " is beyond the model's " + std::to_string(c.max_pos) + " positions");
    // refused here rather than discovered by the kernel's OOM killer halfway through a prompt
    const uint64_t need = KVCache::bytes_for(c, requested, kv), per = KVCache::bytes_for(c, 1, kv);
    if (kv_in_ram && avail > 0 && need > avail) {
      const bool q8_helps = kv != KvFormat::Q8 && c.head_dim % kKvGroup == 0;
      char buf[320];
      std::snprintf(buf, sizeof buf,
                    "--ctx %lld needs %.2f GB of %s KV cache; %.2f GB of memory is available: try --ctx %lld%s",
                    (long long)requested, double(need) / 1e9, kv_format_name(kv), double(avail) / 1e9,
                    (long long)(avail / per >= 512 ? avail / per / 256 * 256 : avail / per), q8_helps ? " or --kv q8" : "");
      fail_usage(buf);
    }
    return requested;
  }
  int64_t ctx = std::min<int64_t>(c.max_pos, 32768);
  while (ctx > 512 && avail > 0 && KVCache::bytes_for(c, ctx, kv) > avail / 4) ctx /= 2;
  return ctx;
}

}  // namespace r1
