// The .r1m header, tensor table and metadata of an untrusted file.
#include "core/r1m.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  r1fuzz::expect_clean([&] {
    auto f = r1::R1File::open(r1fuzz::memfile(data, size));
    // what open() accepted must be safe to read: every tensor inside the mapping
    for (auto& t : f->tensors()) {
      volatile uint8_t x = t.data[0];
      volatile uint8_t y = t.data[t.bytes - 1];
      (void)x;
      (void)y;
    }
    f->verify();
  });
  return 0;
}
