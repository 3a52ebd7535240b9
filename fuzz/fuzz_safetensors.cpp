// A safetensors file's header and offsets.
#include "fuzz_util.h"
#include "quant/safetensors.h"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  r1fuzz::expect_clean([&] {
    auto st = r1::Safetensors::open(r1fuzz::memfile(data, size));
    std::vector<float> buf;
    for (auto& [name, t] : st.tensors()) {
      uint64_t n = std::min<uint64_t>(t.numel(), 4096);
      buf.resize(n);
      r1::Safetensors::to_float(t, t.numel() - n, n, buf.data());
    }
  });
  return 0;
}
