// The tokenizer on arbitrary bytes (invalid UTF-8 included), and streaming decode of arbitrary
// ids: never a crash, and valid UTF-8 text round-trips.
#include "core/tokenizer.h"
#include "core/tokenizer_load.h"
#include "fuzz_util.h"

static const r1::Tokenizer& tok() {
  static r1::Tokenizer t = r1::Tokenizer::load(r1::load_tokenizer_source(R1_FIXTURES "/models/tiny-qwen2"));
  return t;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ids = tok().encode(text, size % 2 == 0);
  (void)tok().decode(ids);
  // the same bytes read as token ids
  std::vector<int32_t> any;
  for (size_t i = 0; i + 2 <= size; i += 2) any.push_back(int32_t(data[i] | data[i + 1] << 8) - 1000);
  r1::StreamDecoder d(tok(), size % 3 == 0);
  for (int32_t id : any) (void)d.push(id);
  (void)d.flush();
  return 0;
}
