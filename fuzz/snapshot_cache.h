// The cache shape of the snapshot fuzzer and its seeds: 2 layers, 2 kv heads, head_dim 32 (so
// that q8 rows are whole), 64 positions, and the model id the seeds are saved with.
#pragma once
#include <cstdint>

#include "core/kv_cache.h"

namespace r1fuzz {

inline constexpr uint64_t kSnapshotModelId = 0x1234abcd5678ef00ull;

inline r1::KVCache snapshot_cache(r1::KvFormat f, uint8_t fill = 0) {
  r1::KVCache kv;
  kv.n_layers = 2;
  kv.n_kv = 2;
  kv.ctx = 64;
  kv.head_dim = 32;
  kv.fmt = f;
  kv.k.assign(size_t(kv.n_layers * kv.layer_bytes()), fill);
  kv.v = kv.k;
  return kv;
}

}  // namespace r1fuzz
