// The tensors of a model, in one table built from its config: what the loader checks and binds,
// what the packers write (from safetensors or GGUF, and which format the recipe gives each), what
// the GPU uploads, and what the benchmarks count. An architecture that differs in its tensors
// (a bias, a norm) says so here and nowhere else.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace r1 {

// What a tensor is for. Matrices are [rows, cols] with y = W x; vectors are [n].
enum class Role : uint8_t {
  Embed,      // [vocab, hidden]
  AttnNorm,   // [hidden]
  Q, K, V,    // [q_dim | kv_dim, hidden]
  QBias, KBias, VBias,  // Qwen2: [q_dim | kv_dim]
  QNorm, KNorm,         // Qwen3: [head_dim], an RMSNorm over each head of q and k before RoPE
  O,          // [hidden, q_dim]
  FfnNorm,    // [hidden]
  Gate, Up,   // [ffn, hidden]
  Down,       // [hidden, ffn]
  FinalNorm,  // [hidden]
  Output,     // [vocab, hidden] (absent with tied embeddings: the embedding serves)
};

struct ModelTensor {
  Role role;
  int64_t layer;                // -1 outside the layers
  std::string name;             // Hugging Face's
  std::string gguf;             // llama.cpp's
  std::vector<uint64_t> shape;  // [rows, cols] or [n]
  bool matrix() const { return shape.size() == 2; }
};

// Every tensor a checkpoint of this config holds, in file order: the embedding, each layer's,
// then the final norm and the output layer.
std::vector<ModelTensor> model_tensors(const Config& c);

// The role and layer of a Hugging Face tensor name (layer -1 when the name has no valid layer
// index); false for a name no architecture uses.
bool role_of(const std::string& hf_name, Role* role, int64_t* layer);

}  // namespace r1
