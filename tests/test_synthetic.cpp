// Synthetic models (models/synthetic.h) and `r1 bench`: a tiny synthetic model runs in every
// format with finite logits, presets have the reference shapes, and bench's JSON has its fields.
// (Speed is the benchmark's business, not the tests'.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>

#include "core/membench.h"
#include "core/threadpool.h"
#include "fixture_models.h"
#include "models/cpu_backend.h"
#include "models/synthetic.h"
#include "test_util.h"

using namespace r1;

TEST_CASE("synthetic presets have the reference shapes", "[synthetic]") {
  const Config q = synthetic_config("qwen-1.5b");
  CHECK(q.hidden == 1536);
  CHECK(q.intermediate == 8960);
  CHECK(q.n_layers == 28);
  CHECK(q.n_heads == 12);
  CHECK(q.n_kv_heads == 2);
  CHECK(q.vocab_size == 151936);
  CHECK(q.qkv_bias);
  const Config l = synthetic_config("llama-70b");
  CHECK(l.arch == Arch::Llama);
  CHECK(l.hidden == 8192);
  CHECK(l.n_kv_heads == 8);
  CHECK(!l.qkv_bias);
  CHECK(l.rope_scaling.type == "llama3");
  CHECK(l.rope_theta == 500000);
  for (auto& n : synthetic_presets()) CHECK_NOTHROW(validate_config(synthetic_config(n)));
  CHECK_THROWS(synthetic_config("qwen-3b"));
}

TEST_CASE("a tiny synthetic model decodes with finite logits in every format", "[synthetic]") {
  const Config c = synthetic_config("tiny");
  ThreadPool pool(2);
  for (Format f : {Format::Q4, Format::Q5, Format::Q8, Format::BF16, Format::F16, Format::F32}) {
    INFO(format_name(f));
    auto m = make_synthetic_model(c, f);
    REQUIRE(m->owned);
    CHECK(m->layers.size() == size_t(c.n_layers));
    CHECK(m->weight_bytes() > 0);
    CpuSession s(*m, 64, r1::KvFormat::F16, pool);
    std::vector<int32_t> prompt = {1, 5, 9, 200, 511, 3, 7, 0};
    const float* lg = s.forward(prompt.data(), int64_t(prompt.size()));
    int32_t t = 0;
    for (int step = 0; step < 6; step++) {
      bool finite = true;
      for (int64_t i = 0; i < c.vocab_size; i++) finite = finite && std::isfinite(lg[i]);
      REQUIRE(finite);
      t = int32_t(std::max_element(lg, lg + c.vocab_size) - lg);
      lg = s.forward(&t, 1);
    }
    CHECK(s.n_past() == 14);
    // Same seed, same weights.
    auto m2 = make_synthetic_model(c, f);
    CHECK(std::memcmp(m->embed.codes, m2->embed.codes, 64) == 0);
  }
}

TEST_CASE("r1 bench --json reports speeds, bytes and bandwidth", "[synthetic][cli]") {
  auto r = test::run_r1({"bench", "--synthetic", "tiny", "-p", "16", "-n", "4", "--depth", "32", "--repeat", "2",
                         "--threads", "2", "--bw-mib", "64", "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"model", "quant", "kernel_set", "threads", "prompt_tokens", "gen_tokens", "depth",
                        "prefill_tok_s", "decode_tok_s", "decode_tok_s_min", "decode_tok_s_max", "weight_bytes",
                        "kv_bytes_per_token", "bytes_per_token", "decode_gb_s", "read_bw_gb_s", "bw_fraction",
                        "peak_rss_bytes"})
    CHECK(j.contains(k));
  CHECK(j["quant"] == "q4");
  CHECK(j["depth"] == 32);
  CHECK(j["prefill_tok_s"].get<double>() > 0);
  CHECK(j["decode_tok_s"].get<double>() > 0);
  CHECK(j["read_bw_gb_s"].get<double>() > 0);
  CHECK(j["bytes_per_token"].get<uint64_t>() > j["weight_bytes"].get<uint64_t>());
  // matrix MACs per prompt token of the tiny preset, from its config: 7 matrices per layer, the
  // lm_head once per 16-token prompt
  const Config c = synthetic_config("tiny");
  const double per_tok = double(c.n_layers) * double(c.hidden) * double(2 * c.q_dim() + 2 * c.kv_dim() + 3 * c.intermediate) +
                         double(c.vocab_size) * double(c.hidden) / 16;
  CHECK(j["prefill_gmac_s"].get<double>() == Approx(j["prefill_tok_s"].get<double>() * per_tok / 1e9).epsilon(1e-9));
  if (j["kernel_set"] != "ref") CHECK(j["int8_peak_gmac_s"].get<double>() > 0);
  // the ceiling is the better of the two bandwidth measurements
  CHECK(j["read_bw_before_gb_s"].get<double>() > 0);
  CHECK(j["read_bw_gb_s"].get<double>() ==
        std::max(j["read_bw_before_gb_s"].get<double>(), j["read_bw_after_gb_s"].get<double>()));

  auto u = test::run_r1({"bench", "--synthetic", "tiny", "--device", "cuda"});
  CHECK(u.code == 1);
  // a build without CUDA, or one with CUDA on a machine without a GPU (CI)
  INFO(u.err);
  CHECK((u.err.find("no CUDA backend") != std::string::npos || u.err.find("no NVIDIA GPU or driver") != std::string::npos));
  CHECK(test::run_r1({"bench", "--synthetic", "nope"}).code == 1);
  CHECK(test::run_r1({"bench"}).code == 1);
}

TEST_CASE("the read-bandwidth probe measures every way and reports the best", "[synthetic]") {
  for (int nt : {1, 3}) {
    ThreadPool pool(nt);
    std::vector<ReadVariant> ways;
    const double bw = measure_read_bandwidth(pool, (uint64_t(24) << 20) + 12345, 1, &ways);  // not whole pages
    REQUIRE(ways.size() >= 5);
    double best = 0;
    for (const auto& w : ways) {
      INFO(nt << " threads: " << w.name);
      CHECK(w.gbs > 0);
      best = std::max(best, w.gbs);
    }
    CHECK(bw == best);
  }
}

TEST_CASE("r1 bench on a packed q4 file: labelled q4, no fraction above 100%, --depth within the model", "[synthetic][cli]") {
  const std::string q4 = r1test::packed("tiny-qwen2", "q4");  // its layer 0 MLP is q5 (the q4 recipe)
  const std::vector<std::string> args{"bench", "-m", q4, "-p", "8", "-n", "8", "--repeat", "1", "--threads", "1", "--bw-mib", "16"};
  auto r = test::run_r1(args);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find(", q4 | ") != std::string::npos);
  std::smatch m;
  if (std::regex_search(r.out, m, std::regex(R"(= (\d+)% of [\d.]+ GB/s measured read bandwidth)"))) CHECK(std::stoi(m[1]) <= 100);
  std::vector<std::string> json = args;
  json.push_back("--json");
  auto j = test::run_r1(json);
  REQUIRE(j.code == 0);
  auto o = nlohmann::json::parse(j.out);
  CHECK(o["quant"] == "q4");
  // 2 MB of weights: where sysfs gives the cache size, they fit, and the text says so
  if (o["fits_in_cache"].get<bool>()) CHECK(r.out.find("CPU cache: not bound by") != std::string::npos);
  CHECK((o["fits_in_cache"].get<bool>() || o["bw_fraction"].get<double>() <= 1.0 || r.out.find("measure again") != std::string::npos));

  auto deep = test::run_r1({"bench", "-m", q4, "--depth", "4194304", "-p", "0"});
  CHECK(deep.code == 1);
  CHECK(deep.err == "r1 bench: --depth + -n (+ 2 warm-up tokens) needs 4194434 positions; the model has 4096\n");
  auto batch = test::run_r1({"bench", "-m", q4, "--batch", "2", "-p", "4096", "-n", "8"});
  CHECK(batch.code == 1);
  CHECK(batch.err.find("positions; the model has 4096") != std::string::npos);
}
