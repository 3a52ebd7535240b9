#include "core/session.h"

#include "core/error.h"

namespace r1 {

std::vector<uint8_t> Session::kv_save() const { fail_usage("this backend cannot save its KV cache (the CPU backend can)"); }
void Session::kv_load(const std::vector<uint8_t>&, int64_t) {
  fail_usage("this backend cannot restore a KV cache (the CPU backend can)");
}

}  // namespace r1
