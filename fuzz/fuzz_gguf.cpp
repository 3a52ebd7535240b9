// A GGUF file: header, metadata, tensor infos (gguf_parse from memory), the first row of every
// tensor dequantized, and the tokenizer files synthesized from its metadata (through the file
// path, as `r1 pack` reads it).
#include <vector>

#include "fuzz_util.h"
#include "quant/gguf.h"
#include "quant/pack_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  r1fuzz::expect_clean([&] {
    r1::GgufFile f = r1::gguf_parse(data, size, "fuzz.gguf");
    std::vector<float> buf;
    for (const auto& t : f.tensors) {
      // One row, or one block of an absurdly long row: bounded work per input.
      const uint64_t n = t.ne[0] <= 65536 ? t.ne[0] : r1::ggml_type_info(uint32_t(t.type))->block;
      buf.resize(n);
      r1::gguf_dequantize(t.type, t.data, n, buf.data());
    }
    if (f.find("tokenizer.ggml.model")) {
      r1::GgufModel m = r1::GgufModel::open(r1fuzz::memfile(data, size));
      r1::gguf_tokenizer_files(m);
    }
  });
  return 0;
}
