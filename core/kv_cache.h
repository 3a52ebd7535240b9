// The KV cache: per slot (one sequence each) and layer, keys and values for every position, laid
// out [n_kv, ctx, head_dim] so that one kv head's history is contiguous for attention. Slots are
// outermost, so slot 0 of a cache has the single-sequence layout (snapshots read it as such).
// f16 by default (half the bytes read per token deep in a reasoning chain); f32 for exactness tests.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.h"

namespace r1 {

struct KVCache {
  int64_t n_layers = 0, n_kv = 0, ctx = 0, head_dim = 0, n_slots = 1;
  bool f16 = true;
  std::vector<uint8_t> k, v;  // [n_slots, n_layers, n_kv, ctx, head_dim] elements of 2 or 4 bytes

  KVCache() = default;
  KVCache(const Config& c, int64_t ctx, bool f16, int64_t n_slots = 1);
  int64_t elem_bytes() const { return f16 ? 2 : 4; }
  int64_t layer_bytes() const { return n_kv * ctx * head_dim * elem_bytes(); }
  uint8_t* k_layer(int64_t l, int64_t slot = 0) { return k.data() + (slot * n_layers + l) * layer_bytes(); }
  uint8_t* v_layer(int64_t l, int64_t slot = 0) { return v.data() + (slot * n_layers + l) * layer_bytes(); }
  // Store one position's keys/values for layer l of a slot.    kx, vx: [n_kv, head_dim]
  void store(int64_t l, int64_t pos, const float* kx, const float* vx, int64_t slot = 0);
  // Bytes of K and V for n_slots sequences of ctx positions each.
  static uint64_t bytes_for(const Config& c, int64_t ctx, bool f16, int64_t n_slots = 1) {
    return uint64_t(2) * uint64_t(c.n_layers) * uint64_t(c.kv_dim()) * uint64_t(ctx) * (f16 ? 2 : 4) * uint64_t(n_slots);
  }
};

}  // namespace r1
