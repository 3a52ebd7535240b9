// Sampler on hand-made distributions, seeds, and the generation loop's stop conditions with a
// scripted session (no model needed).
#include <catch2/catch.hpp>
#include <cmath>
#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/generate.h"
#include "core/sampler.h"
#include "core/threadpool.h"
#include "core/tokenizer_load.h"
#include "fixture_models.h"
#include "models/cpu_backend.h"
#include "models/runtime.h"
#include "scripted_session.h"

using namespace r1;

namespace {

// logits = log(p) for a known distribution over 6 tokens
std::vector<float> logits_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(float(std::log(x)));
  return l;
}
const std::vector<double> kP = {0.40, 0.25, 0.15, 0.10, 0.06, 0.04};

}  // namespace

TEST_CASE("top-k keeps the k most likely tokens, renormalized", "[sampler]") {
  SamplerParams p;
  p.temperature = 1;
  p.top_p = 1;
  p.top_k = 2;
  Sampler s(p, 6);
  auto d = s.distribution(logits_of(kP).data(), {});
  CHECK(d[0] == Approx(0.40 / 0.65));
  CHECK(d[1] == Approx(0.25 / 0.65));
  for (int i = 2; i < 6; i++) CHECK(d[size_t(i)] == 0);
  // the k most likely wherever they sit in the vocabulary (until 2026-12-05 top-k kept the
  // tokens 0..k-1, whatever their probability)
  const std::vector<double> rev(kP.rbegin(), kP.rend());
  d = s.distribution(logits_of(rev).data(), {});
  CHECK(d[5] == Approx(0.40 / 0.65));
  CHECK(d[4] == Approx(0.25 / 0.65));
  for (int i = 0; i < 4; i++) CHECK(d[size_t(i)] == 0);
  for (int i = 0; i < 50; i++) {
    auto l = logits_of(rev);
    const int32_t t = s.sample(l.data(), {});
    CHECK((t == 4 || t == 5));
  }
}

// The draw, computed here without the sampler's code: the seed's uniform (splitmix64, the
// sampler's documented generator), the kept tokens in descending probability (ties: lower id),
// the first whose running mass exceeds it. Over a vocabulary large enough for every sorting path
// (partial sorts in growing blocks, the radix sort of the rest with top-p 1).
TEST_CASE("a draw picks the first token, by descending probability, whose running mass exceeds the seed's uniform",
          "[sampler]") {
  const int64_t V = 50000;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (float top_p : {1.0f, 0.9f, 0.3f})
    for (int top_k : {0, 3000})
      for (uint64_t seed : {1ull, 99ull, 12345ull}) {
        std::vector<float> l(static_cast<size_t>(V));
        for (auto& x : l) x = nd(rng);
        for (int i = 0; i < 50; i++) l[size_t(rng() % V)] = l[size_t(rng() % V)];  // ties
        SamplerParams p;
        p.temperature = 0.8f;
        p.top_p = top_p;
        p.top_k = top_k;
        p.seed = seed;
        // the expected pick: probabilities in double, sorted, cut, renormalized
        const float mx = *std::max_element(l.begin(), l.end());
        std::vector<double> e(static_cast<size_t>(V));
        for (int64_t i = 0; i < V; i++) e[size_t(i)] = std::exp(double((l[size_t(i)] - mx) / p.temperature));
        std::vector<int32_t> order(static_cast<size_t>(V));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return e[size_t(a)] > e[size_t(b)]; });
        int64_t keep = top_k > 0 ? top_k : V;
        double mass = 0;
        for (int64_t i = 0; i < keep; i++) mass += e[size_t(order[size_t(i)])];
        if (top_p < 1) {
          double acc = 0;
          int64_t i = 0;
          while (i < keep && (acc += e[size_t(order[size_t(i)])]) < top_p * mass) i++;
          keep = std::min(keep, i + 1);
        }
        double ksum = 0;
        for (int64_t i = 0; i < keep; i++) ksum += e[size_t(order[size_t(i)])];
        uint64_t st = seed + 0x9e3779b97f4a7c15ull;
        uint64_t z = st;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        const double u = double(z >> 11) * 0x1.0p-53;
        int64_t want = keep - 1;
        double acc = 0;
        for (int64_t i = 0; i < keep; i++)
          if (u < (acc += e[size_t(order[size_t(i)])] / ksum)) { want = i; break; }
        Sampler s(p, V);
        INFO("top_p " << top_p << " top_k " << top_k << " seed " << seed << " kept " << keep << " u " << u);
        CHECK(s.sample(l.data(), {}) == order[size_t(want)]);
      }
}

TEST_CASE("top-p keeps the smallest prefix reaching the mass", "[sampler]") {
  SamplerParams p;
  p.temperature = 1;
  p.top_p = 0.7f;  // 0.40 + 0.25 = 0.65 < 0.7, + 0.15 = 0.80 >= 0.7 -> three tokens
  Sampler s(p, 6);
  auto d = s.distribution(logits_of(kP).data(), {});
  CHECK(d[0] == Approx(0.40 / 0.80));
  CHECK(d[2] == Approx(0.15 / 0.80));
  CHECK(d[3] == 0);
}

TEST_CASE("min-p drops tokens below a fraction of the top", "[sampler]") {
  SamplerParams p;
  p.temperature = 1;
  p.top_p = 1;
  p.min_p = 0.3f;  // threshold 0.12: keeps 0.40, 0.25, 0.15
  Sampler s(p, 6);
  auto d = s.distribution(logits_of(kP).data(), {});
  CHECK(d[2] == Approx(0.15 / 0.80));
  CHECK(d[3] == 0);
}

TEST_CASE("temperature sharpens; repetition penalty lowers seen tokens", "[sampler]") {
  SamplerParams p;
  p.temperature = 0.5f;
  p.top_p = 1;
  Sampler s(p, 6);
  auto d = s.distribution(logits_of(kP).data(), {});
  double z = 0;
  for (double x : kP) z += x * x;
  CHECK(d[0] == Approx(0.16 / z));
  p.temperature = 1;
  p.repetition_penalty = 2;
  Sampler r(p, 6);
  std::vector<float> l = {2.0f, 1.0f, -1.0f, 0, 0, 0};
  auto dr = r.distribution(l.data(), {0, 2, 2});
  // token 0: 2 -> 1; token 2: -1 -> -2
  double e = std::exp(1.0) + std::exp(1.0) + std::exp(-2.0) + 3;
  CHECK(dr[0] == Approx(std::exp(1.0) / e));
  CHECK(dr[2] == Approx(std::exp(-2.0) / e));
}

TEST_CASE("draws follow the distribution; same seed, same draws", "[sampler]") {
  SamplerParams p;
  p.temperature = 1;
  p.top_p = 1;
  p.seed = 42;
  Sampler a(p, 6), b(p, 6);
  std::map<int, int> counts;
  std::vector<int> da, db;
  for (int i = 0; i < 20000; i++) {
    auto l = logits_of(kP);
    auto l2 = l;
    int x = a.sample(l.data(), {});
    da.push_back(x);
    db.push_back(b.sample(l2.data(), {}));
    counts[x]++;
  }
  CHECK(da == db);
  for (int t = 0; t < 6; t++) CHECK(counts[t] / 20000.0 == Approx(kP[size_t(t)]).margin(0.015));
  p.seed = 43;
  Sampler c(p, 6);
  std::vector<int> dc;
  for (int i = 0; i < 200; i++) {
    auto l = logits_of(kP);
    dc.push_back(c.sample(l.data(), {}));
  }
  CHECK(std::vector<int>(da.begin(), da.begin() + 200) != dc);
}

TEST_CASE("greedy takes the argmax; invalid parameters are usage errors", "[sampler]") {
  SamplerParams p;
  p.temperature = 0;
  Sampler s(p, 6);
  auto l = logits_of(kP);
  l[3] = 10;
  CHECK(s.sample(l.data(), {}) == 3);
  SamplerParams bad;
  bad.temperature = NAN;
  CHECK_THROWS_AS(validate(bad), Error);
  bad = SamplerParams();
  bad.top_p = 0;
  CHECK_THROWS_AS(validate(bad), Error);
}

using r1::test::ScriptedSession;

TEST_CASE("generation stops on stop tokens, -n, the context limit; splits reasoning", "[generate]") {
  Tokenizer tok = Tokenizer::load(load_tokenizer_source(std::string(R1_FIXTURES) + "/models/tiny-qwen2"));
  const int32_t think = tok.token_id("<think>"), end_think = tok.token_id("</think>"), eos = tok.eos_id();
  REQUIRE(think >= 0);
  REQUIRE(end_think >= 0);
  REQUIRE(eos >= 0);
  auto a = tok.encode("Hi"), b = tok.encode(" there");
  std::vector<int32_t> script = {a[0], end_think, b[0], eos, a[0]};
  GenOptions opt;
  opt.sampling.temperature = 0;
  opt.starts_in_think = true;
  opt.stop_ids = {eos};

  ScriptedSession s(script, tok.vocab_size(), 100);
  Generator g(s, tok);
  std::vector<int32_t> prompt = {1, 2, 3};
  GenResult r = g.generate(prompt, opt);
  CHECK(r.finish == Finish::Stop);
  CHECK(r.reasoning == tok.token_text(a[0]));
  CHECK(r.answer == tok.token_text(b[0]));
  CHECK(r.stats.think_tokens == 1);
  CHECK(r.ids == std::vector<int32_t>{a[0], end_think, b[0]});

  ScriptedSession s2(script, tok.vocab_size(), 100);
  Generator g2(s2, tok);
  opt.max_new = 2;
  GenResult r2 = g2.generate(prompt, opt);
  CHECK(r2.finish == Finish::Length);
  CHECK(r2.ids.size() == 2);

  // context of 5: prompt 3 + 2 generated fill it; the third token cannot be run
  ScriptedSession s3(script, tok.vocab_size(), 5);
  Generator g3(s3, tok);
  opt.max_new = -1;
  GenResult r3 = g3.generate(prompt, opt);
  CHECK(r3.finish == Finish::Context);
  CHECK(std::string(finish_name(r3.finish)) == "context");
  CHECK(r3.ids.size() == 3);

  // a prompt that does not fit is an error, never silently cut
  ScriptedSession s4(script, tok.vocab_size(), 3);
  Generator g4(s4, tok);
  CHECK_THROWS_AS(g4.generate(prompt, opt), Error);
}

TEST_CASE("the think budget closes the reasoning with a newline and </think>; the answer follows", "[generate]") {
  Tokenizer tok = Tokenizer::load(load_tokenizer_source(std::string(R1_FIXTURES) + "/models/tiny-qwen2"));
  const int32_t end_think = tok.token_id("</think>"), eos = tok.eos_id();
  auto a = tok.encode("a")[0];
  std::vector<int32_t> script(10, a);
  script.push_back(eos);
  ScriptedSession s(script, tok.vocab_size(), 100);
  Generator g(s, tok);
  GenOptions opt;
  opt.sampling.temperature = 0;
  opt.starts_in_think = true;
  opt.think_budget = 3;
  opt.stop_ids = {eos};
  opt.max_new = 8;
  opt.think_budget_message = "";  // only "\n" before "</think>" (the message: tests/test_reasoning.cpp)
  GenResult r = g.generate({1, 2}, opt);
  CHECK(r.reasoning == "aaa\n");
  REQUIRE(r.ids.size() == 8);
  CHECK(r.ids[3] == tok.encode("\n")[0]);
  CHECK(r.ids[4] == end_think);
  CHECK(r.answer == "aaa");
  CHECK(r.stats.think_tokens == 3);
  CHECK(r.stats.answer_tokens == 3);
  CHECK(r.think_end == ThinkEnd::Budget);
}

TEST_CASE("a second generation reuses the cached prefix", "[generate]") {
  Tokenizer tok = Tokenizer::load(load_tokenizer_source(std::string(R1_FIXTURES) + "/models/tiny-qwen2"));
  const int32_t eos = tok.eos_id();
  std::vector<int32_t> script = {5, eos, 6, eos};
  ScriptedSession s(script, tok.vocab_size(), 100);
  Generator g(s, tok);
  GenOptions opt;
  opt.sampling.temperature = 0;
  opt.stop_ids = {eos};
  GenResult r1 = g.generate({1, 2, 3}, opt);
  CHECK(r1.stats.prefilled_tokens == 3);
  // next turn: the old prompt + answer + new text; only the new part is prefilled
  GenResult r2 = g.generate({1, 2, 3, 5, 7, 8}, opt);
  CHECK(r2.stats.prefilled_tokens == 2);
  CHECK(r2.stats.prompt_tokens == 6);
}

namespace {

// A session whose backend picks the tokens itself, as the GPU's token loop does
// (Session::forward_pick): here the CPU sampler over a CPU session's logits, so that the
// generation loop's bookkeeping for picked tokens (one draw per sampled token, none for the
// tokens r1 writes itself, the cached ids, the last logits) can be checked against the plain loop.
class PickingSession : public Session {
 public:
  PickingSession(const Model& m, int64_t ctx, ThreadPool& pool) : s_(m, ctx, KvFormat::F16, pool) {}
  int64_t ctx() const override { return s_.ctx(); }
  int64_t n_past() const override { return s_.n_past(); }
  int64_t vocab() const override { return s_.vocab(); }
  void truncate(int64_t n) override { s_.truncate(n); }
  const float* forward(const int32_t* t, int64_t n, bool all) override { return last_ = s_.forward(t, n, all); }
  bool picks(const SamplerParams& p) const override { return p.repetition_penalty == 1.0f && !p.dry.on(); }
  int32_t forward_pick(int32_t token, const SamplerParams& p, double u) override {
    last_ = s_.forward(&token, 1);
    std::vector<float> l(last_, last_ + vocab());
    n_picks++;
    return Sampler(p, vocab()).pick(l.data(), {}, u);
  }
  const float* picked_logits() override { return last_; }
  int n_picks = 0;

 private:
  CpuSession s_;
  const float* last_ = nullptr;
};

}  // namespace

TEST_CASE("tokens picked by the session give the plain loop's generation, draw for draw", "[generate]") {
  Runtime rt = Runtime::load(r1test::packed("tiny-qwen2-py", "q8"));
  ThreadPool pool(2);
  const Tokenizer& tok = *rt.tok;
  const std::vector<int32_t> prompt = tok.encode("def parse(line):\n    ");
  struct Case {
    const char* name;
    float temp, top_p, min_p, penalty;
    int top_k, budget;
  };
  for (const Case& c : {Case{"greedy", 0, 1, 0, 1, 0, -1}, Case{"top-p", 0.8f, 0.9f, 0, 1, 0, -1},
                        Case{"top-k, min-p", 1.0f, 1, 0.05f, 1, 20, -1},
                        Case{"think budget (r1's own tokens between draws)", 0.7f, 0.95f, 0, 1, 0, 6},
                        Case{"repetition penalty (picked by the caller)", 0.8f, 0.9f, 0, 1.3f, 0, -1}}) {
    for (uint64_t seed : {1u, 2u}) {
      INFO(c.name << ", seed " << seed);
      GenOptions opt;
      opt.sampling.temperature = c.temp, opt.sampling.top_p = c.top_p, opt.sampling.min_p = c.min_p;
      opt.sampling.top_k = c.top_k, opt.sampling.repetition_penalty = c.penalty, opt.sampling.seed = seed;
      opt.max_new = 48;
      opt.on_loop = OnLoop::Off;
      opt.starts_in_think = c.budget >= 0;
      opt.think_budget = c.budget;
      CpuSession plain(*rt.model, 256, KvFormat::F16, pool);
      PickingSession picking(*rt.model, 256, pool);
      Generator a(plain, tok), b(picking, tok);
      for (int turn = 0; turn < 2; turn++) {  // the second turn reuses the cache: its ids must agree too
        std::vector<int32_t> p = prompt;
        if (turn == 1) p = a.cached(), p.push_back(tok.encode("\n")[0]);
        const GenResult ra = a.generate(p, opt), rb = b.generate(p, opt);
        REQUIRE(ra.ids.size() == 48);
        CHECK(rb.ids == ra.ids);
        CHECK(rb.reasoning == ra.reasoning);
        CHECK(rb.answer == ra.answer);
        CHECK(rb.think_end == ra.think_end);
        CHECK(rb.stats.prefilled_tokens == ra.stats.prefilled_tokens);
        CHECK(b.cached() == a.cached());
        CHECK(b.last_logits() == a.last_logits());
      }
      // every token but the first (the prompt's logits) and r1's own closing of the reasoning
      const int64_t own = c.budget >= 0 ? int64_t(tok.encode("\n\n" + opt.think_budget_message + "\n").size()) + 1 : 0;
      CHECK(picking.n_picks == (c.penalty != 1 ? 0 : 2 * (48 - 1 - own)));
    }
  }
}
