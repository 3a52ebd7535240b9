// What keeping the reasoning in bounds costs per generated token, in isolation (a benchmark, not a
// test): the loop guard's push over the held-out Python (never fires: the full pass every token)
// and over a loop, and DRY on a 152k vocabulary at a few history lengths. Thread CPU time, the
// median of 7 repetitions. Usage: r1_reasoning_bench [fixtures-dir]
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/dry.h"
#include "core/loop_guard.h"
#include "core/tokenizer.h"

#ifndef R1_FIXTURES
#define R1_FIXTURES "tests/fixtures"
#endif

namespace {

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// Median over 7 runs of fn's CPU time divided by n, in ns.
double ns_per(size_t n, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int r = 0; r < 7; r++) {
    const double c0 = cpu_now();
    fn();
    t.push_back((cpu_now() - c0) * 1e9 / double(n));
  }
  std::sort(t.begin(), t.end());
  return t[3];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string fx = argc > 1 ? argv[1] : R1_FIXTURES;
  std::ifstream f(fx + "/heldout.py.txt", std::ios::binary);
  if (!f) { std::fprintf(stderr, "cannot read %s/heldout.py.txt\n", fx.c_str()); return 2; }
  std::ostringstream ss;
  ss << f.rdbuf();
  r1::Tokenizer tok = r1::Tokenizer::load(r1::load_tokenizer_source(fx + "/models/tiny-qwen2-py"));
  const std::vector<int32_t> text = tok.encode(ss.str());
  const std::vector<int32_t> loop = [] {
    std::vector<int32_t> v;
    for (int i = 0; i < 60000; i++) v.push_back(100 + i % 37);
    return v;
  }();

  int fired = 0;
  for (auto [what, seq] : {std::pair{"held-out Python", &text}, std::pair{"a loop of 37 tokens", &loop}}) {
    const auto* ids = seq;  // a lambda may not capture a structured binding (C++17, clang)
    const double ns = ns_per(ids->size(), [&] {
      r1::LoopGuard g;
      for (int32_t t : *ids) fired += g.push(t);
    });
    std::printf("loop guard, %-20s %7zu tokens: %6.1f ns per token\n", what, ids->size(), ns);
  }

  // DRY: 152,064 logits (Qwen's vocabulary), histories of random tokens plus a repeated tail.
  const int64_t vocab = 152064;
  std::vector<float> logits(size_t(vocab), 0.0f);
  r1::DryParams p;
  p.multiplier = 0.8f;
  const r1::DryBreakers breakers(std::vector<std::vector<int32_t>>{{198}, {25}, {1}, {9}});
  std::mt19937 rng(1);
  for (int64_t n : {1024, 8192, 32768}) {
    std::vector<int32_t> h;
    for (int64_t i = 0; i < n; i++) h.push_back(int32_t(rng() % 150000));
    for (int i = 0; i < 64; i++) h[size_t(n - 64 + i)] = h[size_t(n / 2 + i)];  // a 64-token repeat
    const double ns = ns_per(10, [&] {
      for (int r = 0; r < 10; r++) r1::apply_dry(logits.data(), vocab, p, breakers, h);
    });
    std::printf("DRY, history of %6lld tokens: %8.1f us per token\n", (long long)n, ns / 1000);
  }
  return fired < 0;  // keeps the pushes
}
