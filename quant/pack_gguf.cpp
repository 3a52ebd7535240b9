// `r1 pack model.gguf`: a llama.cpp GGUF (qwen2 or llama) -> .r1m. Tensors are dequantized to
// float and requantized by r1's own quantizers; config and tokenizer are rebuilt from the
// GGUF metadata so that the packed file is what packing the Hugging Face checkpoint gives.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "core/r1m.h"
#include "kernels/cpu/ref.h"
#include "core/threadpool.h"
#include "quant/gguf.h"
#include "quant/pack_common.h"
#include "quant/quantize.h"

namespace fs = std::filesystem;

namespace r1 {

bool is_gguf_path(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

// ------------------------------------------------------------------------------ config

namespace {

// llama.cpp stores llama3 rope scaling as a `rope_freqs` tensor of per-frequency divisors
// (inv_freq / r[j]), not as parameters. Recover factor / low / high / original_max_pos: in the
// blended band s = (1/r - 1/factor) / (1 - 1/factor) is linear in x = inv_freq / 2pi,
// s = (orig * x - low) / (high - low); only ratios are determined, so low is taken as 1 (as
// every Llama 3 checkpoint has it). The result is checked against the tensor.
void derive_llama3(Config& cfg, const std::vector<float>& r, const std::string& origin) {
  Config base = cfg;
  base.rope_scaling = RopeScaling{};
  const std::vector<float> f = rope_inv_freq(base);
  if (r.size() != f.size())
    fail_input(origin + ": rope_freqs has " + std::to_string(r.size()) + " entries, head_dim / 2 = " + std::to_string(f.size()));
  double factor = 0;
  for (float v : r) {
    if (!(v >= 0.999f) || !(v <= 1e4f)) fail_input(origin + ": rope_freqs holds " + std::to_string(v));
    factor = std::max(factor, double(v));
  }
  if (factor < 1 + 1e-6) return;  // all ones: no scaling
  RopeScaling s;
  s.type = "llama3";
  s.factor = std::round(factor * 1e4) / 1e4;
  s.low_freq_factor = 1;
  std::vector<double> xs, ss;
  double max_short = 0, min_long = INFINITY;  // wavelengths kept / fully scaled
  for (size_t j = 0; j < r.size(); j++) {
    const double wl = 2 * M_PI / double(f[j]);
    if (r[j] < 1 + 1e-5) {
      max_short = std::max(max_short, wl);
    } else if (r[j] > s.factor * (1 - 1e-5)) {
      min_long = std::min(min_long, wl);
    } else {
      xs.push_back(1 / wl);
      ss.push_back((1 / double(r[j]) - 1 / s.factor) / (1 - 1 / s.factor));
    }
  }
  if (xs.size() >= 2) {  // least-squares line through the blended band
    double mx = 0, ms = 0, sxx = 0, sxs = 0;
    for (size_t k = 0; k < xs.size(); k++) mx += xs[k], ms += ss[k];
    mx /= double(xs.size());
    ms /= double(xs.size());
    for (size_t k = 0; k < xs.size(); k++) sxx += (xs[k] - mx) * (xs[k] - mx), sxs += (xs[k] - mx) * (ss[k] - ms);
    const double A = sxx > 0 ? sxs / sxx : 0, B = ms - A * mx;
    if (!(B < 0) || !(A > 0) || !(-A / B < 1e9)) fail_input(origin + ": rope_freqs is not llama3 scaling");
    s.high_freq_factor = std::round((1 - 1 / B) * 1e4) / 1e4;
    s.original_max_pos = int64_t(std::llround(-A / B));
  } else {
    // Too few blended frequencies to fit: the conventional high factor 4, and a context
    // length that puts the band boundaries where the tensor has them.
    s.high_freq_factor = 4;
    double orig;
    if (xs.size() == 1) {
      orig = (1 + 3 * ss[0]) / xs[0];
    } else {
      const double lo = std::max(4 * max_short, 1.0), hi = std::isfinite(min_long) ? std::max(min_long, lo) : 8 * lo;
      orig = std::sqrt(lo * hi);
    }
    if (!(orig >= 1 && orig < 1e9)) fail_input(origin + ": rope_freqs is not llama3 scaling");
    s.original_max_pos = int64_t(std::llround(orig));
  }
  cfg.rope_scaling = s;
  validate_config(cfg);
  const std::vector<float> got = rope_inv_freq(cfg);
  for (size_t j = 0; j < f.size(); j++) {
    const double want = double(f[j]) / double(r[j]);
    if (std::fabs(got[j] - want) > 1e-4 * want)
      fail_input(origin + ": rope_freqs cannot be expressed as llama3 rope scaling (frequency " + std::to_string(j) + ")");
  }
}

const GgufTensor& need_tensor(const GgufModel& m, const std::string& name) {
  const GgufTensor* t = m.tensor(name);
  if (!t) fail_input(m.paths()[0] + ": missing tensor " + name);
  return *t;
}

Config gguf_config(const GgufModel& m) {
  const std::string& origin = m.paths()[0];
  const std::string arch = m.get_str("general.architecture");
  Config c;
  if (arch == "qwen2") c.arch = Arch::Qwen2;
  else if (arch == "llama") c.arch = Arch::Llama;
  else if (arch == "qwen3") c.arch = Arch::Qwen3;
  else fail_input(origin + ": architecture '" + arch + "' is not supported (r1 runs qwen2, llama and qwen3)");
  const std::string p = arch + ".";
  c.hidden = m.get_int(p + "embedding_length");
  c.intermediate = m.get_int(p + "feed_forward_length");
  c.n_layers = m.get_int(p + "block_count");
  c.n_heads = m.get_int(p + "attention.head_count");
  c.n_kv_heads = m.get_int(p + "attention.head_count_kv", c.n_heads);
  c.head_dim = m.get_int(p + "attention.key_length", c.n_heads > 0 ? c.hidden / c.n_heads : 0);
  if (m.get_int(p + "attention.value_length", c.head_dim) != c.head_dim)
    fail_input(origin + ": key and value head sizes differ");
  if (m.get_int(p + "rope.dimension_count", c.head_dim) != c.head_dim)
    fail_input(origin + ": partial rotary embedding (rope.dimension_count != head size) is not supported");
  c.max_pos = m.get_int(p + "context_length");
  c.rope_theta = m.get_num(p + "rope.freq_base", 10000.0);
  c.norm_eps = float(m.get_num(p + "attention.layer_norm_rms_epsilon"));
  if (m.find(p + "rope.scaling.type")) {
    std::string st = m.get_str(p + "rope.scaling.type");
    if (st != "none" && st != "llama3") fail_input(origin + ": rope scaling '" + st + "' is not supported");
  }
  const GgufTensor& emb = need_tensor(m, "token_embd.weight");
  if (emb.ne.size() != 2) fail_input(origin + ": token_embd.weight is not a matrix");
  c.vocab_size = int64_t(std::min<uint64_t>(emb.ne[1], uint64_t(1) << 40));
  c.qkv_bias = m.tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = m.tensor("blk.0.attn_q_norm.weight") != nullptr;
  c.tied_embeddings = m.tensor("output.weight") == nullptr;
  const int64_t bos = m.get_int("tokenizer.ggml.bos_token_id", -1);
  c.bos_id = bos >= 0 && bos < c.vocab_size ? int32_t(bos) : -1;
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int64_t id = m.get_int(k, -1);
    if (id >= 0 && id < c.vocab_size && std::find(c.eos_ids.begin(), c.eos_ids.end(), int32_t(id)) == c.eos_ids.end())
      c.eos_ids.push_back(int32_t(id));
  }
  validate_config(c);
  if (const GgufTensor* rf = m.tensor("rope_freqs.weight")) {
    if (rf->type != GgmlType::F32 || rf->ne.size() != 1 || !rf->data) fail_input(origin + ": rope_freqs.weight is not an f32 vector");
    std::vector<float> r(size_t(rf->ne[0]));
    gguf_dequantize(rf->type, rf->data, rf->ne[0], r.data());
    derive_llama3(c, r, origin);
  }
  return c;
}

struct Source {
  const GgufTensor* t;
  uint64_t rows, cols, row_bytes;
  int64_t perm_heads;  // > 0: undo llama.cpp's q/k row permutation over this many heads
};

// llama.cpp's converter reorders each head's rows [first half; second half] into interleaved
// pairs: GGUF row 2i + a of a head is HF row a * hd/2 + i. Inverse: HF row -> GGUF row.
uint64_t gguf_row(uint64_t hf_row, uint64_t rows, int64_t heads) {
  const uint64_t hd = rows / uint64_t(heads), half = hd / 2;
  const uint64_t h = hf_row / hd, k = hf_row % hd;
  return h * hd + (k % half) * 2 + k / half;
}

}  // namespace

Format gguf_size_class(const GgufModel& m) {
  // r1 formats by bits per weight: q4 (Q4_*, Q2_K, Q3_K, IQ*), q5 (Q5_*), q8 (Q6_K, Q8_0), bf16
  const Format cls[4] = {Format::Q4, Format::Q5, Format::Q8, Format::BF16};
  uint64_t by_class[4] = {0, 0, 0, 0};
  for (auto& [name, t] : m.tensors()) {
    if (t.ne.size() < 2) continue;
    int c;
    switch (t.type) {
      case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: c = 3; break;
      case GgmlType::Q6_K: case GgmlType::Q8_0: c = 2; break;
      case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q5_K: c = 1; break;
      default: c = 0;
    }
    by_class[c] += t.numel;
  }
  int best = 0;  // the class holding most weights; a tie goes to the smaller format
  for (int c = 1; c < 4; c++)
    if (by_class[c] > by_class[best]) best = c;
  return cls[best];
}

void pack_gguf(const PackOptions& opt_in, bool quant_given) {
  PackOptions opt = opt_in;
  GgufModel m = GgufModel::open(opt.src);
  const std::string& origin = m.paths()[0];
  Config cfg = gguf_config(m);
  if (!quant_given) opt.quant = gguf_size_class(m);

  // Exactly the tensors of the architecture (plus rope_freqs, folded into the config).
  auto expected = model_tensors(cfg);
  std::vector<Source> src;
  std::set<std::string> used = {"rope_freqs.weight"};
  for (auto& e : expected) {
    const std::string& gn = e.gguf;
    const GgufTensor& t = need_tensor(m, gn);
    used.insert(gn);
    // GGUF lists dims innermost first: an HF [rows, cols] is ne = [cols, rows].
    const std::vector<uint64_t> want(e.shape.rbegin(), e.shape.rend());
    if (t.ne != want) {
      std::string s;
      for (auto d : t.ne) s += (s.empty() ? "" : ", ") + std::to_string(d);
      fail_input(origin + ": tensor " + gn + " has ne [" + s + "], the metadata implies another shape");
    }
    Source s{&t, e.shape.size() == 2 ? e.shape[0] : 1, e.shape.back(), 0, 0};
    s.row_bytes = t.bytes / s.rows;
    if (cfg.arch == Arch::Llama) {
      if (e.role == Role::Q || e.role == Role::QBias) s.perm_heads = cfg.n_heads;
      if (e.role == Role::K || e.role == Role::KBias) s.perm_heads = cfg.n_kv_heads;
    }
    src.push_back(s);
  }
  for (auto& [name, t] : m.tensors())
    if (!used.count(name)) fail_input(origin + ": unexpected tensor " + name + " (not part of a " + cfg.arch_name() + " model)");

  std::vector<TensorSpec> specs;
  for (auto& e : expected)
    specs.push_back({e.name, recipe_format(opt.quant, e, cfg.tied_embeddings), e.shape});

  GgufTokenizerFiles tf = gguf_tokenizer_files(m);
  nlohmann::json meta;
  meta["config"] = config_to_json(cfg);
  meta["tokenizer"] = {{"json", tf.tokenizer_json}};
  meta["tokenizer_config"] = nlohmann::json::parse(tf.tokenizer_config_json);
  nlohmann::json gen = nlohmann::json::object();
  // Newer converters record the model's recommended sampling.
  if (const GgufValue* v = m.find("general.sampling.temp"); v && v->is_num()) gen["temperature"] = v->f;
  if (const GgufValue* v = m.find("general.sampling.top_p"); v && v->is_num()) gen["top_p"] = v->f;
  if (const GgufValue* v = m.find("general.sampling.top_k"); v && v->is_int()) gen["top_k"] = v->i;
  meta["generation"] = gen;
  std::string types;
  {
    std::map<std::string, uint64_t> n;
    for (auto& [name, t] : m.tensors()) n[ggml_type_info(uint32_t(t.type))->name]++;
    for (auto& [k, v] : n) types += (types.empty() ? "" : ", ") + k + " x" + std::to_string(v);
  }
  const GgufValue* gname = m.find("general.name");
  meta["provenance"] = {
      {"source", fs::absolute(origin).string()},
      {"source_format", "gguf"},
      {"source_tensor_types", types},
      {"source_name", gname && gname->type == GgufType::STRING ? gname->str : ""},
      {"r1_version", R1_VERSION},
      {"created_unix", int64_t(std::time(nullptr))},
      {"recipe",
       {{"quant", format_name(opt.quant)},
        {"blocks", format_name(opt.quant)},
        {"embed", format_name(recipe_format(opt.quant, "model.embed_tokens.weight", 2, uint64_t(cfg.hidden), cfg.tied_embeddings))},
        {"output", format_name(recipe_format(opt.quant, "lm_head.weight", 2, uint64_t(cfg.hidden), cfg.tied_embeddings))},
        {"group_size", kGroup},
        {"q4_scale", "per-group f16, least-squares search over the codebook"}}},
  };
  if (recipe_mix(opt.quant)) meta["provenance"]["recipe"]["mix"] = recipe_mix(opt.quant);

  write_packed(
      opt, specs, std::move(meta),
      [&](size_t i, uint64_t r0, uint64_t n, float* out) {
        const Source& s = src[i];
        if (!s.t->data) fail_input(origin + ": tensor " + s.t->name + " has no data");
        if (s.perm_heads <= 0) {
          gguf_dequantize(s.t->type, s.t->data + r0 * s.row_bytes, n * s.cols, out);
          return;
        }
        for (uint64_t r = 0; r < n; r++)
          gguf_dequantize(s.t->type, s.t->data + gguf_row(r0 + r, s.rows, s.perm_heads) * s.row_bytes, s.cols,
                          out + r * s.cols);
      },
      [&](size_t i) { m.release(*src[i].t); });
}

// ------------------------------------------------------------------------------ tokenizer

namespace {

// tokenizer.ggml.pre -> the pre-tokenizer of the matching Hugging Face tokenizer.json.
struct PreTok {
  const char* regex;
  bool nfc, ignore_merges;
};

const PreTok* pre_tokenizer(const std::string& pre) {
  static const PreTok qwen2{
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      true, false};
  static const PreTok llama3{
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      false, true};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return &qwen2;
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return &llama3;
  return nullptr;
}

// llama.cpp token types.
enum : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

}  // namespace

GgufTokenizerFiles gguf_tokenizer_files(const GgufModel& m) {
  using json = nlohmann::json;
  const std::string& origin = m.paths()[0];
  const std::string model = m.get_str("tokenizer.ggml.model");
  if (model != "gpt2")
    fail_input(origin + ": tokenizer.ggml.model '" + model + "' is not supported (r1 reads byte-level BPE, 'gpt2')");
  const std::string pre = m.find("tokenizer.ggml.pre") ? m.get_str("tokenizer.ggml.pre") : std::string("(none)");
  const PreTok* pt = pre_tokenizer(pre);
  if (!pt)
    fail_input(origin + ": tokenizer.ggml.pre '" + pre +
               "' is not a pre-tokenizer r1 knows (qwen2, deepseek-r1-qwen, llama-bpe)");
  const GgufValue* toks = m.find("tokenizer.ggml.tokens");
  const GgufValue* merges = m.find("tokenizer.ggml.merges");
  const GgufValue* types = m.find("tokenizer.ggml.token_type");
  if (!toks || toks->type != GgufType::ARRAY || toks->elem != GgufType::STRING || toks->strs.empty())
    fail_input(origin + ": tokenizer.ggml.tokens is missing or not a list of strings");
  if (!merges || merges->type != GgufType::ARRAY || merges->elem != GgufType::STRING)
    fail_input(origin + ": tokenizer.ggml.merges is missing or not a list of strings");
  if (types && (types->type != GgufType::ARRAY || types->ints.size() != toks->strs.size()))
    fail_input(origin + ": tokenizer.ggml.token_type does not match the token list");
  const size_t n = toks->strs.size();
  if (n > (size_t(1) << 22)) fail_input(origin + ": tokenizer has too many tokens");

  json vocab = json::object(), added = json::array();
  for (size_t id = 0; id < n; id++) {
    const int64_t ty = types ? types->ints[id] : kNormal;
    const std::string& s = toks->strs[id];
    if (ty == kControl || ty == kUserDefined) {
      // Control tokens are special (left out when decoding without specials); user-defined
      // ones are ordinary added tokens such as <think>. Both are matched before the regex.
      added.push_back({{"id", id}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", ty == kControl}});
    } else if (ty != kUnused) {  // unused: llama.cpp's [PADn] fillers up to the embedding size
      vocab.emplace(s, id);      // keeps the first of duplicate strings
    }
  }
  json merge_list = json::array();
  for (auto& s : merges->strs) merge_list.push_back(s);

  auto token = [&](const char* key) -> std::string {
    const int64_t id = m.get_int(key, -1);
    return id >= 0 && size_t(id) < n ? toks->strs[size_t(id)] : std::string();
  };
  const std::string bos = token("tokenizer.ggml.bos_token_id"), eos = token("tokenizer.ggml.eos_token_id");
  const std::string pad = token("tokenizer.ggml.padding_token_id");
  const GgufValue* ab = m.find("tokenizer.ggml.add_bos_token");
  const bool add_bos = ab ? ab->is_int() && ab->i != 0 : !bos.empty();

  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  json tj = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", std::move(added)},
      {"normalizer", pt->nfc ? json{{"type", "NFC"}} : json(nullptr)},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", pt->regex}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level}}}},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
        {"ignore_merges", pt->ignore_merges}, {"vocab", std::move(vocab)}, {"merges", std::move(merge_list)}}},
  };
  if (add_bos && !bos.empty()) {
    const int64_t bid = m.get_int("tokenizer.ggml.bos_token_id");
    tj["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {bid}}, {"tokens", {bos}}}}}}};
  }
  json tc = {{"add_bos_token", add_bos}, {"add_eos_token", false}, {"clean_up_tokenization_spaces", false}};
  if (!bos.empty()) tc["bos_token"] = bos;
  if (!eos.empty()) tc["eos_token"] = eos;
  if (!pad.empty()) tc["pad_token"] = pad;
  if (m.find("tokenizer.chat_template")) tc["chat_template"] = m.get_str("tokenizer.chat_template");
  // Invalid UTF-8 in a hostile file must not escape as a JSON exception.
  try {
    return {tj.dump(), tc.dump()};
  } catch (const json::exception& e) {
    fail_input(origin + ": tokenizer metadata: " + e.what());
  }
}

}  // namespace r1
