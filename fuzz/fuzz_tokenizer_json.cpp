// tokenizer.json and tokenizer_config.json from an untrusted checkpoint. The input is split at
// the first NUL: tokenizer.json before, tokenizer_config.json after.
#include <cstring>

#include "core/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  const char* nul = static_cast<const char*>(std::memchr(p, 0, size));
  r1::TokenizerSource src;
  src.tokenizer_json.assign(p, nul ? size_t(nul - p) : size);
  src.tokenizer_config_json = nul ? std::string(nul + 1, p + size) : "{}";
  src.origin = "fuzz";
  r1fuzz::expect_clean([&] {
    r1::Tokenizer t = r1::Tokenizer::load(src);
    auto ids = t.encode("Hello, world! 123 <think>\n", true);
    (void)t.decode(ids, true);
  });
  return 0;
}
