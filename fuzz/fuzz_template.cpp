// Chat templates from tokenizer_config.json and messages JSON. Split at the first NUL:
// tokenizer_config.json before, messages after.
#include <cstring>

#include "core/chat_template.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  const char* nul = static_cast<const char*>(std::memchr(p, 0, size));
  std::string cfg(p, nul ? size_t(nul - p) : size);
  std::string msgs = nul ? std::string(nul + 1, p + size) : "[{\"role\":\"user\",\"content\":\"hi\"}]";
  r1fuzz::expect_clean([&] {
    auto m = r1::parse_messages_json(msgs);
    for (const char* forced : {"", "r1", "chatml", "llama3", "raw"}) {
      r1fuzz::expect_clean([&] {
        auto t = r1::ChatTemplate::from_config(cfg, forced);
        (void)t.render(m, true);
        (void)t.render(m, false);
      });
    }
  });
  return 0;
}
