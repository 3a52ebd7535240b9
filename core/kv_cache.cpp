#include "core/kv_cache.h"

#include "core/error.h"

namespace r1 {

KVCache::KVCache(const Config& c, int64_t ctx_, KvFormat fmt_, int64_t n_slots_)
    : n_layers(c.n_layers), n_kv(c.n_kv_heads), ctx(ctx_), head_dim(c.head_dim), n_slots(n_slots_), fmt(fmt_) {
  if (fmt == KvFormat::Q8 && head_dim % kKvGroup != 0)
    fail_usage("--kv q8 needs a head size that is a multiple of 32 (this model's is " + std::to_string(head_dim) +
               "); use --kv f16");
  k.resize(size_t(n_slots * n_layers * layer_bytes()));
  v.resize(size_t(n_slots * n_layers * layer_bytes()));
}

void KVCache::store(int64_t l, int64_t pos, const float* kx, const float* vx, int64_t slot) {
  const int64_t rb = row_bytes();
  for (int64_t h = 0; h < n_kv; h++) {
    uint8_t* kd = k_layer(l, slot) + (h * ctx + pos) * rb;
    uint8_t* vd = v_layer(l, slot) + (h * ctx + pos) * rb;
    kv_encode_row(fmt, kx + h * head_dim, head_dim, kd);
    kv_encode_row(fmt, vx + h * head_dim, head_dim, vd);
  }
}

}  // namespace r1
