// r1 batch's input: JSONL records or plain-text lines, then sharding. Any bytes must either
// parse into records with unique ids or be rejected with an r1::Error.
#include <set>
#include <string>

#include "core/batch_io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  r1fuzz::expect_clean([&] {
    auto recs = r1::parse_batch_input(text, "fuzz.jsonl");
    std::set<std::string> ids;
    for (size_t i = 0; i < recs.size(); i++) {
      if (recs[i].index != i || !ids.insert(recs[i].id).second) __builtin_trap();
      if (recs[i].messages.empty()) __builtin_trap();
    }
    // the shards of a split are disjoint and add up to the whole
    size_t total = 0;
    for (int64_t s = 0; s < 3; s++) total += r1::take_shard(recs, s, 3).size();
    if (total != recs.size()) __builtin_trap();
  });
  return 0;
}
