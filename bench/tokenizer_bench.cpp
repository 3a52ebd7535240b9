// Encode throughput of the two full R1 tokenizers on 1 MB of mixed English, Chinese and Python
// (a benchmark, not a test). Usage: r1_tokenizer_bench [fixtures-dir]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <ctime>

#include "core/tokenizer.h"

#ifndef R1_FIXTURES
#define R1_FIXTURES "tests/fixtures"
#endif

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
// Thread CPU time too: wall time is noisy when the machine is shared.
double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// Deterministic pseudo-prose from fixed word lists, so runs are comparable.
std::string english(std::mt19937& rng, size_t bytes) {
  static const char* const w[] = {"the", "model", "reasons", "about", "a", "problem", "step", "by",
                                  "and", "then", "answers", "with", "confidence", "distilled", "from",
                                  "larger", "teacher", "tokens", "context", "window", "of", "It's",
                                  "we've", "numbers", "like", "3.14159", "2026", "or", "42", "in",
                                  "Wait,", "let", "me", "check:", "x^2", "+", "y", "=", "z."};
  std::string s;
  std::uniform_int_distribution<size_t> pick(0, std::size(w) - 1), nl(0, 40);
  while (s.size() < bytes) {
    s += w[pick(rng)];
    s += nl(rng) == 0 ? "\n\n" : " ";
  }
  return s;
}

std::string chinese(std::mt19937& rng, size_t bytes) {
  static const char* const p[] = {"深度求索", "推出了", "推理模型", "蒸馏", "小模型", "的", "开源",
                                  "加速", "也预示着", "垂直", "时代", "到来", "我们", "需要", "一步一步",
                                  "思考", "这个问题", "答案是", "，", "。", "（DeepSeek）", "数学", "代码"};
  std::string s;
  std::uniform_int_distribution<size_t> pick(0, std::size(p) - 1), nl(0, 30);
  while (s.size() < bytes) {
    s += p[pick(rng)];
    if (nl(rng) == 0) s += "\n";
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string fx = argc > 1 ? argv[1] : R1_FIXTURES;
  std::ifstream f(fx + "/heldout.py.txt", std::ios::binary);
  if (!f) { std::fprintf(stderr, "cannot read %s/heldout.py.txt\n", fx.c_str()); return 2; }
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string code = ss.str();

  std::mt19937 rng(7);
  std::string text;
  const size_t target = 1 << 20, part = 64 << 10;
  size_t code_off = 0;
  // Interleave 64 KB blocks of each kind so no tokenizer sees one kind only at the start.
  for (int k = 0; text.size() < target; ++k) {
    if (k % 3 == 0) text += english(rng, part);
    else if (k % 3 == 1) text += chinese(rng, part);
    else {
      text += code.substr(code_off, part);
      code_off = (code_off + part) % (code.size() - part);
    }
  }
  text.resize(target);
  while (!text.empty() && (uint8_t(text.back()) & 0xC0) == 0x80) text.pop_back();

  for (const char* name : {"deepseek-r1-qwen", "deepseek-r1-llama"}) {
    auto t0 = Clock::now();
    double c0 = cpu_now();
    r1::Tokenizer tok = r1::Tokenizer::load(r1::load_tokenizer_source(fx + "/tokenizers/" + name));
    auto t1 = Clock::now();
    double c1 = cpu_now();
    size_t n = tok.encode(text).size();  // cold: empty word cache
    auto t2 = Clock::now();
    double c2 = cpu_now();
    const int reps = 3;
    for (int r = 0; r < reps; ++r) n = tok.encode(text).size();
    auto t3 = Clock::now();
    double c3 = cpu_now();
    double mb = double(text.size()) / 1e6;
    std::printf("%-18s load %.3f s (cpu %.3f) | cold %.2f MB/s (cpu %.2f) | warm %.2f MB/s (cpu %.2f) | "
                "%zu tokens, %.2f bytes/token\n",
                name, secs(t0, t1), c1 - c0, mb / secs(t1, t2), mb / (c2 - c1), mb * reps / secs(t2, t3),
                mb * reps / (c3 - c2), n, double(text.size()) / double(n));
  }
  return 0;
}
