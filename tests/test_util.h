// Shared helpers for tests: temporary directories, running the r1 binary, small file utilities,
// and reading/writing safetensors files (to build broken or synthetic checkpoints in C++, so that
// no test needs Python).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <immintrin.h>

#include "core/error.h"

extern char** environ;

namespace r1::test {

// The CPU's own half conversion (F16C), as an independent reference for r1's scalar one.
// (clang 14 has no _Float16 on x86.)
__attribute__((target("f16c"))) inline uint16_t hw_f32_to_f16(float x) {
  return uint16_t(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) inline float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

namespace fs = std::filesystem;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "r1test") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + tag + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed: " + tmpl);
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string fixture_model(const std::string& name) { return std::string(R1_FIXTURES) + "/models/" + name; }

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write(data.data(), std::streamsize(data.size()));
  if (!f) throw std::runtime_error("write failed: " + path);
}

inline nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(slurp(path)); }
inline void write_json(const std::string& path, const nlohmann::json& j) { write_file(path, j.dump(2)); }

// Copies every regular file of src into a new directory dst (flat, as checkpoints are).
inline void copy_dir(const std::string& src, const std::string& dst) {
  fs::create_directories(dst);
  for (auto& e : fs::directory_iterator(src))
    if (e.is_regular_file()) fs::copy_file(e.path(), fs::path(dst) / e.path().filename(), fs::copy_options::overwrite_existing);
}

// Files in dir whose names contain `part` (e.g. ".tmp.", ".r1m").
inline std::vector<std::string> files_containing(const std::string& dir, const std::string& part) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(part) != std::string::npos) out.push_back(e.path().filename().string());
  return out;
}

inline std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) {
    if (c == '\'') o += "'\\''";
    else o += c;
  }
  return o + "'";
}

inline size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  if (!s.empty() && s.back() != '\n') n++;
  return n;
}

// The message of the r1::Error that f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const r1::Error& e) {
    return e.what();
  }
  return "(no error)";
}

struct CliResult {
  int code = -1;       // exit status, or 128 + signal
  std::string out, err;
};

// Runs the r1 binary with the given arguments and `in` on stdin (none: /dev/null); stdout and
// stderr are captured through files in a private temp dir (not a tty, so no progress bars).
inline CliResult run_r1(const std::vector<std::string>& args, const std::string* in = nullptr) {
  TempDir io("r1cli");
  std::string cmd = shell_quote(R1_BIN);
  for (auto& a : args) cmd += " " + shell_quote(a);
  if (in) write_file(io / "in", *in);
  cmd += " <" + (in ? shell_quote(io / "in") : std::string("/dev/null")) + " >" + shell_quote(io / "out") + " 2>" +
         shell_quote(io / "err");
  int st = std::system(cmd.c_str());
  CliResult r;
  if (st != -1 && WIFEXITED(st)) r.code = WEXITSTATUS(st);
  else if (st != -1 && WIFSIGNALED(st)) r.code = 128 + WTERMSIG(st);
  r.out = slurp(io / "out");
  r.err = slurp(io / "err");
  return r;
}
inline CliResult run_r1_input(const std::vector<std::string>& args, const std::string& in) { return run_r1(args, &in); }

// Starts r1 in the background with stdout/stderr to the given files; returns its pid.
inline pid_t spawn_r1(const std::vector<std::string>& args, const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // The child must not inherit an ignored or blocked SIGINT from the test runner.
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, all;
  sigemptyset(&none);
  sigemptyset(&all);
  sigaddset(&all, SIGINT);
  sigaddset(&all, SIGTERM);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> argv_s{R1_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, R1_BIN, &fa, &at, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (rc != 0) throw std::runtime_error("posix_spawn failed: " + std::string(std::strerror(rc)));
  return pid;
}

// ------------------------------------------------------------------------------ safetensors

// A safetensors file split into its JSON header and its data payload.
struct StFile {
  nlohmann::json header;  // name -> {dtype, shape, data_offsets}; may hold __metadata__
  std::string payload;
};

inline StFile read_safetensors(const std::string& path) {
  std::string all = slurp(path);
  if (all.size() < 8) throw std::runtime_error(path + ": too small");
  uint64_t hlen;
  std::memcpy(&hlen, all.data(), 8);
  if (hlen > all.size() - 8) throw std::runtime_error(path + ": bad header length");
  StFile f;
  f.header = nlohmann::json::parse(all.substr(8, hlen));
  f.payload = all.substr(8 + hlen);
  return f;
}

inline void write_safetensors(const std::string& path, const StFile& f) {
  std::string h = f.header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';
  uint64_t hlen = h.size();
  std::string all(8, '\0');
  std::memcpy(all.data(), &hlen, 8);
  all += h;
  all += f.payload;
  write_file(path, all);
}

inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// A small synthetic Hugging Face checkpoint (config.json, BF16 safetensors shards + index,
// tokenizer files copied from a fixture), the C++ twin of scripts/make_synthetic_checkpoint.py.
struct SynthSpec {
  std::string arch = "Qwen2ForCausalLM";  // or LlamaForCausalLM
  int64_t hidden = 128, ffn = 256, layers = 2, heads = 4, kv_heads = 2, head_dim = 32, vocab = 8256;
  bool bias = true;  // q/k/v bias (always for Qwen2)
  int shards = 2;
  uint32_t seed = 1;
  float stddev = 0.02f;
};

inline void make_synthetic_checkpoint(const std::string& dir, const SynthSpec& s) {
  fs::create_directories(dir);
  const std::string tok_src = fixture_model("tiny-qwen2");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    fs::copy_file(fs::path(tok_src) / f, fs::path(dir) / f, fs::copy_options::overwrite_existing);
  nlohmann::json cfg = {
      {"architectures", {s.arch}},
      {"model_type", s.arch == "Qwen2ForCausalLM" ? "qwen2" : "llama"},
      {"hidden_size", s.hidden},
      {"intermediate_size", s.ffn},
      {"num_hidden_layers", s.layers},
      {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads},
      {"head_dim", s.head_dim},
      {"vocab_size", s.vocab},
      {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", false},
      {"bos_token_id", 8195},
      {"eos_token_id", 8192},
      {"torch_dtype", "bfloat16"},
  };
  if (s.arch != "Qwen2ForCausalLM") cfg["attention_bias"] = s.bias;
  write_json(dir + "/config.json", cfg);

  using Shape = std::vector<int64_t>;
  std::vector<std::pair<std::string, Shape>> tensors;
  const int64_t q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  tensors.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}});
  for (int64_t l = 0; l < s.layers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({p + "input_layernorm.weight", {s.hidden}});
    tensors.push_back({p + "self_attn.q_proj.weight", {q, s.hidden}});
    tensors.push_back({p + "self_attn.k_proj.weight", {kv, s.hidden}});
    tensors.push_back({p + "self_attn.v_proj.weight", {kv, s.hidden}});
    if (s.arch == "Qwen2ForCausalLM" || s.bias) {
      tensors.push_back({p + "self_attn.q_proj.bias", {q}});
      tensors.push_back({p + "self_attn.k_proj.bias", {kv}});
      tensors.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    tensors.push_back({p + "self_attn.o_proj.weight", {s.hidden, q}});
    tensors.push_back({p + "post_attention_layernorm.weight", {s.hidden}});
    tensors.push_back({p + "mlp.gate_proj.weight", {s.ffn, s.hidden}});
    tensors.push_back({p + "mlp.up_proj.weight", {s.ffn, s.hidden}});
    tensors.push_back({p + "mlp.down_proj.weight", {s.hidden, s.ffn}});
  }
  tensors.push_back({"model.norm.weight", {s.hidden}});
  tensors.push_back({"lm_head.weight", {s.vocab, s.hidden}});

  std::mt19937 rng(s.seed);
  std::normal_distribution<float> nd(0.0f, s.stddev);
  std::vector<StFile> shards(size_t(std::max(1, s.shards)));
  for (auto& sh : shards) sh.header = nlohmann::json::object();
  nlohmann::json wmap = nlohmann::json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < tensors.size(); i++) {
    size_t k = i * shards.size() / tensors.size();
    auto& [name, shape] = tensors[i];
    uint64_t n = 1;
    for (auto d : shape) n *= uint64_t(d);
    std::string bytes(n * 2, '\0');
    const bool norm = shape.size() == 1 && name.find("norm") != std::string::npos;
    for (uint64_t j = 0; j < n; j++) {
      uint16_t b = f32_to_bf16_bits(norm ? 1.0f + nd(rng) : nd(rng));
      std::memcpy(&bytes[j * 2], &b, 2);
    }
    StFile& sh = shards[k];
    uint64_t b0 = sh.payload.size();
    sh.payload += bytes;
    sh.header[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {b0, sh.payload.size()}}};
    std::string fname = "model-" + std::string(5 - std::to_string(k + 1).size(), '0') + std::to_string(k + 1) + "-of-" +
                        std::string(5 - std::to_string(shards.size()).size(), '0') + std::to_string(shards.size()) +
                        ".safetensors";
    wmap[name] = fname;
    total += bytes.size();
  }
  for (size_t k = 0; k < shards.size(); k++) {
    shards[k].header["__metadata__"] = {{"format", "pt"}};
    std::string fname = "model-" + std::string(5 - std::to_string(k + 1).size(), '0') + std::to_string(k + 1) + "-of-" +
                        std::string(5 - std::to_string(shards.size()).size(), '0') + std::to_string(shards.size()) +
                        ".safetensors";
    write_safetensors(dir + "/" + fname, shards[k]);
  }
  write_json(dir + "/model.safetensors.index.json", {{"metadata", {{"total_size", total}}}, {"weight_map", wmap}});
}

}  // namespace r1::test
