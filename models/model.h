// A model's weights as views into the mapped .r1m file (or a synthetic model's memory), bound
// to the schema's tensors (core/schema.h): what every backend reads. Loading validates every
// tensor against the config before anything runs.
#pragma once
#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/r1m.h"
#include "core/schema.h"
#include "quant/formats.h"

namespace r1 {

struct LayerWeights {
  const float* attn_norm = nullptr;       // [hidden]
  WeightView wq, wk, wv, wo;              // [q_dim, hidden] [kv_dim, hidden] x2 [hidden, q_dim]
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // Qwen2 only
  const float *q_norm = nullptr, *k_norm = nullptr;          // Qwen3 only: [head_dim]
  const float* ffn_norm = nullptr;        // [hidden]
  WeightView gate, up, down;              // [ffn, hidden] x2, [hidden, ffn]

  // The matrices, for whatever goes over all of them (byte counts, uploads, format checks).
  std::array<const WeightView*, 7> matrices() const { return {&wq, &wk, &wv, &wo, &gate, &up, &down}; }
  // Where a schema role binds (null for a role outside the layers).
  WeightView* matrix(Role r);
  const float** vector(Role r);
  const WeightView* matrix(Role r) const { return const_cast<LayerWeights*>(this)->matrix(r); }
  const float* const* vector(Role r) const { return const_cast<LayerWeights*>(this)->vector(r); }
};

struct Model {
  std::unique_ptr<R1File> file;
  std::shared_ptr<uint8_t> owned;         // weights held in memory (synthetic models); views point into it
  Config cfg;
  WeightView embed, lm_head;              // [vocab, hidden]
  const float* final_norm = nullptr;      // [hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> inv_freq;            // [head_dim / 2]

  // Opens and validates: every tensor the config needs, at its shape, in a usable format.
  static std::unique_ptr<Model> load(const std::string& path);
  uint64_t weight_bytes() const;  // bytes read per decoded token (all matrices but the embedding)
  const WeightView* matrix(const ModelTensor& t) const;  // the view bound to a matrix of the schema
  // Points the views at the schema's tensors (core/schema.h), from a file or synthetic.
  void bind(const std::function<WeightView(const ModelTensor&)>& mat,
            const std::function<const float*(const ModelTensor&)>& vec);
};

}  // namespace r1
