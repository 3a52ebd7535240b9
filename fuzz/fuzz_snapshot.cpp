// Chat snapshots (/save, /load): header fields, KV format flags, the compressed payload and the
// conversation JSON it carries, loaded into caches of each KV format. The header hash is recomputed over the input first,
// so that mutated fields reach their own checks instead of all failing at the hash.
#include <xxhash.h>

#include <cstddef>
#include <cstring>

#include "core/snapshot.h"
#include "fuzz_util.h"
#include "snapshot_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string b(reinterpret_cast<const char*>(data), size);
  if (b.size() >= sizeof(r1::SnapshotHeader)) {
    const uint64_t h = XXH64(b.data(), offsetof(r1::SnapshotHeader, header_hash), 0);
    std::memcpy(b.data() + offsetof(r1::SnapshotHeader, header_hash), &h, 8);
  }
  for (r1::KvFormat f : {r1::KvFormat::F16, r1::KvFormat::F32, r1::KvFormat::Q8}) {
    r1::KVCache kv = r1fuzz::snapshot_cache(f);
    r1fuzz::expect_clean([&] {
      r1::Snapshot s = r1::decode_snapshot(b, r1fuzz::kSnapshotModelId, r1::kv_shape(kv), kv.ctx);
      r1::kv_restore(kv, s.kv, int64_t(s.tokens.size()));
      (void)r1::conversation_from_json(s.conversation);
    });
  }
  return 0;
}
