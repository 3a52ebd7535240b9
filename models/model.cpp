#include "models/model.h"

#include "core/error.h"

namespace r1 {

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto m = std::make_unique<Model>();
  m->file = R1File::open(path);
  const R1File& f = *m->file;
  if (!f.meta().contains("config")) fail_input(path + ": metadata has no model config");
  m->cfg = config_from_json(f.meta()["config"]);
  const Config& c = m->cfg;

  // Every tensor of the schema present at its shape; 1-D ones f32, matrices in any weight format.
  for (const ModelTensor& e : model_tensors(c)) {
    const TensorInfo& t = f.get(e.name);
    if (t.shape != e.shape) fail_input(path + ": tensor " + e.name + " has the wrong shape for this config");
    if (!e.matrix() && t.fmt != Format::F32) fail_input(path + ": tensor " + e.name + " must be f32");
  }
  m->bind([&](const ModelTensor& e) { return f.get(e.name).view(); },
          [&](const ModelTensor& e) { return reinterpret_cast<const float*>(f.get(e.name).data); });
  return m;
}

WeightView* LayerWeights::matrix(Role r) {
  switch (r) {
    case Role::Q: return &wq;
    case Role::K: return &wk;
    case Role::V: return &wv;
    case Role::O: return &wo;
    case Role::Gate: return &gate;
    case Role::Up: return &up;
    case Role::Down: return &down;
    default: return nullptr;
  }
}

const float** LayerWeights::vector(Role r) {
  switch (r) {
    case Role::AttnNorm: return &attn_norm;
    case Role::QBias: return &bq;
    case Role::KBias: return &bk;
    case Role::VBias: return &bv;
    case Role::QNorm: return &q_norm;
    case Role::KNorm: return &k_norm;
    case Role::FfnNorm: return &ffn_norm;
    default: return nullptr;
  }
}

void Model::bind(const std::function<WeightView(const ModelTensor&)>& mat,
                 const std::function<const float*(const ModelTensor&)>& vec) {
  const Config& c = cfg;
  layers.assign(size_t(c.n_layers), LayerWeights{});
  for (const ModelTensor& e : model_tensors(c)) {
    if (e.role == Role::Embed) embed = mat(e);
    else if (e.role == Role::Output) lm_head = mat(e);
    else if (e.role == Role::FinalNorm) final_norm = vec(e);
    else if (WeightView* w = layers[size_t(e.layer)].matrix(e.role)) *w = mat(e);
    else *layers[size_t(e.layer)].vector(e.role) = vec(e);
  }
  if (c.tied_embeddings) lm_head = embed;
  inv_freq = rope_inv_freq(c);
}

const WeightView* Model::matrix(const ModelTensor& t) const {
  if (t.role == Role::Embed) return &embed;
  if (t.role == Role::Output) return &lm_head;
  return t.layer >= 0 ? layers[size_t(t.layer)].matrix(t.role) : nullptr;
}

uint64_t Model::weight_bytes() const {
  auto b = [](const WeightView& w) { return tensor_bytes(w.fmt, uint64_t(w.rows), uint64_t(w.cols)); };
  uint64_t s = b(lm_head);
  for (auto& L : layers)
    for (const WeightView* w : L.matrices()) s += b(*w);
  return s;
}

}  // namespace r1
