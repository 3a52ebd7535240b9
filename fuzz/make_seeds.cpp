// Writes seed corpora for the fuzzers from the fixtures: small valid inputs of every format, so
// the fuzzers start from files the parsers accept and mutate from there.
//   r1_fuzz_seeds OUTDIR
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.h"
#include "core/r1m.h"
#include "core/schema.h"
#include "core/snapshot.h"
#include "snapshot_cache.h"
#include "quant/quantize.h"

namespace fs = std::filesystem;

static std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
static void put(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

// JSON nested `depth` levels deep ("[[[...]]]"): every JSON input gets one of 100,000 levels, a
// 200 KB line that overflowed the stack before parse_json's depth limit.
static std::string deep(size_t depth = 100000) { return std::string(depth, '[') + std::string(depth, ']'); }

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  fs::path out(argv[1]);
  fs::path fx(R1_FIXTURES);
  const char* models[] = {"tiny-qwen2", "tiny-llama3", "tiny-qwen2-py"};

  // config.json
  for (auto m : models) put(out / "config" / m, slurp(fx / "models" / m / "config.json"));
  put(out / "config" / "deep", "{\"architectures\": " + deep() + "}");

  // tokenizer.json cut to 300 tokens (and the merges among them) + NUL + tokenizer_config.json
  for (auto m : {"tiny-qwen2", "tiny-llama3"}) {
    auto tj = nlohmann::json::parse(slurp(fx / "models" / m / "tokenizer.json"));
    nlohmann::json vocab = nlohmann::json::object();
    for (auto& [k, v] : tj["model"]["vocab"].items())
      if (v.get<int>() < 300) vocab[k] = v;
    nlohmann::json merges = nlohmann::json::array();
    for (auto& mg : tj["model"]["merges"]) {
      std::string s = mg.is_string() ? mg.get<std::string>() : mg[0].get<std::string>() + " " + mg[1].get<std::string>();
      auto sp = s.find(' ');
      std::string a = s.substr(0, sp), b = s.substr(sp + 1);
      if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(mg);
    }
    tj["model"]["vocab"] = vocab;
    tj["model"]["merges"] = merges;
    auto added = nlohmann::json::array();
    for (auto& a : tj["added_tokens"]) {
      if (added.size() >= 6) break;
      a["id"] = 300 + int(added.size());
      added.push_back(a);
    }
    tj["added_tokens"] = added;
    tj["post_processor"] = nullptr;
    std::string cfg = slurp(fx / "models" / m / "tokenizer_config.json");
    put(out / "tokenizer_json" / m, tj.dump() + std::string(1, '\0') + cfg);
    if (std::string(m) == "tiny-qwen2") {
      put(out / "tokenizer_json" / "deep", "{\"normalizer\": " + deep() + "}" + std::string(1, '\0') + cfg);
      put(out / "tokenizer_json" / "deep-config", tj.dump() + std::string(1, '\0') + "{\"bos_token\": " + deep() + "}");
    }
  }

  // template: tokenizer_config.json + NUL + messages
  for (auto m : {"tiny-qwen2", "tiny-llama3"}) {
    auto ref = nlohmann::json::parse(slurp(fx / "models" / m / "reference.json"));
    std::string cfg = slurp(fx / "models" / m / "tokenizer_config.json");
    int i = 0;
    for (auto& c : ref["cases"]) put(out / "template" / (std::string(m) + std::to_string(i++)), cfg + std::string(1, '\0') + c["messages"].dump());
  }
  {
    std::string cfg = slurp(fx / "models" / "tiny-qwen2" / "tokenizer_config.json");
    put(out / "template" / "deep-messages", cfg + std::string(1, '\0') + "[{\"role\": \"user\", \"content\": " + deep() + "}]");
    put(out / "template" / "deep-config", "{\"chat_template\": " + deep() + "}" + std::string(1, '\0') + "[]");
  }

  // tokenize: text cases and slices of code
  {
    std::ifstream cases(fx / "tokenizer-cases.jsonl");
    std::string line;
    int i = 0;
    while (std::getline(cases, line))
      if (i < 40) put(out / "tokenize" / ("case" + std::to_string(i++)), nlohmann::json::parse(line)["text"].get<std::string>());
    std::string code = slurp(fx / "heldout.py.txt");
    for (int k = 0; k < 8; k++) put(out / "tokenize" / ("code" + std::to_string(k)), code.substr(size_t(k) * 997, 600));
  }

  // batch input: JSONL records (prompt / messages / per-record options) and plain text
  put(out / "batch_input" / "jsonl",
      "{\"id\": 1, \"prompt\": \"What is 2+2?\"}\n"
      "{\"id\": \"q-2\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
      "{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 8, \"temperature\": 0.7, \"seed\": 3}\n");
  put(out / "batch_input" / "text", "first prompt\nsecond prompt\n\nthird \xc3\xa9\n");
  put(out / "batch_input" / "deep", "{\"id\": 1, \"messages\": " + deep() + "}\n");

  // r1 serve's request bodies
  put(out / "openai_request" / "chat",
      R"({"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],)"
      R"("max_tokens":8,"temperature":0.7,"top_p":0.9,"top_k":4,"min_p":0.1,"seed":3,"stop":["\n\n","END"],"stream":true,)"
      R"("stream_options":{"include_usage":true},"think_budget":5,"n":1,"user":"x"})");
  put(out / "openai_request" / "completion", R"({"prompt":"def main():\n","max_tokens":16,"stop":"return"})");
  put(out / "openai_request" / "deep", "{\"messages\": " + deep() + "}");

  // a small .r1m: a 2-layer model of hidden 64 in mixed formats
  {
    r1::Config c;
    c.arch = r1::Arch::Qwen2;
    c.vocab_size = 96;
    c.hidden = 64;
    c.intermediate = 96;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 32;
    c.max_pos = 128;
    c.qkv_bias = true;
    c.bos_id = 1;
    c.eos_ids = {2};
    std::vector<r1::TensorSpec> specs;
    const r1::Format cycle[] = {r1::Format::Q4, r1::Format::Q8, r1::Format::BF16, r1::Format::F16, r1::Format::F32};
    int k = 0;
    for (auto& e : r1::model_tensors(c))
      specs.push_back({e.name, e.shape.size() == 1 ? r1::Format::F32 : cycle[k++ % 5], e.shape});
    fs::create_directories(out / "r1m");
    const std::string meta = nlohmann::json{{"config", r1::config_to_json(c)}, {"tokenizer", {{"json", "{}"}}}}.dump();
    // the same file with metadata nested 100,000 deep
    for (const std::string& m : {meta, meta.substr(0, meta.size() - 1) + ", \"deep\": " + deep() + "}"}) {
      r1::R1Writer w((out / "r1m" / (m == meta ? "small.r1m" : "deep-meta.r1m")).string(), specs);
      for (size_t i = 0; i < specs.size(); i++) {
        uint64_t rows = specs[i].shape.size() == 2 ? specs[i].shape[0] : 1, cols = specs[i].shape.back();
        std::vector<float> f(rows * cols);
        for (size_t j = 0; j < f.size(); j++) f[j] = float((j * 2654435761u) % 1000) / 1000.0f - 0.5f;
        std::vector<uint8_t> b(r1::tensor_bytes(specs[i].fmt, rows, cols));
        r1::quantize_matrix(specs[i].fmt, f.data(), int64_t(rows), int64_t(cols), b.data());
        w.write_tensor(i, b.data(), b.size());
      }
      w.finish_json_text(m);
    }
    // safetensors with the same shapes, BF16 and F32
    nlohmann::json hdr = nlohmann::json::object();
    std::string payload;
    for (size_t i = 0; i < 6 && i < specs.size(); i++) {
      uint64_t n = 1;
      for (auto d : specs[i].shape) n *= d;
      const bool f32 = i % 2;
      uint64_t bytes = n * (f32 ? 4 : 2);
      hdr[specs[i].name] = {{"dtype", f32 ? "F32" : "BF16"}, {"shape", specs[i].shape}, {"data_offsets", {payload.size(), payload.size() + bytes}}};
      payload += std::string(bytes, char(0x3c));
    }
    std::string h = hdr.dump();
    uint64_t hl = h.size();
    put(out / "safetensors" / "small.safetensors", std::string(reinterpret_cast<char*>(&hl), 8) + h + payload);
    h = h.substr(0, h.size() - 1) + ", \"__metadata__\": " + deep() + "}";
    hl = h.size();
    put(out / "safetensors" / "deep.safetensors", std::string(reinterpret_cast<char*>(&hl), 8) + h + payload);
  }

  // chat snapshots of 5 tokens, one per KV format, in the shape fuzz_snapshot loads them into
  for (r1::KvFormat f : {r1::KvFormat::F16, r1::KvFormat::F32, r1::KvFormat::Q8}) {
    const r1::KVCache kv = r1fuzz::snapshot_cache(f, 0x3c);
    r1::Snapshot s;
    s.model_id = r1fuzz::kSnapshotModelId;
    s.shape = r1::kv_shape(kv);
    s.conversation = R"({"system":"","turns":[{"role":"user","content":"hi"}]})";
    s.tokens = {100, 101, 102, 103, 104};
    s.kv = r1::kv_extract(kv, 5);
    put(out / "snapshot" / r1::kv_format_name(f), r1::encode_snapshot(s));
    if (f == r1::KvFormat::F16) {
      s.conversation = R"({"system":"","turns":)" + deep() + "}";
      put(out / "snapshot" / "deep-conversation", r1::encode_snapshot(s));
    }
  }
  return 0;
}
