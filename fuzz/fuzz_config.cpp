// config.json as Hugging Face writes it (both spellings), then r1's own config round trip. The
// text goes through parse_json, as `r1 pack` reads it (depth limit included).
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/json_input.h"
#include "core/schema.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  r1fuzz::expect_clean([&] {
    const nlohmann::json j = r1::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    r1fuzz::expect_clean([&] {
      r1::Config c = r1::config_from_hf(j);
      (void)r1::model_tensors(c);
      (void)r1::rope_inv_freq(c);
      r1::Config back = r1::config_from_json(r1::config_to_json(c));
      if (back.hidden != c.hidden || back.n_layers != c.n_layers || back.qk_norm != c.qk_norm) __builtin_trap();
    });
    r1fuzz::expect_clean([&] { (void)r1::config_from_json(j); });
  });
  return 0;
}
