#include "core/kv_cache.h"

#include <cstring>

#include "quant/half.h"

namespace r1 {

KVCache::KVCache(const Config& c, int64_t ctx_, bool f16_, int64_t n_slots_)
    : n_layers(c.n_layers), n_kv(c.n_kv_heads), ctx(ctx_), head_dim(c.head_dim), n_slots(n_slots_), f16(f16_) {
  k.resize(size_t(n_slots * n_layers * layer_bytes()));
  v.resize(size_t(n_slots * n_layers * layer_bytes()));
}

void KVCache::store(int64_t l, int64_t pos, const float* kx, const float* vx, int64_t slot) {
  for (int64_t h = 0; h < n_kv; h++) {
    const int64_t off = (h * ctx + pos) * head_dim;
    if (f16) {
      auto* kd = reinterpret_cast<uint16_t*>(k_layer(l, slot)) + off;
      auto* vd = reinterpret_cast<uint16_t*>(v_layer(l, slot)) + off;
      for (int64_t i = 0; i < head_dim; i++) {
        kd[i] = f32_to_f16(kx[h * head_dim + i]);
        vd[i] = f32_to_f16(vx[h * head_dim + i]);
      }
    } else {
      std::memcpy(reinterpret_cast<float*>(k_layer(l, slot)) + off, kx + h * head_dim, size_t(head_dim) * 4);
      std::memcpy(reinterpret_cast<float*>(v_layer(l, slot)) + off, vx + h * head_dim, size_t(head_dim) * 4);
    }
  }
}

}  // namespace r1
