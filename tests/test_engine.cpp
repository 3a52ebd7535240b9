// The CPU forward pass against Hugging Face transformers' reference (float32 on the BF16
// weights): logits of the last 16 prompt positions, argmax at every position, greedy
// continuations. From f32 and bf16 files with an f32 KV cache, and with the default f16 cache.
#include <catch2/catch.hpp>
#include <cmath>

#include "fixture_models.h"
#include "kernels/cpu/cpu.h"
#include "models/cpu_backend.h"
#include "kernel_switch.h"

using namespace r1;

namespace {

using r1test::argmax;

void check_model(const std::string& name, const std::string& quant, KvFormat kv) {
  auto ref = r1test::reference(name);
  auto model = Model::load(r1test::packed(name, quant));
  ThreadPool pool(2);
  const int64_t V = model->cfg.vocab_size;
  for (auto& cs : ref["cases"]) {
    auto ids = cs["prompt_ids"].get<std::vector<int32_t>>();
    auto argmax_ref = cs["argmax_every_position"].get<std::vector<int32_t>>();
    auto greedy_ref = cs["greedy_continuation_ids"].get<std::vector<int32_t>>();
    auto ref_logits = r1test::read_f32(r1test::fixture_dir(name) + "/" + cs["logits_file"].get<std::string>());
    const int64_t rows = cs["logits_shape"][0].get<int64_t>();
    REQUIRE(int64_t(ref_logits.size()) == rows * V);
    INFO(name << " " << quant << " kv " << kv_format_name(kv) << " prompt of " << ids.size() << " tokens");

    CpuSession s(*model, 256, kv, pool);
    const float* logits = s.forward(ids.data(), int64_t(ids.size()), /*all_logits=*/true);
    const int64_t n = int64_t(ids.size());
    for (int64_t t = 0; t < n; t++) CHECK(argmax(logits + t * V, V) == argmax_ref[size_t(t)]);
    const double worst = r1test::worst_logit_error(logits, n, ref_logits, rows, V);
    INFO("worst logit error / max|logit| = " << worst);
    // The bound is 1e-3 of the row's largest logit. An f16 cache rounds every key and
    // value to 11 significant bits (relative 4.9e-4), which on the random-weight fixtures
    // reaches ~1.2e-3; allow 2.5e-3 there (argmax and greedy ids stay exact).
    CHECK(worst <= (kv == KvFormat::F16 ? 2.5e-3 : 1e-3));

    // greedy continuation
    std::vector<int32_t> got;
    int32_t next = argmax(logits + (n - 1) * V, V);
    for (size_t i = 0; i < greedy_ref.size(); i++) {
      got.push_back(next);
      if (i + 1 == greedy_ref.size()) break;
      const float* lg = s.forward(&next, 1);
      next = argmax(lg, V);
    }
    CHECK(got == greedy_ref);
  }
}

// Worst logit error / max|logit| over the reference rows, and top-1 agreement with the
// reference's argmax over every prompt position, of a packed fixture with a KV format.
struct Quality {
  double worst = 0, top1 = 0;
};
Quality quality(const std::string& m, const std::string& quant, KvFormat kv) {
  auto ref = r1test::reference(m);
  auto model = Model::load(r1test::packed(m, quant));
  ThreadPool pool(2);
  const int64_t V = model->cfg.vocab_size;
  int64_t agree = 0, total = 0;
  Quality q;
  for (auto& cs : ref["cases"]) {
    auto ids = cs["prompt_ids"].get<std::vector<int32_t>>();
    auto am = cs["argmax_every_position"].get<std::vector<int32_t>>();
    auto rl = r1test::read_f32(r1test::fixture_dir(m) + "/" + cs["logits_file"].get<std::string>());
    const int64_t rows = cs["logits_shape"][0].get<int64_t>(), n = int64_t(ids.size());
    CpuSession s(*model, 256, kv, pool);
    const float* lg = s.forward(ids.data(), n, true);
    for (int64_t t = 0; t < n; t++, total++) agree += argmax(lg + t * V, V) == am[size_t(t)];
    q.worst = std::max(q.worst, r1test::worst_logit_error(lg, n, rl, rows, V));
  }
  q.top1 = double(agree) / double(total);
  return q;
}

}  // namespace

TEST_CASE("forward pass matches transformers from f32 and bf16 files", "[engine]") {
  for (const char* m : {"tiny-qwen2", "tiny-llama3", "tiny-qwen2-py"})
    for (const char* q : {"f32", "bf16"}) check_model(m, q, KvFormat::F32);
}

TEST_CASE("forward pass with the reference kernels", "[engine]") {
  test::KernelSwitch ref(cpu::force_reference, true);
  check_model("tiny-llama3", "bf16", KvFormat::F32);
}

TEST_CASE("forward pass with the default f16 KV cache", "[engine]") {
  for (const char* m : {"tiny-qwen2", "tiny-llama3", "tiny-qwen2-py"}) check_model(m, "bf16", KvFormat::F16);
}

// Quantized files against the same reference: how far the logits move and how often the top
// token survives. Bounds are set from measurements (see the issue note) with margin; they guard
// against regressions in the quantizers and kernels, not against the formats' inherent error.
TEST_CASE("q8 q5 and q4 files stay near the reference logits", "[engine][quality]") {
  // Measured (worst logit error / max|logit|, top-1 agreement over all prompt positions):
  //   tiny-qwen2    q8 0.060 / 1.00   q5 0.26 / 0.73   q4 0.47 / 0.55
  //   tiny-llama3   q8 0.067 / 0.90   q5 0.31 / 0.65   q4 0.57 / 0.42
  //   tiny-qwen2-py q8 0.020 / 0.98   q5 0.082 / 0.90  q4 0.135 / 0.97
  // (tiny-qwen2-py's 60 positions are few: over heldout.py.txt q5 agrees on 95.6% of tokens,
  // q4 on 94.0%.)
  // The random-weight fixtures have near-tied logits and random norm weights that amplify any
  // weight error, so q4's top-1 agreement there is low; the trained model is the real measure.
  struct Bound { const char* model; const char* quant; double rel_err; double top1; };
  for (Bound b : {Bound{"tiny-qwen2", "q8", 0.1, 0.9}, Bound{"tiny-qwen2", "q4", 0.8, 0.3},
                  Bound{"tiny-llama3", "q8", 0.1, 0.8}, Bound{"tiny-llama3", "q4", 0.9, 0.25},
                  Bound{"tiny-qwen2-py", "q8", 0.04, 0.95}, Bound{"tiny-qwen2-py", "q4", 0.2, 0.9},
                  Bound{"tiny-qwen2", "q5", 0.4, 0.6}, Bound{"tiny-llama3", "q5", 0.45, 0.5},
                  Bound{"tiny-qwen2-py", "q5", 0.12, 0.85}}) {
    const Quality q = quality(b.model, b.quant, KvFormat::F32);
    WARN(b.model << " " << b.quant << ": worst logit error / max|logit| " << q.worst << ", top-1 agreement " << q.top1);
    CHECK(q.worst <= b.rel_err);
    CHECK(q.top1 >= b.top1);
  }
}

// A q8 cache rounds every key and value to 8 bits per group of 32 (relative error up to 1/254
// of the group's largest): bounded like the quantized files above, from measurements with margin.
TEST_CASE("a q8 KV cache stays near the reference logits", "[engine][quality]") {
  // Measured from bf16 files (worst logit error / max|logit|, top-1 agreement):
  //   tiny-qwen2 0.019 / 0.967   tiny-llama3 0.031 / 0.983   tiny-qwen2-py 0.0078 / 1.00
  // (the f16 cache: below 2.5e-3 and exact top-1; q8 weights: 0.02-0.07)
  struct Bound { const char* model; double rel_err; double top1; };
  for (Bound b : {Bound{"tiny-qwen2", 0.04, 0.9}, Bound{"tiny-llama3", 0.06, 0.9}, Bound{"tiny-qwen2-py", 0.016, 0.95}}) {
    const Quality q = quality(b.model, "bf16", KvFormat::Q8);
    WARN(b.model << " bf16, kv q8: worst logit error / max|logit| " << q.worst << ", top-1 agreement " << q.top1);
    CHECK(q.worst <= b.rel_err);
    CHECK(q.top1 >= b.top1);
  }
}

// Qwen3 is Qwen2's decoder with an RMSNorm over each head of q and k before RoPE (config flag
// qk_norm, two [head_dim] weights per layer in the schema): the same checks against transformers,
// with the fast kernels, the reference kernels and the f16 cache.
TEST_CASE("Qwen3's per-head q/k norm matches transformers", "[engine]") {
  for (const char* q : {"f32", "bf16"}) check_model("tiny-qwen3", q, KvFormat::F32);
  check_model("tiny-qwen3", "bf16", KvFormat::F16);
  test::KernelSwitch ref(cpu::force_reference, true);
  check_model("tiny-qwen3", "bf16", KvFormat::F32);
}
