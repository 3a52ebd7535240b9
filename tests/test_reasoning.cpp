// Keeping the reasoning in bounds, without a model: the loop guard against a direct check of its
// definition (and silent over the held-out Python), DRY against penalties worked out by hand, and
// the think budget and --on-loop through the generation loop with scripted logits.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "core/dry.h"
#include "core/generate.h"
#include "core/loop_guard.h"
#include "core/tokenizer_load.h"
#include "loop_reference.h"
#include "scripted_session.h"
#include "test_util.h"

using namespace r1;
using r1::test::ScriptedSession;

namespace {

constexpr size_t kSpan = r1::test::kLoopSpan, kCopies = r1::test::kLoopCopies, kTokens = r1::test::kLoopTokens;
using r1::test::first_loop;

// Pushes ids into a fresh guard; how many were pushed when it first fired, or -1.
int64_t guard_fires(const std::vector<int32_t>& ids, int* span = nullptr) {
  LoopGuard g;
  for (size_t i = 0; i < ids.size(); i++)
    if (g.push(ids[i])) {
      if (span) *span = g.span();
      return int64_t(i + 1);
    }
  return -1;
}

// `prefix` random tokens, then a random span of `span` tokens repeated up to `total` tokens;
// tokens drawn from `pool` (default: ids 0 to 7999).
std::vector<int32_t> planted_loop(size_t prefix, size_t span, size_t total, uint32_t seed,
                                  const std::vector<int32_t>& pool = {}) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, pool.empty() ? 7999 : pool.size() - 1);
  auto tok = [&](std::mt19937& g) { return pool.empty() ? int32_t(pick(g)) : pool[pick(g)]; };
  std::vector<int32_t> ids, s;
  for (size_t i = 0; i < prefix; i++) ids.push_back(tok(rng));
  for (size_t i = 0; i < span; i++) s.push_back(tok(rng));
  while (ids.size() < total) ids.push_back(s[(ids.size() - prefix) % span]);
  return ids;
}

Tokenizer fixture_tokenizer(const std::string& model) {
  return Tokenizer::load(load_tokenizer_source(std::string(R1_FIXTURES) + "/models/" + model));
}

}  // namespace

TEST_CASE("loop guard: the thresholds the tests fix", "[loop]") {
  CHECK(LoopGuard::kMaxSpan == int(kSpan));
  CHECK(LoopGuard::kMinCopies == int(kCopies));
  CHECK(LoopGuard::kMinTokens == int(kTokens));
  // one token repeated: the 128th copy fires, not the 127th
  CHECK(guard_fires(std::vector<int32_t>(127, 5)) == -1);
  CHECK(guard_fires(std::vector<int32_t>(128, 5)) == 128);
  // spans up to 42 need 128 tokens, longer ones 3 copies (3 x 43 = 129)
  CHECK(guard_fires(planted_loop(0, 42, 400, 1)) == 128);
  CHECK(guard_fires(planted_loop(0, 43, 400, 2)) == 129);
  CHECK(guard_fires(planted_loop(0, 256, 900, 3)) == 768);
  CHECK(guard_fires(planted_loop(0, 257, 900, 4)) == -1);  // past the longest span watched
}

TEST_CASE("loop guard: fires exactly where the definition says, on planted loops", "[loop]") {
  uint32_t seed = 10;
  for (size_t span : {1, 2, 3, 7, 20, 42, 43, 64, 100, 255, 256, 257}) {
    for (size_t prefix : {0, 1, 37, 150}) {
      auto ids = planted_loop(prefix, span, prefix + 900, seed++);
      INFO("span " << span << " after " << prefix << " random tokens");
      int found = 0;
      const int64_t want = first_loop(ids);
      CHECK(guard_fires(ids, &found) == want);
      if (span <= kSpan) {
        CHECK(want == int64_t(prefix + std::max(kCopies * span, kTokens)));
        CHECK(found == int(span));
      } else {
        CHECK(want == -1);
      }
    }
  }
  // reset() forgets: the same loop split by a reset fires only once enough follows the reset
  LoopGuard g;
  for (int i = 0; i < 100; i++) CHECK_FALSE(g.push(9));
  g.reset();
  int fired = 0;
  for (int i = 0; i < 128 && !fired; i++)
    if (g.push(9)) fired = i + 1;
  CHECK(fired == 128);
}

TEST_CASE("loop guard: no false positive over the held-out Python text", "[loop]") {
  Tokenizer tok = fixture_tokenizer("tiny-qwen2-py");
  const auto ids = tok.encode(r1::test::slurp(std::string(R1_FIXTURES) + "/heldout.py.txt"));
  REQUIRE(ids.size() > 50000);
  CHECK(guard_fires(ids) == -1);
  CHECK(first_loop(std::vector<int32_t>(ids.begin(), ids.begin() + 20000)) == -1);  // the reference agrees

  // Replayed as generated text through the generation loop (the guard on, in the reasoning):
  // every token comes out, and the reasoning is the text.
  ScriptedSession s(ids, tok.vocab_size(), int64_t(ids.size()) + 8);
  Generator gen(s, tok);
  GenOptions opt;
  opt.sampling.temperature = 0;
  opt.starts_in_think = true;
  opt.max_new = int64_t(ids.size());
  GenResult r = gen.generate({1}, opt);
  CHECK(r.finish == Finish::Length);
  CHECK(r.think_end == ThinkEnd::Open);
  CHECK(r.ids == ids);
  CHECK(r.reasoning == tok.decode(ids));
}

// ------------------------------------------------------------------------------------- DRY

namespace {

// DRY on 10 zero logits (multiplier 0.8, base 1.75, allowed length 2, unless p says otherwise).
std::vector<float> dry_on(const std::vector<int32_t>& history, const DryBreakers& br, DryParams p = {}) {
  if (p.multiplier == 0) p.multiplier = 0.8f;
  std::vector<float> l(10, 0.0f);
  apply_dry(l.data(), 10, p, br, history);
  return l;
}

// Whether DRY lowers exactly the given tokens by the given amounts (the others stay 0).
bool lowers(const std::vector<float>& got, std::vector<std::pair<int, double>> pen) {
  std::vector<double> want(10, 0.0);
  for (auto [t, v] : pen) want[size_t(t)] = -v;
  for (size_t i = 0; i < 10; i++)
    if (!(got[i] == Approx(want[i]).epsilon(1e-6))) return false;
  return true;
}

}  // namespace

TEST_CASE("DRY: penalties worked out by hand", "[dry]") {
  using Seqs = std::vector<std::vector<int32_t>>;
  const DryBreakers none, nine(Seqs{{9}}), six_seven(Seqs{{6, 7}});
  // 7 1 2 3 4 2 3 5 1 2 3: the text ends in "1 2 3". "1 2 3" came before, followed by 4: emitting
  // 4 would repeat 3 tokens plus one, 0.8 * 1.75^(3 - 2) = 1.4. "2 3" came before, followed by 5:
  // 0.8 * 1.75^0 = 0.8. "3" alone is shorter than the allowed 2.
  const std::vector<int32_t> h = {7, 1, 2, 3, 4, 2, 3, 5, 1, 2, 3};
  CHECK(lowers(dry_on(h, none), {{4, 1.4}, {5, 0.8}}));
  // allowed length 1: 4 repeats 3 (0.8 * 1.75^2 = 2.45), 5 repeats 2 (1.4); no other token
  // follows a 3
  DryParams a1;
  a1.allowed_length = 1;
  CHECK(lowers(dry_on(h, none, a1), {{4, 2.45}, {5, 1.4}}));
  // the last 8 tokens only (3 4 2 3 5 1 2 3): "1 2 3 4" left the window; "2 3 5" remains
  DryParams last8;
  last8.penalty_last_n = 8;
  CHECK(lowers(dry_on(h, none, last8), {{5, 0.8}}));
  DryParams last5;
  last5.penalty_last_n = 5;
  CHECK(lowers(dry_on(h, none, last5), {}));
  DryParams off;
  off.penalty_last_n = 0;
  CHECK(lowers(dry_on(h, none, off), {}));

  // A repeat reaches back no further than the latest breaker: 9 2 3 4 9 2 3 repeats "9 2 3"
  // (4 would be 0.8 * 1.75 = 1.4) but only the 2 tokens after the last 9 count: 0.8.
  CHECK(lowers(dry_on({9, 2, 3, 4, 9, 2, 3}, none), {{4, 1.4}}));
  CHECK(lowers(dry_on({9, 2, 3, 4, 9, 2, 3}, nine), {{4, 0.8}}));
  // a single-token breaker is never penalized: 2 3 9 5 2 3 would penalize 9 (0.8)
  CHECK(lowers(dry_on({2, 3, 9, 5, 2, 3}, none), {{9, 0.8}}));
  CHECK(lowers(dry_on({2, 3, 9, 5, 2, 3}, nine), {}));
  // a two-token breaker: "6 7" breaks, 6 alone does not. 6 7 1 2 6 7 1 2 repeats 4 tokens
  // (6 next: 0.8 * 1.75^2 = 2.45), cut to the 2 after the last "6 7" (0.8).
  CHECK(lowers(dry_on({6, 7, 1, 2, 6, 7, 1, 2}, none), {{6, 2.45}}));
  CHECK(lowers(dry_on({6, 7, 1, 2, 6, 7, 1, 2}, six_seven), {{6, 0.8}}));
  CHECK(lowers(dry_on({6, 5, 1, 2, 6, 5, 1, 2}, six_seven), {{6, 2.45}}));
  // a breaker leaving fewer tokens than the allowed length: no penalty at all (5 3 4 5 3
  // repeats "5 3", but with 5 a breaker only "3" follows it)
  CHECK(lowers(dry_on({5, 3, 4, 5, 3}, none), {{4, 0.8}}));
  CHECK(lowers(dry_on({5, 3, 4, 5, 3}, DryBreakers(Seqs{{5}})), {}));

  // A long repeat: 205 x token 1, the next 1 would repeat 204 tokens; 1.75^202 overflows a
  // float, so the exponent stops at floor(88.7228391 / ln 1.75) = 158.
  auto l = dry_on(std::vector<int32_t>(205, 1), none);
  CHECK(std::floor(88.7228391 / std::log(1.75)) == 158);
  CHECK(l[1] == Approx(-0.8 * std::pow(1.75, 158)).epsilon(1e-6));
  CHECK(std::isfinite(l[1]));
}

TEST_CASE("DRY: breaker strings against a vocabulary, as llama.cpp processes them", "[dry]") {
  Tokenizer tok = fixture_tokenizer("tiny-qwen2");
  DryBreakers br(tok, {"\n", "xq"});
  // every token containing "\n" breaks alone
  for (const char* s : {"\n", "\n\n", ":\n"}) {
    auto ids = tok.encode(s);
    REQUIRE(ids.size() == 1);
    CHECK(br.breaks_alone(ids[0]));
  }
  CHECK_FALSE(br.breaks_alone(tok.encode("x")[0]));
  // a token ending in "x" (the start of "xq") breaks when followed by the tokens of "q"
  const int32_t x = tok.encode("x")[0], q = tok.encode("q")[0], r = tok.encode("r")[0];
  const std::vector<int32_t> xq = {x, q}, xr = {x, r};
  CHECK(br.match(xq.data(), 2, 0) == 1);
  CHECK(br.match(xr.data(), 2, 0) == -1);
  CHECK(br.match(xq.data(), 1, 0) == -1);  // the tail must be inside the window
}

// ----------------------------------------------------------------- the generation loop

namespace {

struct Scripted {
  Tokenizer tok = fixture_tokenizer("tiny-qwen2");
  const int32_t end_think = tok.token_id("</think>"), eos = tok.eos_id();
  // Text tokens that decode on their own (ASCII), for scripts whose text is compared.
  std::vector<int32_t> pool = [this] {
    auto ids = tok.encode(r1::test::slurp(std::string(R1_FIXTURES) + "/heldout.py.txt").substr(0, 20000));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<int32_t> ascii;
    for (int32_t id : ids) {
      const std::string t = tok.token_text(id);
      if (std::all_of(t.begin(), t.end(), [](char c) { return c > 0; })) ascii.push_back(id);
    }
    return ascii;
  }();

  GenResult run(const std::vector<int32_t>& script, GenOptions opt) {
    ScriptedSession s(script, tok.vocab_size(), 4096);
    Generator g(s, tok);
    opt.sampling.temperature = 0;
    opt.stop_ids = {eos};
    return g.generate({1, 2, 3}, opt);
  }
  std::vector<int32_t> closing(const std::string& message) {
    auto ids = tok.encode(message.empty() ? "\n" : "\n\n" + message + "\n");
    ids.push_back(end_think);
    return ids;
  }
};

std::vector<int32_t> slice(const std::vector<int32_t>& v, size_t b, size_t e) {
  return std::vector<int32_t>(v.begin() + int64_t(b), v.begin() + int64_t(std::min(e, v.size())));
}

}  // namespace

TEST_CASE("think budget: exactly N reasoning tokens, the message and </think>, then the answer", "[generate]") {
  Scripted S;
  const auto script = planted_loop(60, 60, 60, 7, S.pool);  // 60 random text tokens
  for (int64_t n : {0, 1, 5, 17}) {
    for (std::string msg : {std::string(kThinkBudgetMessage), std::string("Stop."), std::string()}) {
      INFO("budget " << n << ", message '" << msg << "'");
      GenOptions opt;
      opt.starts_in_think = true;
      opt.think_budget = n;
      opt.think_budget_message = msg;
      opt.max_new = 40;
      GenResult r = S.run(script, opt);
      const auto close = S.closing(msg);
      const size_t c = close.size();
      REQUIRE(r.ids.size() == 40);
      CHECK(slice(r.ids, 0, size_t(n)) == slice(script, 0, size_t(n)));  // the model's own
      CHECK(slice(r.ids, size_t(n), size_t(n) + c) == close);
      // the answer: the model again (the scripted session moved on while r1 wrote)
      CHECK(slice(r.ids, size_t(n) + c, 40) == slice(script, size_t(n) + c, 40));
      CHECK(r.stats.think_tokens == n);
      CHECK(r.stats.answer_tokens == 40 - n - int64_t(c));
      CHECK(r.think_end == ThinkEnd::Budget);
      CHECK(std::string(think_end_name(r)) == "think_budget");
      CHECK(r.finish == Finish::Length);
      CHECK(r.reasoning == S.tok.decode(slice(script, 0, size_t(n))) + (msg.empty() ? "\n" : "\n\n" + msg + "\n"));
    }
  }
  // the answer's own cap; and a budget the model does not reach changes nothing
  GenOptions opt;
  opt.starts_in_think = true;
  opt.think_budget = 3;
  opt.max_answer = 5;
  GenResult r = S.run(script, opt);
  CHECK(r.finish == Finish::Length);
  CHECK(r.stats.answer_tokens == 5);
  CHECK(r.ids.size() == 3 + S.closing(kThinkBudgetMessage).size() + 5);
  auto natural = script;
  natural[4] = S.end_think;
  natural[9] = S.eos;
  opt.think_budget = 5;  // the model closes after 4
  r = S.run(natural, opt);
  CHECK(r.think_end == ThinkEnd::Stop);
  CHECK(r.stats.think_tokens == 4);
  CHECK(r.ids == slice(natural, 0, 9));
  CHECK(r.finish == Finish::Stop);
}

TEST_CASE("the loop guard modes: answer in the reasoning, stop in the answer, or off", "[generate]") {
  Scripted S;
  // 30 distinct tokens, then a span of 9 over and over: by the definition a loop after e tokens
  const auto script = planted_loop(30, 9, 2000, 8, S.pool);
  const int64_t e = first_loop(script);
  REQUIRE(e == 30 + 128);
  const auto close = S.closing(kThinkBudgetMessage);
  GenOptions opt;
  opt.starts_in_think = true;
  opt.max_new = e + 100;

  // default (auto) and answer: the reasoning is closed as at the budget, then the answer; the
  // answer loops too and stops after its own 128
  for (OnLoop mode : {OnLoop::Auto, OnLoop::Answer}) {
    opt.on_loop = mode;
    opt.max_new = 1000;
    GenResult r = S.run(script, opt);
    CHECK(r.think_end == ThinkEnd::Loop);
    CHECK(std::string(think_end_name(r)) == "loop");
    CHECK(r.stats.think_tokens == e);
    CHECK(slice(r.ids, size_t(e), size_t(e) + close.size()) == close);
    CHECK(r.finish == Finish::Loop);
    CHECK(r.stats.answer_tokens == first_loop(slice(script, size_t(e) + close.size(), script.size())));
  }
  // stop: ends at the loop
  opt.on_loop = OnLoop::Stop;
  GenResult r = S.run(script, opt);
  CHECK(r.finish == Finish::Loop);
  CHECK(r.think_end == ThinkEnd::Open);
  CHECK(std::string(think_end_name(r)) == "loop");
  CHECK(r.ids == slice(script, 0, size_t(e)));
  // off: on to the cap
  opt.on_loop = OnLoop::Off;
  opt.max_new = 600;
  r = S.run(script, opt);
  CHECK(r.finish == Finish::Length);
  CHECK(r.ids == slice(script, 0, 600));
  // no reasoning: a loop in the answer stops, whatever the mode but off
  for (OnLoop mode : {OnLoop::Auto, OnLoop::Answer, OnLoop::Stop}) {
    opt.on_loop = mode;
    opt.starts_in_think = false;
    r = S.run(script, opt);
    CHECK(r.finish == Finish::Loop);
    CHECK(r.think_end == ThinkEnd::None);
    CHECK(think_end_name(r) == nullptr);
    CHECK(r.stats.answer_tokens == e);
    CHECK(r.answer == S.tok.decode(slice(script, 0, size_t(e))));
  }
}
