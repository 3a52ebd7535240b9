// The KV cache: per slot (one sequence each) and layer, keys and values for every position, laid
// out [n_kv, ctx, row] so that one kv head's history is contiguous for attention. Slots are
// outermost, so slot 0 of a cache has the single-sequence layout (snapshots read it as such).
// A row is one position of one kv head in the cache's format (quant/kv_format.h): f16 by default
// (half the bytes read per token deep in a reasoning chain), q8 for long contexts in less
// memory, f32 for exactness tests.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.h"
#include "quant/kv_format.h"

namespace r1 {

struct KVCache {
  int64_t n_layers = 0, n_kv = 0, ctx = 0, head_dim = 0, n_slots = 1;
  KvFormat fmt = KvFormat::F16;
  std::vector<uint8_t> k, v;  // [n_slots, n_layers, n_kv, ctx] rows of row_bytes()

  KVCache() = default;
  // Fails (usage) for q8 with a head_dim that is not a multiple of 32.
  KVCache(const Config& c, int64_t ctx, KvFormat fmt, int64_t n_slots = 1);
  int64_t row_bytes() const { return kv_row_bytes(fmt, head_dim); }
  int64_t layer_bytes() const { return n_kv * ctx * row_bytes(); }
  uint8_t* k_layer(int64_t l, int64_t slot = 0) { return k.data() + (slot * n_layers + l) * layer_bytes(); }
  uint8_t* v_layer(int64_t l, int64_t slot = 0) { return v.data() + (slot * n_layers + l) * layer_bytes(); }
  // Store one position's keys/values for layer l of a slot.    kx, vx: [n_kv, head_dim]
  void store(int64_t l, int64_t pos, const float* kx, const float* vx, int64_t slot = 0);
  // Bytes of K and V for n_slots sequences of ctx positions each.
  static uint64_t bytes_for(const Config& c, int64_t ctx, KvFormat fmt, int64_t n_slots = 1) {
    return uint64_t(2) * uint64_t(c.n_layers) * uint64_t(c.n_kv_heads) * uint64_t(kv_row_bytes(fmt, c.head_dim)) *
           uint64_t(ctx) * uint64_t(n_slots);
  }
};

}  // namespace r1
