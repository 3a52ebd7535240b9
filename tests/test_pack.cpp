// r1 pack / info / verify on the fixture checkpoints: every --quant, the config as info reports
// it, exact unpacking of the float formats, clean refusals of broken checkpoints (one line, exit
// 2, no output or temporary left), SIGINT mid-pack, and a synthetic checkpoint whose shapes
// force the recipe's fallbacks.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <cmath>
#include <map>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "core/r1m.h"
#include "kernels/cpu/ref.h"
#include "quant/half.h"
#include "quant/pack.h"
#include "quant/safetensors.h"
#include "test_util.h"

using namespace r1;
using namespace r1::test;
using json = nlohmann::json;

namespace {

const char* kQuants[] = {"q4", "q5", "q8", "bf16", "f16", "f32"};

// Packed fixtures, cached for the life of the test process (each is packed at most once).
const std::string& packed(const std::string& model, const std::string& quant) {
  static TempDir dir("r1pack");
  static std::map<std::string, std::string> cache;
  const std::string key = model + "-" + quant;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const std::string out = dir / (key + ".r1m");
  CliResult r = run_r1({"pack", fixture_model(model), "-o", out, "--quant", quant});
  INFO("r1 pack " << model << " --quant " << quant << ": " << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("wrote ") != std::string::npos);  // the summary line
  CHECK(files_containing(dir.path(), ".tmp.").empty());
  return cache[key] = out;
}

// Compares `r1 info --json` with the checkpoint's config.json.
void check_info(const std::string& model, const std::string& quant, const std::string& path) {
  json hf = read_json(fixture_model(model) + "/config.json");
  CliResult r = run_r1({"info", "--json", path});
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  json info = json::parse(r.out);
  const json& c = info.at("config");
  const bool llama = hf["architectures"][0] == "LlamaForCausalLM";
  CHECK(c["arch"] == (llama ? "llama" : "qwen2"));
  CHECK(c["vocab_size"] == hf["vocab_size"]);
  CHECK(c["hidden_size"] == hf["hidden_size"]);
  CHECK(c["intermediate_size"] == hf["intermediate_size"]);
  CHECK(c["num_layers"] == hf["num_hidden_layers"]);
  CHECK(c["num_heads"] == hf["num_attention_heads"]);
  CHECK(c["num_kv_heads"] == hf["num_key_value_heads"]);
  const int64_t head_dim = hf.contains("head_dim") ? hf["head_dim"].get<int64_t>()
                                                   : hf["hidden_size"].get<int64_t>() / hf["num_attention_heads"].get<int64_t>();
  CHECK(c["head_dim"] == head_dim);
  // K and V of every layer per cached position: 2 bytes a value in f16, 1 + 4/32 in q8
  const int64_t kv_values = 2 * hf["num_hidden_layers"].get<int64_t>() * hf["num_key_value_heads"].get<int64_t>() * head_dim;
  CHECK(info["kv_bytes_per_token"]["f16"] == kv_values * 2);
  CHECK(info["kv_bytes_per_token"]["f32"] == kv_values * 4);
  CHECK(info["kv_bytes_per_token"]["q8"] == kv_values + kv_values / 32 * 4);
  CHECK(c["max_position_embeddings"] == hf["max_position_embeddings"]);
  const json& rp = hf.contains("rope_parameters") ? hf["rope_parameters"] : hf;
  CHECK(c["rope_theta"].get<double>() == rp["rope_theta"].get<double>());
  // eps is stored as a float
  CHECK(c["rms_norm_eps"].get<double>() == double(float(hf["rms_norm_eps"].get<double>())));
  CHECK(c["qkv_bias"] == (llama ? hf.value("attention_bias", false) : true));
  CHECK(c["tie_word_embeddings"] == hf.value("tie_word_embeddings", false));
  CHECK(c["bos_token_id"] == hf["bos_token_id"]);
  CHECK(c["eos_token_ids"] == json::array({hf["eos_token_id"]}));
  if (rp.value("rope_type", std::string("default")) == "llama3") {
    REQUIRE(c["rope_scaling"].is_object());
    CHECK(c["rope_scaling"]["type"] == "llama3");
    CHECK(c["rope_scaling"]["factor"].get<double>() == rp["factor"].get<double>());
    CHECK(c["rope_scaling"]["low_freq_factor"].get<double>() == rp["low_freq_factor"].get<double>());
    CHECK(c["rope_scaling"]["high_freq_factor"].get<double>() == rp["high_freq_factor"].get<double>());
    CHECK(c["rope_scaling"]["original_max_position_embeddings"] == rp["original_max_position_embeddings"]);
  } else {
    CHECK(c["rope_scaling"].is_null());
  }
  CHECK(info["provenance"]["recipe"]["quant"] == quant);
  CHECK(info["chat_template"] == true);
  // Parameter count: exactly the checkpoint's.
  json idx = read_json(fixture_model(model) + "/model.safetensors.index.json");
  if (idx["metadata"].contains("total_parameters")) CHECK(info["parameters"] == idx["metadata"]["total_parameters"]);
  const double bpw = info["bits_per_weight"]["blocks"].get<double>();
  // What the recipe gives each block matrix, weighted by its size (q4 keeps some of them in q8).
  Format qf;
  REQUIRE(parse_format(quant, &qf));
  double bits = 0, weights = 0;
  const Safetensors src = Safetensors::open(fixture_model(model));
  for (auto& [name, t] : src.tensors()) {
    if (name.rfind("model.layers.", 0) != 0 || t.shape.size() != 2) continue;
    const double n = double(t.shape[0]) * double(t.shape[1]);
    bits += n * bits_per_weight(recipe_format(qf, name, 2, t.shape[1], false));
    weights += n;
  }
  REQUIRE(weights > 0);
  const double want = bits / weights;
  if (quant == "q4") CHECK(want > 4.5);  // the mixed recipe
  CHECK(bpw == Approx(want).epsilon(0.01));
  // The human-readable form works too.
  CliResult h = run_r1({"info", path});
  CHECK(h.code == 0);
  CHECK(h.out.find(llama ? "llama" : "qwen2") != std::string::npos);
}

// Unpacks every tensor and compares it with the BF16 source: bit-exact for f32 and bf16 (and
// for every 1-D tensor), exact for f16 wherever the value is representable (else the correctly
// rounded half), bounded relative error for q8/q4.
void check_values(const std::string& model, Format quant, const std::string& path) {
  auto f = R1File::open(path);
  Safetensors st = Safetensors::open(fixture_model(model));
  uint64_t f16_inexact = 0, f16_total = 0;
  for (const TensorInfo& t : f->tensors()) {
    INFO(t.name << " " << format_name(t.fmt));
    const StTensor* s = st.find(t.name);
    REQUIRE(s);
    REQUIRE(s->dtype == StDtype::BF16);
    REQUIRE(s->shape == t.shape);
    const uint64_t n = t.numel();
    std::vector<uint16_t> src(n);
    std::memcpy(src.data(), s->data, n * 2);
    Format want = recipe_format(quant, t.name, t.shape.size(), t.cols(), false);
    REQUIRE(t.fmt == want);
    switch (t.fmt) {
      case Format::F32:
        for (uint64_t i = 0; i < n; i++) {
          uint32_t u;
          std::memcpy(&u, t.data + 4 * i, 4);
          REQUIRE(u == uint32_t(src[i]) << 16);
        }
        break;
      case Format::BF16:
        REQUIRE(std::memcmp(t.data, src.data(), n * 2) == 0);
        break;
      case Format::F16:
        for (uint64_t i = 0; i < n; i++) {
          uint16_t h;
          std::memcpy(&h, t.data + 2 * i, 2);
          const float x = bf16_to_f32(src[i]);
          const float r = r1::test::hw_f16_to_f32(r1::test::hw_f32_to_f16(x));
          if (r == x) REQUIRE(f16_to_f32(h) == x);
          else f16_inexact++;
          REQUIRE(f16_to_f32(h) == r);
          f16_total++;
        }
        break;
      case Format::Q8:
      case Format::Q5:
      case Format::Q4: {
        WeightView v = t.view();
        std::vector<float> row(t.cols());
        double e = 0, r2 = 0;
        for (uint64_t r = 0; r < t.rows(); r++) {
          ref::dequant_row(v, int64_t(r), row.data());
          for (uint64_t c = 0; c < t.cols(); c++) {
            double x = bf16_to_f32(src[r * t.cols() + c]), d = x - row[c];
            e += d * d;
            r2 += x * x;
          }
        }
        const double rel = std::sqrt(e / r2);
        CHECK(rel < (t.fmt == Format::Q8 ? 0.01 : t.fmt == Format::Q5 ? 0.08 : 0.15));
        // the pack's own report in the metadata agrees
        const json& rr = f->meta()["provenance"]["rel_rms"];
        REQUIRE(rr.contains(t.name));
        CHECK(rr[t.name].get<double>() == Approx(rel).epsilon(1e-3));
        break;
      }
    }
  }
  if (quant == Format::F16) {
    // Trained weights sit well inside f16's range: all but a handful of values are exact.
    CHECK(f16_total > 0);
    CHECK(double(f16_inexact) <= 0.001 * double(f16_total));
  }
}

void check_model(const std::string& model) {
  for (const char* q : kQuants) {
    SECTION(std::string("--quant ") + q) {
      const std::string& p = packed(model, q);
      check_info(model, q, p);
      CliResult v = run_r1({"verify", p});
      CHECK(v.code == 0);
      CHECK(v.out.find(": ok") != std::string::npos);
      Format fmt;
      REQUIRE(parse_format(q, &fmt));
      check_values(model, fmt, p);
    }
  }
}

// Runs `r1 pack src -o out/model.r1m` and checks a clean refusal: exit 2, one line on stderr
// containing `reason`, nothing left in the (otherwise empty) output directory.
void expect_refusal(const std::string& src, const std::string& reason, const std::string& quant = "q8") {
  TempDir out("r1out");
  CliResult r = run_r1({"pack", src, "-o", out / "model.r1m", "--quant", quant, "-q"});
  INFO("stderr: " << r.err);
  CHECK(r.code == 2);
  CHECK(count_lines(r.err) == 1);
  CHECK(r.err.rfind("r1 pack: ", 0) == 0);
  CHECK(r.err.find(reason) != std::string::npos);
  std::vector<std::string> left;
  for (auto& e : fs::directory_iterator(out.path())) left.push_back(e.path().filename().string());
  CHECK(left.empty());
}

// A private copy of tiny-qwen2 to break.
struct BrokenCopy {
  TempDir tmp{"r1broken"};
  std::string dir = tmp / "ckpt";
  BrokenCopy() { copy_dir(fixture_model("tiny-qwen2"), dir); }
  std::string shard_of(const std::string& tensor) const {
    return dir + "/" + read_json(dir + "/model.safetensors.index.json")["weight_map"][tensor].get<std::string>();
  }
  void edit_shard(const std::string& tensor, const std::function<void(StFile&)>& edit) const {
    std::string p = shard_of(tensor);
    StFile f = read_safetensors(p);
    edit(f);
    write_safetensors(p, f);
  }
  void edit_index(const std::function<void(json&)>& edit) const {
    json j = read_json(dir + "/model.safetensors.index.json");
    edit(j);
    write_json(dir + "/model.safetensors.index.json", j);
  }
  void edit_config(const std::function<void(json&)>& edit) const {
    json j = read_json(dir + "/config.json");
    edit(j);
    write_json(dir + "/config.json", j);
  }
};

}  // namespace

TEST_CASE("pack: tiny-qwen2 at every quant (info, verify, exact unpack)", "[pack]") { check_model("tiny-qwen2"); }
TEST_CASE("pack: tiny-llama3 at every quant (info, verify, exact unpack)", "[pack]") { check_model("tiny-llama3"); }
TEST_CASE("pack: tiny-qwen2-py at every quant (info, verify, exact unpack)", "[pack]") { check_model("tiny-qwen2-py"); }

TEST_CASE("pack: broken checkpoints are refused with one line and no output", "[pack]") {
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  SECTION("unknown architecture") {
    BrokenCopy b;
    b.edit_config([](json& c) { c["architectures"] = {"MistralForCausalLM"}; c["model_type"] = "mistral"; });
    expect_refusal(b.dir, "unknown architecture 'MistralForCausalLM'");
  }
  SECTION("config with a field of the wrong type") {
    BrokenCopy b;
    b.edit_config([](json& c) { c["hidden_size"] = "384"; });
    expect_refusal(b.dir, "hidden_size");
  }
  SECTION("config values that do not fit their C++ types (found by fuzzing)") {
    BrokenCopy b;
    b.edit_config([](json& c) { c["eos_token_id"] = 4294967296 + 2; });  // wraps to 2 as int32
    expect_refusal(b.dir, "token id out of range");
    BrokenCopy b2;
    b2.edit_config([](json& c) { c["rms_norm_eps"] = 1e300; });
    expect_refusal(b2.dir, "rms_norm_eps");
  }
  SECTION("config out of range") {
    BrokenCopy b;
    b.edit_config([](json& c) { c["num_key_value_heads"] = 3; });
    expect_refusal(b.dir, "heads");
  }
  SECTION("malformed config.json") {
    BrokenCopy b;
    write_file(b.dir + "/config.json", "{\"architectures\": [\"Qwen2ForCausalLM\"], ");
    expect_refusal(b.dir, "config.json: malformed JSON");
  }
  SECTION("unreadable config.json") {
    BrokenCopy b;
    fs::remove(b.dir + "/config.json");
    if (::geteuid() == 0) {
      fs::create_directory(b.dir + "/config.json");  // root reads any file: use a directory
    } else {
      write_file(b.dir + "/config.json", "{}");
      fs::permissions(b.dir + "/config.json", fs::perms::none);
    }
    expect_refusal(b.dir, "config.json: cannot read");
  }
  SECTION("no config.json") {
    BrokenCopy b;
    fs::remove(b.dir + "/config.json");
    expect_refusal(b.dir, "no config.json");
  }
  SECTION("missing tensor") {
    BrokenCopy b;
    b.edit_shard(up, [&](StFile& f) { f.header.erase(up); });
    b.edit_index([&](json& j) { j["weight_map"].erase(up); });
    expect_refusal(b.dir, "missing tensor " + up);
  }
  SECTION("tensor listed in the index but absent from its shard") {
    BrokenCopy b;
    b.edit_shard(up, [&](StFile& f) { f.header.erase(up); });
    expect_refusal(b.dir, up);
  }
  SECTION("extra tensor") {
    BrokenCopy b;
    const std::string norm = "model.layers.1.input_layernorm.weight";
    b.edit_shard(norm, [&](StFile& f) { f.header["model.layers.1.mlp.extra.weight"] = f.header[norm]; });
    b.edit_index([&](json& j) { j["weight_map"]["model.layers.1.mlp.extra.weight"] = j["weight_map"][norm]; });
    expect_refusal(b.dir, "unexpected tensor model.layers.1.mlp.extra.weight");
  }
  SECTION("shape mismatch") {
    BrokenCopy b;
    b.edit_shard(up, [&](StFile& f) {
      auto s = f.header[up]["shape"];
      f.header[up]["shape"] = {s[1], s[0]};
    });
    expect_refusal(b.dir, "tensor " + up + " has shape [256, 512]");
  }
  SECTION("unsupported dtype") {
    BrokenCopy b;
    const std::string norm = "model.layers.0.input_layernorm.weight";
    b.edit_shard(norm, [&](StFile& f) { f.header[norm]["dtype"] = "I16"; });
    expect_refusal(b.dir, "unsupported dtype I16");
  }
  SECTION("malformed index") {
    BrokenCopy b;
    write_file(b.dir + "/model.safetensors.index.json", "{\"weight_map\": {\"a\": ");
    expect_refusal(b.dir, "model.safetensors.index.json: malformed JSON at byte");
  }
  SECTION("index naming a missing shard") {
    BrokenCopy b;
    b.edit_index([&](json& j) { j["weight_map"][up] = "model-00009-of-00009.safetensors"; });
    expect_refusal(b.dir, "model-00009-of-00009.safetensors");
  }
  SECTION("index with a path outside the checkpoint") {
    BrokenCopy b;
    b.edit_index([&](json& j) { j["weight_map"][up] = "../model-00001-of-00002.safetensors"; });
    expect_refusal(b.dir, "plain file names");
  }
  SECTION("truncated safetensors (data)") {
    BrokenCopy b;
    const std::string p = b.shard_of(up);
    fs::resize_file(p, fs::file_size(p) / 2);
    expect_refusal(b.dir, "truncated");
  }
  SECTION("truncated safetensors (header)") {
    BrokenCopy b;
    const std::string p = b.shard_of(up);
    fs::resize_file(p, 100);
    expect_refusal(b.dir, "truncated");
  }
  SECTION("truncated safetensors (length prefix)") {
    BrokenCopy b;
    const std::string p = b.shard_of(up);
    fs::resize_file(p, 5);
    expect_refusal(b.dir, "too small");
  }
  SECTION("safetensors header that is not JSON") {
    BrokenCopy b;
    const std::string p = b.shard_of(up);
    std::string s = slurp(p);
    s[8] = '[';
    s[9] = '"';
    write_file(p, s);
    expect_refusal(b.dir, "header: malformed JSON at byte");
  }
  SECTION("byte size not matching the shape") {
    BrokenCopy b;
    b.edit_shard(up, [&](StFile& f) { f.header[up]["shape"] = {1024, 383}; });
    expect_refusal(b.dir, "does not match shape");
  }
  SECTION("NaN weight") {
    BrokenCopy b;
    b.edit_shard(up, [&](StFile& f) {
      uint64_t off = f.header[up]["data_offsets"][0].get<uint64_t>();
      uint16_t nan = 0x7fc0;
      std::memcpy(&f.payload[off + 2 * 1000], &nan, 2);
    });
    expect_refusal(b.dir, "tensor " + up + ", element 1000 is NaN", "bf16");
  }
  SECTION("weight beyond f16's range") {
    BrokenCopy b;
    b.edit_shard(up, [&](StFile& f) {
      uint64_t off = f.header[up]["data_offsets"][0].get<uint64_t>();
      uint16_t big = 0x4800;  // 131072
      std::memcpy(&f.payload[off + 2 * 77], &big, 2);
    });
    expect_refusal(b.dir, "out of range for f16", "f16");
    TempDir out("r1out");  // bf16 holds it
    CliResult r = run_r1({"pack", b.dir, "-o", out / "m.r1m", "--quant", "bf16", "-q"});
    CHECK(r.code == 0);
  }
  SECTION("no tokenizer") {
    BrokenCopy b;
    fs::remove(b.dir + "/tokenizer.json");
    expect_refusal(b.dir, "no tokenizer");
  }
  SECTION("not a checkpoint directory") {
    BrokenCopy b;
    expect_refusal(b.dir + "/config.json", "not a directory");
  }
  SECTION("output directory that does not exist") {
    TempDir out("r1out");
    CliResult r = run_r1({"pack", fixture_model("tiny-qwen2"), "-o", out / "no/such/m.r1m", "--quant", "bf16", "-q"});
    CHECK(r.code == 2);
    CHECK(count_lines(r.err) == 1);
  }
}

TEST_CASE("pack: heads that do not divide the hidden size or too few positions are refused by name", "[pack]") {
  {
    BrokenCopy b;  // 256 / 3 heads: once reported as "head_dim must be even"
    b.edit_config([](json& c) { c["num_attention_heads"] = 3; c["num_key_value_heads"] = 1; });
    expect_refusal(b.dir, "config.json: hidden_size 256 is not a multiple of num_attention_heads 3 (and there is no head_dim)");
  }
  {
    BrokenCopy b;  // once packed, then every run said "raise --ctx"
    b.edit_config([](json& c) { c["max_position_embeddings"] = 1; });
    expect_refusal(b.dir, "max_position_embeddings 1 is out of range (64 to 16777216)");
  }
  {
    BrokenCopy b;  // an explicit head_dim need not divide anything
    b.edit_config([](json& c) { c["num_attention_heads"] = 3; c["num_key_value_heads"] = 1; c["head_dim"] = 64; });
    expect_refusal(b.dir, "shape");  // the fixture's tensors are for 4 heads: refused later, for that
  }
}

TEST_CASE("pack: SIGINT leaves neither an .r1m nor a temporary file", "[pack]") {
  TempDir out("r1int");
  const std::string dst = out / "m.r1m";
  auto leftovers = [&] {
    std::vector<std::string> v;
    for (auto& e : fs::directory_iterator(out.path())) {
      std::string n = e.path().filename().string();
      if (n != "out" && n != "err") v.push_back(n);
    }
    return v;
  };
  auto wait_exit = [](pid_t pid) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
  };

  SECTION("signal at once") {
    pid_t pid = spawn_r1({"pack", fixture_model("tiny-qwen2"), "-o", dst, "--quant", "q8", "-q"}, out / "out", out / "err");
    ::kill(pid, SIGINT);
    int st = wait_exit(pid);
    // Either the signal arrived before the work (killed) or during it (cleanup, then killed).
    CHECK(WIFSIGNALED(st));
    CHECK(leftovers().empty());
  }
  SECTION("signal while the output is being written") {
    // tiny-qwen2-py at q4 on one thread takes long enough to be interrupted mid-write.
    pid_t pid = spawn_r1({"pack", fixture_model("tiny-qwen2-py"), "-o", dst, "--quant", "q4", "--threads", "1", "-q"},
                         out / "out", out / "err");
    bool seen = false;
    const auto t0 = std::chrono::steady_clock::now();
    int st = 0;
    bool exited = false;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      if (!files_containing(out.path(), "m.r1m.tmp.").empty()) {
        seen = true;
        break;
      }
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE_FALSE(exited);
    REQUIRE(seen);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let it write some tensors
    ::kill(pid, SIGINT);
    st = wait_exit(pid);
    CHECK(WIFSIGNALED(st));
    if (WIFSIGNALED(st)) CHECK(WTERMSIG(st) == SIGINT);
    CHECK(leftovers().empty());
  }
}

TEST_CASE("pack: synthetic checkpoints with fallback shapes and llama biases", "[pack]") {
  TempDir tmp("r1syn");
  SECTION("qwen2, hidden not a multiple of the group: those matrices fall back to bf16") {
    SynthSpec s;
    s.hidden = 80;  // q/k/v/gate/up/embed/lm_head have 80 columns
    s.heads = 4;
    s.kv_heads = 2;
    s.head_dim = 20;
    s.ffn = 160;    // down_proj has 160 columns: stays q4
    s.shards = 3;
    make_synthetic_checkpoint(tmp / "ckpt", s);
    const std::string p = tmp / "m.r1m";
    CliResult r = run_r1({"pack", tmp / "ckpt", "-o", p, "--quant", "q4", "-q"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    auto f = R1File::open(p);
    CHECK(f->get("model.layers.0.self_attn.q_proj.weight").fmt == Format::BF16);
    CHECK(f->get("model.layers.0.mlp.up_proj.weight").fmt == Format::BF16);
    CHECK(f->get("model.layers.1.mlp.down_proj.weight").fmt == Format::Q4);
    CHECK(f->get("lm_head.weight").fmt == Format::BF16);
    CHECK(f->get("model.layers.1.self_attn.k_proj.bias").fmt == Format::F32);
    CHECK(f->verify() == -1);
    {
      Safetensors st = Safetensors::open(tmp / "ckpt");
      const TensorInfo& t = f->get("model.layers.0.self_attn.q_proj.weight");
      CHECK(std::memcmp(t.data, st.find(t.name)->data, t.bytes) == 0);
    }
    Config c = config_from_json(f->meta()["config"]);
    CHECK(c.hidden == 80);
    CHECK(c.head_dim == 20);
    CHECK(c.qkv_bias);
  }
  SECTION("llama with attention_bias, q8") {
    SynthSpec s;
    s.arch = "LlamaForCausalLM";
    s.bias = true;
    s.hidden = 128;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = 64;
    s.ffn = 192;
    s.shards = 1;
    make_synthetic_checkpoint(tmp / "ckpt", s);
    const std::string p = tmp / "m.r1m";
    CliResult r = run_r1({"pack", tmp / "ckpt", "-o", p, "--quant", "q8", "-q"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    auto f = R1File::open(p);
    Config c = config_from_json(f->meta()["config"]);
    CHECK(c.arch == Arch::Llama);
    CHECK(c.qkv_bias);
    CHECK(f->find("model.layers.1.self_attn.v_proj.bias") != nullptr);
    CHECK(f->get("model.layers.0.mlp.down_proj.weight").fmt == Format::Q8);
    CliResult v = run_r1({"verify", p});
    CHECK(v.code == 0);
    // The same checkpoint without the biases in config: the bias tensors are then extra.
    json cfg = read_json(tmp / "ckpt/config.json");
    cfg["attention_bias"] = false;
    write_json(tmp / "ckpt/config.json", cfg);
    expect_refusal(tmp / "ckpt", "unexpected tensor model.layers.0.self_attn.");
  }
}
