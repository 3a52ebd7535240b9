#include "quant/pack.h"
#include "quant/pack_common.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <cstring>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/r1m.h"
#include "kernels/cpu/ref.h"
#include "core/threadpool.h"
#include "quant/quantize.h"
#include "quant/safetensors.h"

namespace fs = std::filesystem;

namespace r1 {

// The q4 and q5 recipes. Both keep k_proj and v_proj in q8: on tiny-qwen2-py (mean KL vs bf16
// over heldout.py.txt, one class of matrices at a time in q8) they remove the most KL per byte
// (v 22, k 13 KL-millis per MB, against 3-7 for the others), and under GQA they are small on
// the big models (Qwen-7B: +0.2 bits per block weight). Beyond that:
//  - q5: everything else q5, output and embedding included.
//  - q4: q5 for the output layer (and a tied embedding, which is the output layer too), o_proj,
//    and the first layer's MLP, the next most sensitive (layer 0's down_proj is worth three
//    times any other layer's); everything else q4, the embedding included. Only the layer index
//    is read from the name, not the layer count, so GGUF packing and the synthetic bench (which
//    call this with the same arguments) agree with `r1 pack`.
// On tiny-qwen2-py (hidden 384, 6 layers; llama.cpp: Q4_0 10.8 MB at KL 0.0368, Q4_K_M 12.3 MB
// at 0.0114), fake-quantized scans of the candidates, then the real files, gave:
//   all blocks q4 (output q8)                              10.6 MB  KL 0.0258
//   earlier q4: output, k, v, o, layer-0 MLP in q8         11.9 MB  KL 0.0141
//   q4 now: those in q5 but k, v                           9.95 MB  KL 0.0178
//   q5                                                     11.2 MB  KL 0.0081
// The q4 -> q5 step on the big MLP matrices is what the KL needs on this model (gate and up of
// layers 1-5 in q4, everything else q5, output q8: 11.6 MB and still KL 0.0122, fake-quantized),
// so q4 stays the small, fast recipe and q5 is the quality one. q4's scale search is within
// about 1% of the least-squares optimum per group: the error left is the format's.
const char* recipe_mix(Format quant) {
  if (quant == Format::Q4) return "q8: k_proj, v_proj; q5: output, o_proj, layer 0's MLP; the rest q4";
  if (quant == Format::Q5) return "q8: k_proj, v_proj; the rest q5";
  return nullptr;
}

Format recipe_format(Format quant, const ModelTensor& t, bool tied) {
  if (!t.matrix()) return Format::F32;
  Format f = quant;
  const Role r = t.role;
  const bool in_layer = t.layer >= 0;  // only the layer index is read, not the layer count (see above)
  if (quant == Format::Q4 || quant == Format::Q5) {
    if (in_layer && (r == Role::K || r == Role::V)) f = Format::Q8;
    else if (quant == Format::Q4 && (r == Role::Output || (tied && r == Role::Embed) || (in_layer && r == Role::O) ||
                                     (t.layer == 0 && (r == Role::Gate || r == Role::Up || r == Role::Down))))
      f = Format::Q5;
  }
  if (!format_fits(f, t.shape.back())) f = Format::BF16;
  return f;
}

Format recipe_format(Format quant, const std::string& name, uint64_t ndim, uint64_t cols, bool tied) {
  ModelTensor t{Role::Q, -1, name, "", std::vector<uint64_t>(ndim, cols)};  // Q outside a layer: the plain recipe
  Role r;
  int64_t layer;
  if (role_of(name, &r, &layer)) t.role = r, t.layer = layer;
  return recipe_format(quant, t, tied);
}

static std::string read_file(const fs::path& p) {
  // An ifstream opens a directory without complaint and then reads nothing: check first, so
  // the error says what is wrong instead of "malformed JSON".
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) fail_input(p.string() + ": cannot read (not a regular file)");
  std::ifstream f(p, std::ios::binary);
  if (!f) fail_input(p.string() + ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

static nlohmann::json read_json(const fs::path& p) {
  return parse_json(read_file(p), p.string());
}

static std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; k--) o += t[(v >> (6 * k)) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | (i + 1 < in.size() ? uint32_t(uint8_t(in[i + 1])) << 8 : 0);
    o += t[(v >> 18) & 63];
    o += t[(v >> 12) & 63];
    o += i + 1 < in.size() ? t[(v >> 6) & 63] : '=';
    o += '=';
  }
  return o;
}

// Everything but the weights: config, tokenizer files, template, generation defaults, provenance.
static nlohmann::json build_meta(const fs::path& dir, const Config& cfg, Format quant) {
  nlohmann::json meta;
  meta["config"] = config_to_json(cfg);
  nlohmann::json tok;
  if (fs::exists(dir / "tokenizer.json")) tok["json"] = read_file(dir / "tokenizer.json");
  else if (fs::exists(dir / "tokenizer.model")) tok["sentencepiece_b64"] = base64(read_file(dir / "tokenizer.model"));
  else fail_input(dir.string() + ": no tokenizer.json or tokenizer.model");
  if (tok.contains("json")) parse_json(tok["json"].get<std::string>(), (dir / "tokenizer.json").string());
  meta["tokenizer"] = tok;
  nlohmann::json tcfg = nlohmann::json::object();
  if (fs::exists(dir / "tokenizer_config.json")) tcfg = read_json(dir / "tokenizer_config.json");
  if (!tcfg.is_object()) fail_input("tokenizer_config.json is not a JSON object");
  // transformers 5 may keep the template in its own file
  if (!tcfg.contains("chat_template") && fs::exists(dir / "chat_template.jinja"))
    tcfg["chat_template"] = read_file(dir / "chat_template.jinja");
  meta["tokenizer_config"] = tcfg;

  nlohmann::json gen = nlohmann::json::object();
  if (fs::exists(dir / "generation_config.json")) {
    auto g = read_json(dir / "generation_config.json");
    for (const char* k : {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "do_sample", "eos_token_id"})
      if (g.is_object() && g.contains(k)) gen[k] = g[k];
  }
  meta["generation"] = gen;

  Format blocks = quant;
  meta["provenance"] = {
      {"source", fs::absolute(dir).string()},
      {"r1_version", R1_VERSION},
      {"created_unix", int64_t(std::time(nullptr))},
      {"recipe",
       {{"quant", format_name(quant)},
        {"blocks", format_name(blocks)},
        {"embed", format_name(recipe_format(quant, "model.embed_tokens.weight", 2, uint64_t(cfg.hidden), cfg.tied_embeddings))},
        {"output", format_name(recipe_format(quant, "lm_head.weight", 2, uint64_t(cfg.hidden), cfg.tied_embeddings))},
        {"group_size", kGroup},
        {"q4_scale", "per-group f16, least-squares search over the codebook"}}},
  };
  if (recipe_mix(quant)) meta["provenance"]["recipe"]["mix"] = recipe_mix(quant);
  return meta;
}

// A NaN or infinity in the checkpoint, or a value the target format cannot hold (f16 tops out
// at 65504; q8/q4 store an f16 scale of about max|w| / 127), would otherwise be packed silently
// as garbage (inf or NaN weights): refuse it, naming the tensor and the element.
void check_range(const std::string& name, Format fmt, const float* x, uint64_t n, uint64_t first) {
  const float lim = fmt == Format::F16 ? 65504.0f : is_quantized(fmt) ? 65504.0f * 64 : INFINITY;
  for (uint64_t i = 0; i < n; i++) {
    if (std::fabs(x[i]) <= lim) continue;
    const std::string where = "tensor " + name + ", element " + std::to_string(first + i);
    if (std::isnan(x[i])) fail_input(where + " is NaN");
    if (std::isinf(x[i])) fail_input(where + " is infinite");
    fail_input(where + " (" + std::to_string(x[i]) + ") is out of range for " + format_name(fmt) + " (use bf16 or f32)");
  }
}

void write_packed(const PackOptions& opt, const std::vector<TensorSpec>& specs, nlohmann::json meta,
                  const RowSource& rows_of, const std::function<void(size_t)>& done) {
  R1Writer w(opt.out, specs);
  ThreadPool pool(opt.threads > 0 ? opt.threads : ThreadPool::default_threads());
  uint64_t total_bytes = 0, done_bytes = 0;
  for (size_t i = 0; i < specs.size(); i++) total_bytes += w.bytes(i);
  if (opt.before_write) opt.before_write(total_bytes);

  std::vector<float> fbuf, deq;
  std::vector<uint8_t> qbuf, scales;
  nlohmann::json errors = nlohmann::json::object();
  for (size_t i = 0; i < specs.size(); i++) {
    const TensorSpec& s = specs[i];
    const uint64_t rows = s.shape.size() == 2 ? s.shape[0] : 1, cols = s.shape.back();
    const uint64_t chunk = std::max<uint64_t>(1, (16u << 20) / cols);  // bounded peak memory
    w.begin_tensor(i);
    scales.clear();
    double err2 = 0, ref2 = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += chunk) {
      const uint64_t n = std::min(chunk, rows - r0);
      fbuf.resize(n * cols);
      rows_of(i, r0, n, fbuf.data());
      check_range(s.name, s.fmt, fbuf.data(), n * cols, r0 * cols);
      qbuf.resize(tensor_bytes(s.fmt, n, cols));
      pool.parallel_for(int64_t(n), [&](int64_t b, int64_t e, int) {
        quantize_rows(s.fmt, fbuf.data(), int64_t(n), int64_t(cols), b, e, qbuf.data());
      });
      const uint64_t cb = codes_bytes(s.fmt, n, cols);
      w.append(i, qbuf.data(), cb);
      if (is_quantized(s.fmt)) {
        const uint8_t* sp = qbuf.data() + align_up(cb, 64);
        scales.insert(scales.end(), sp, sp + n * (cols / kGroup) * 2);
        WeightView v = make_view(s.fmt, n, cols, qbuf.data());
        deq.resize(cols);
        for (uint64_t r = 0; r < n; r++) {
          ref::dequant_row(v, int64_t(r), deq.data());
          for (uint64_t c = 0; c < cols; c++) {
            double x = fbuf[r * cols + c], d = x - deq[c];
            err2 += d * d;
            ref2 += x * x;
          }
        }
      }
    }
    if (is_quantized(s.fmt)) {
      const uint64_t cb = codes_bytes(s.fmt, rows, cols);
      std::vector<uint8_t> pad(align_up(cb, 64) - cb, 0);
      if (!pad.empty()) w.append(i, pad.data(), pad.size());
      w.append(i, scales.data(), scales.size());
      double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : 0;
      errors[s.name] = rel;
      if (opt.on_error) opt.on_error(s.name, s.fmt, rel);
    }
    w.end_tensor(i);
    if (done) done(i);
    done_bytes += w.bytes(i);
    if (opt.on_progress) opt.on_progress(i + 1, specs.size(), done_bytes, total_bytes);
  }
  meta["provenance"]["rel_rms"] = errors;
  w.finish(meta);
}

void pack_checkpoint(const PackOptions& opt) {
  fs::path dir(opt.src);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail_input(opt.src + ": not a directory (expected a Hugging Face checkpoint)");
  if (!fs::exists(dir / "config.json")) fail_input(opt.src + ": no config.json");
  Config cfg = config_from_hf(read_json(dir / "config.json"));
  Safetensors st = Safetensors::open(opt.src);

  // The checkpoint must hold exactly the tensors the architecture needs, at the right shapes.
  auto expected = model_tensors(cfg);
  std::set<std::string> names;
  for (auto& e : expected) {
    names.insert(e.name);
    const StTensor* t = st.find(e.name);
    if (!t) fail_input(opt.src + ": missing tensor " + e.name);
    if (t->shape != e.shape) {
      std::string s;
      for (auto d : t->shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
      fail_input(opt.src + ": tensor " + e.name + " has shape [" + s + "], config implies another");
    }
  }
  for (auto& [name, t] : st.tensors()) {
    if (names.count(name)) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // derived, recomputed
    if (cfg.tied_embeddings && name == "lm_head.weight") continue;
    fail_input(opt.src + ": unexpected tensor " + name + " (not part of a " + cfg.arch_name() + " model)");
  }

  nlohmann::json meta = build_meta(dir, cfg, opt.quant);
  std::vector<TensorSpec> specs;
  for (auto& e : expected)
    specs.push_back({e.name, recipe_format(opt.quant, e, cfg.tied_embeddings), e.shape});

  write_packed(
      opt, specs, std::move(meta),
      [&](size_t i, uint64_t r0, uint64_t n, float* out) {
        const StTensor& t = *st.find(specs[i].name);
        Safetensors::to_float(t, r0 * t.shape.back(), n * t.shape.back(), out);
      },
      [&](size_t i) { st.release(*st.find(specs[i].name)); });
}

}  // namespace r1
