// Packed copies of the fixture checkpoints, made once per test process in a temp directory.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quant/pack.h"

namespace r1test {

// R1_FIXTURES_DIR overrides the build tree's path (test binaries carried to another machine).
inline std::string fixtures_root() {
  const char* e = getenv("R1_FIXTURES_DIR");
  return e && *e ? e : R1_FIXTURES;
}
inline std::string fixture_dir(const std::string& model) { return fixtures_root() + "/models/" + model; }

inline const std::string& temp_root() {
  // Never destroyed: the atexit cleanup below runs after static destructors would have run.
  static const std::string* dir = [] {
    auto* t = new std::string(std::filesystem::temp_directory_path().string() + "/r1test.XXXXXX");
    if (!mkdtemp(t->data())) throw std::runtime_error("mkdtemp failed");
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(*dir, ec); });
    return t;
  }();
  return *dir;
}

// Path of fixture `model` packed at `quant` (packed on first use).
inline std::string packed(const std::string& model, const std::string& quant) {
  static std::mutex mu;
  static std::map<std::string, std::string> done;
  std::lock_guard<std::mutex> lk(mu);
  std::string key = model + "-" + quant;
  auto it = done.find(key);
  if (it != done.end()) return it->second;
  r1::PackOptions o;
  o.src = fixture_dir(model);
  o.out = temp_root() + "/" + key + ".r1m";
  if (!r1::parse_format(quant, &o.quant)) throw std::runtime_error("bad quant");
  r1::pack_checkpoint(o);
  done[key] = o.out;
  return o.out;
}

// Index of the largest logit (the first on ties).
inline int32_t argmax(const float* x, int64_t n) {
  int64_t b = 0;
  for (int64_t i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return int32_t(b);
}

inline nlohmann::json reference(const std::string& model) {
  std::ifstream f(fixture_dir(model) + "/reference.json");
  return nlohmann::json::parse(f);
}

inline std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  std::vector<float> v(size_t(f.tellg()) / 4);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * 4));
  return v;
}

// A forward pass's logits ([n, V], every prompt position) against a fixture's reference rows
// (`want`: [rows, V], the last `rows` positions): the worst row's max|error| / max|logit|.
inline double worst_logit_error(const float* logits, int64_t n, const std::vector<float>& want, int64_t rows, int64_t V) {
  double worst = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float* mine = logits + (n - rows + r) * V;
    const float* ref = want.data() + r * V;
    float maxabs = 0, maxerr = 0;
    for (int64_t i = 0; i < V; i++) {
      maxabs = std::max(maxabs, std::fabs(ref[i]));
      maxerr = std::max(maxerr, std::fabs(mine[i] - ref[i]));
    }
    worst = std::max(worst, double(maxerr / maxabs));
  }
  return worst;
}

}  // namespace r1test
