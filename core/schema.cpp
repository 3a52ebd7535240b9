#include "core/schema.h"

namespace r1 {

namespace {
struct TopEntry {
  Role role;
  const char *hf, *gguf;
};
constexpr TopEntry kTop[] = {
    {Role::Embed, "model.embed_tokens.weight", "token_embd.weight"},
    {Role::FinalNorm, "model.norm.weight", "output_norm.weight"},
    {Role::Output, "lm_head.weight", "output.weight"},
};
const TopEntry& top(Role r) {
  for (const TopEntry& e : kTop)
    if (e.role == r) return e;
  return kTop[0];
}
struct LayerEntry {
  Role role;
  const char* hf;    // after "model.layers.N."
  const char* gguf;  // after "blk.N."
};
// A layer's tensors in the order checkpoints list them.
constexpr LayerEntry kLayer[] = {
    {Role::AttnNorm, "input_layernorm.weight", "attn_norm.weight"},
    {Role::Q, "self_attn.q_proj.weight", "attn_q.weight"},
    {Role::K, "self_attn.k_proj.weight", "attn_k.weight"},
    {Role::V, "self_attn.v_proj.weight", "attn_v.weight"},
    {Role::QBias, "self_attn.q_proj.bias", "attn_q.bias"},
    {Role::KBias, "self_attn.k_proj.bias", "attn_k.bias"},
    {Role::VBias, "self_attn.v_proj.bias", "attn_v.bias"},
    {Role::QNorm, "self_attn.q_norm.weight", "attn_q_norm.weight"},
    {Role::KNorm, "self_attn.k_norm.weight", "attn_k_norm.weight"},
    {Role::O, "self_attn.o_proj.weight", "attn_output.weight"},
    {Role::FfnNorm, "post_attention_layernorm.weight", "ffn_norm.weight"},
    {Role::Gate, "mlp.gate_proj.weight", "ffn_gate.weight"},
    {Role::Up, "mlp.up_proj.weight", "ffn_up.weight"},
    {Role::Down, "mlp.down_proj.weight", "ffn_down.weight"},
};
}  // namespace

std::vector<ModelTensor> model_tensors(const Config& c) {
  using U = uint64_t;
  const U h = U(c.hidden), q = U(c.q_dim()), kv = U(c.kv_dim()), ff = U(c.intermediate), v = U(c.vocab_size);
  auto shape = [&](Role r) -> std::vector<U> {
    switch (r) {
      case Role::Q: return {q, h};
      case Role::K: case Role::V: return {kv, h};
      case Role::QBias: return {q};
      case Role::QNorm: case Role::KNorm: return {U(c.head_dim)};
      case Role::KBias: case Role::VBias: return {kv};
      case Role::O: return {h, q};
      case Role::Gate: case Role::Up: return {ff, h};
      case Role::Down: return {h, ff};
      default: return {h};  // the norms
    }
  };
  auto present = [&](Role r) {
    if (r == Role::QBias || r == Role::KBias || r == Role::VBias) return c.qkv_bias;
    if (r == Role::QNorm || r == Role::KNorm) return c.qk_norm;
    return true;
  };
  auto top_tensor = [&](Role r, std::vector<U> shape) {
    return ModelTensor{r, -1, top(r).hf, top(r).gguf, std::move(shape)};
  };
  std::vector<ModelTensor> t;
  t.push_back(top_tensor(Role::Embed, {v, h}));
  for (int64_t l = 0; l < c.n_layers; l++) {
    const std::string hf = "model.layers." + std::to_string(l) + ".", gg = "blk." + std::to_string(l) + ".";
    for (const LayerEntry& e : kLayer)
      if (present(e.role)) t.push_back({e.role, l, hf + e.hf, gg + e.gguf, shape(e.role)});
  }
  t.push_back(top_tensor(Role::FinalNorm, {h}));
  if (!c.tied_embeddings) t.push_back(top_tensor(Role::Output, {v, h}));
  return t;
}

bool role_of(const std::string& name, Role* role, int64_t* layer) {
  *layer = -1;
  for (const TopEntry& e : kTop)
    if (name == e.hf) return *role = e.role, true;
  static const std::string pre = "model.layers.";
  if (name.compare(0, pre.size(), pre) != 0) return false;
  const size_t dot = name.find('.', pre.size());
  if (dot == std::string::npos) return false;
  const std::string idx = name.substr(pre.size(), dot - pre.size()), rest = name.substr(dot + 1);
  for (const LayerEntry& e : kLayer) {
    if (rest != e.hf) continue;
    *role = e.role;
    const bool digits = !idx.empty() && idx.size() < 10 && idx.find_first_not_of("0123456789") == std::string::npos;
    if (digits) *layer = std::stoll(idx);
    return true;
  }
  return false;
}

}  // namespace r1
