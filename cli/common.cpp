#include "cli/common.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/kv_cache.h"
#include "models/backend.h"
#include "quant/model_cache.h"

namespace r1::cli {

// Backslash escapes in a flag's value: \n, \t and \r; a backslash before anything else keeps
// that character. So a DRY breaker can be a newline.
static std::string unescape(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      o += s[i];
      continue;
    }
    const char c = s[++i];
    o += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
  }
  return o;
}

SamplerParams SamplingArgs::resolve(const SamplerParams& d) const {
  SamplerParams p = d;
  if (temp) p.temperature = *temp;
  if (top_p) p.top_p = *top_p;
  if (top_k) p.top_k = *top_k;
  if (min_p) p.min_p = *min_p;
  if (repeat_penalty) p.repetition_penalty = *repeat_penalty;
  if (dry_multiplier) p.dry.multiplier = *dry_multiplier;
  if (dry_base) p.dry.base = *dry_base;
  if (dry_allowed_length) p.dry.allowed_length = *dry_allowed_length;
  if (dry_last_n) p.dry.penalty_last_n = *dry_last_n;
  if (!dry_breakers.empty()) {
    p.dry.breakers.clear();
    if (!(dry_breakers.size() == 1 && dry_breakers[0] == "none"))
      for (const std::string& b : dry_breakers) p.dry.breakers.push_back(unescape(b));
  }
  p.seed = seed ? *seed : std::random_device{}();
  validate(p);
  return p;
}

void add_model_flags(CLI::App& app, ModelArgs& a, bool model_required) {
  auto* m = app.add_option("-m,--model", a.model,
                           "Model: an .r1m file, or a GGUF file or Hugging Face checkpoint directory (packed once into "
                           "$XDG_CACHE_HOME/r1 and reused while unchanged)");
  if (model_required) m->required();
  app.add_option("--ctx", a.ctx, "Context length in tokens (default: the model's, capped by memory and at 32768)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--threads", a.threads, "CPU threads (default: physical cores in this process's CPU set and quota)")->check(CLI::Range(1, 512));
  app.add_option("--kv", a.kv,
                 "KV cache precision: f16, q8 (8-bit, 56% of f16's memory; CPU only) or f32 (default: f16)")
      ->check(CLI::IsMember(kKvNames));
  app.add_option("--device", a.device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_flag("-v,--verbose", a.verbose, "Print model, context and timing details on stderr");
}

void add_template_flag(CLI::App& app, std::string& tmpl) {
  app.add_option("--template", tmpl, "Chat template: r1, chatml, llama3 or raw (default: from the model)")
      ->check(CLI::IsMember({"r1", "chatml", "llama3", "raw"}));
}

void add_think_flag(CLI::App& app, std::string& think) {
  app.add_option("--think", think,
                 "Reasoning: show (inline, dimmed on a terminal), hide, fold (on a terminal: a live token count, "
                 "then one summary line; else hide) or stderr (on stderr, so stdout holds the answer only) "
                 "(default: show on a terminal, hide otherwise)")
      ->check(CLI::IsMember(kThinkModes));
}

void add_sampling_flags(CLI::App& app, SamplingArgs& s) {
  app.add_option("--temp", s.temp, "Temperature; 0 is greedy (default: the model's, R1: 0.6)");
  app.add_option("--top-p", s.top_p, "Nucleus sampling mass (default: the model's, R1: 0.95)");
  app.add_option("--top-k", s.top_k, "Keep only the k most likely tokens (0: off)");
  app.add_option("--min-p", s.min_p, "Drop tokens below min-p times the top probability (0: off)");
  app.add_option("--repeat-penalty", s.repeat_penalty, "Repetition penalty (1: off)");
  // A whole number that fits 64 bits, as typed: CLI11 alone wraps -1 and 2^64 to one seed.
  const CLI::Validator whole_u64(
      [](std::string& v) -> std::string {
        errno = 0;
        char* end = nullptr;
        if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos &&
            (std::strtoull(v.c_str(), &end, 10), errno == 0))
          return "";
        return "expected a whole number from 0 to 18446744073709551615, got " + v;
      },
      "SEED");
  app.add_option("--seed", s.seed, "Random seed (same seed, same output)")->check(whole_u64);
  // DRY, as llama.cpp's flags of the same names
  app.add_option("--dry-multiplier", s.dry_multiplier, "DRY repetition penalty strength (0: off, the default; 0.8 is typical)");
  app.add_option("--dry-base", s.dry_base, "DRY: the penalty grows as base^(repeat length - allowed length) (default 1.75)");
  app.add_option("--dry-allowed-length", s.dry_allowed_length, "DRY: repeats this long are not penalized (default 2)");
  app.add_option("--dry-penalty-last-n", s.dry_last_n, "DRY: tokens looked at (default -1: all, 0: off)");
  app.add_option("--dry-sequence-breaker", s.dry_breakers,
                 "DRY: a string repeats do not reach across (repeatable; replaces the defaults \\n : \" *; "
                 "\"none\" for none)");
}

void add_reasoning_flags(CLI::App& app, ReasoningArgs& r) {
  app.add_option("--think-budget", r.think_budget,
                 "Reasoning tokens before r1 closes the reasoning (the message, then </think>) and the model "
                 "answers (default: no limit)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  app.add_option("--think-budget-message", r.message,
                 std::string("What closes reasoning cut short by the budget or the loop guard (default: \"") +
                     kThinkBudgetMessage + "\")");
  app.add_option("--on-loop", r.on_loop,
                 "When the text repeats itself in a loop: stop, answer (close the reasoning as the budget does) or "
                 "off (default: answer in the reasoning, stop in the answer)")
      ->check(CLI::IsMember({"stop", "answer", "off"}));
  app.add_option("--max-answer-tokens", r.max_answer, "Most tokens after the reasoning (default: -n alone caps the total)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
}

void ReasoningArgs::apply(GenOptions& o) const {
  o.think_budget = think_budget;
  o.max_answer = max_answer;
  o.think_budget_message = message;
  o.on_loop = on_loop == "stop" ? OnLoop::Stop : on_loop == "answer" ? OnLoop::Answer : on_loop == "off" ? OnLoop::Off : OnLoop::Auto;
}

std::shared_ptr<const DryBreakers> dry_breakers(const Tokenizer& tok, const SamplerParams& p) {
  return p.dry.on() ? std::make_shared<const DryBreakers>(tok, p.dry.breakers) : nullptr;
}

void advise_temperature(const ChatTemplate& t, const SamplerParams& p, bool quiet) {
  static bool said = false;
  if (quiet || said || p.temperature >= 0.5f || t.kind() != TemplateKind::R1) return;
  said = true;
  std::fprintf(stderr,
               "r1: %s: DeepSeek recommends temperature 0.5-0.7 (0.6) for the R1 distills \"to prevent endless "
               "repetitions or incoherent outputs\" (-q hides this)\n",
               p.temperature == 0 ? "greedy decoding" : "a temperature below 0.5");
}

nlohmann::json result_json(const GenResult& r) {
  const char* think = think_end_name(r);
  return {{"reasoning", r.reasoning},
          {"answer", r.answer},
          {"finish_reason", finish_name(r.finish)},
          {"reasoning_finish", think ? nlohmann::json(think) : nlohmann::json()},
          {"prompt_tokens", r.stats.prompt_tokens},
          {"completion_tokens", r.stats.completion_tokens},
          {"reasoning_tokens", r.stats.think_tokens},
          {"answer_tokens", r.stats.answer_tokens},
          {"seed", r.seed}};
}

int64_t choose_slots(const Config& c, int64_t ctx, KvFormat kv, int64_t want, bool explicit_want, int64_t runnable) {
  int64_t n = std::max<int64_t>(1, std::min(want, runnable));
  const uint64_t per = KVCache::bytes_for(c, ctx, kv), budget = available_memory() / 2;
  if (budget == 0 || per * uint64_t(n) <= budget) return n;
  const int64_t fit = int64_t(budget / per);
  if (fit >= 1 && !explicit_want) return std::min(n, fit);
  if (fit < 1) n = 1;  // not even one
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%lld sequences of %lld positions need %.2f GB of KV cache; %.2f GB is available for it (half of "
                "free memory): lower --max-concurrent, -n or --ctx",
                (long long)n, (long long)ctx, double(per) * double(n) / 1e9, double(budget) / 1e9);
  fail_usage(buf);
}

KvFormat kv_format(const std::string& flag, const std::string& value) {
  KvFormat f = KvFormat::F16;
  if (!parse_kv_format(value, &f)) fail_usage(flag + " " + value + ": expected f16, q8 or f32");
  return f;
}

// The weights' copy to a GPU, on stderr when it takes a while (over 4 GB).
static void upload_line(uint64_t done, uint64_t total) {
  if (total <= (4ull << 30)) return;
  if (done < total) std::fprintf(stderr, "\ruploading weights: %.1f / %.1f GB", double(done) / 1e9, double(total) / 1e9);
  else std::fprintf(stderr, "\ruploading weights: %.1f GB done%20s\n", double(total) / 1e9, "");
}

std::unique_ptr<Session> make_session(const Loaded& l) {
  return make_session(l.device, *l.rt.model, l.ctx, l.kv, *l.pool, upload_line);
}

std::unique_ptr<BatchSession> make_batch(const Loaded& l, int64_t n_slots, int64_t ctx) {
  return make_batch(l.device, *l.rt.model, n_slots, ctx, l.kv, *l.pool, upload_line);
}

PackBar::PackBar(bool on) : on_(on), t0_(std::chrono::steady_clock::now()) {}
PackBar::~PackBar() {
  if (on_ && drawn_) std::fprintf(stderr, "\r\033[K");
}
void PackBar::draw(size_t done, size_t total, uint64_t bytes_done, uint64_t bytes_total) {
  if (!on_) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  std::fprintf(stderr, "\r\033[Kpacking %zu/%zu tensors  %3.0f%%  %.1fs", done, total,
               100.0 * double(bytes_done) / double(bytes_total ? bytes_total : 1), secs);
  std::fflush(stderr);
  drawn_ = true;
}
void PackBar::line(const std::string& text) {
  if (on_ && drawn_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", text.c_str());
}

std::string model_file(const std::string& path, const ModelArgs& a) {
  PackBar bar(isatty(2));
  CacheOptions o;
  o.on_note = [&](const std::string& s) { bar.line("r1: " + s); };
  o.on_progress = [&](size_t d, size_t t, uint64_t bd, uint64_t bt) { bar.draw(d, t, bd, bt); };
  o.threads = a.threads;
  return resolve_model(path, o);
}

Loaded load_for_run(const ModelArgs& a, bool with_session) {
  Loaded l{Runtime::load(model_file(a.model, a)), nullptr, nullptr, 0, kv_format(a), "cpu"};
  l.device = choose_device(a.device, *l.rt.model, l.kv);
  int threads = a.threads > 0 ? a.threads : ThreadPool::default_threads();
  l.pool = std::make_unique<ThreadPool>(threads);
  l.ctx = choose_ctx(l.rt.model->cfg, a.ctx, l.kv, l.device == "cpu");
  if (with_session) l.session = make_session(l);
  return l;
}

std::string describe(const Loaded& l, const ModelArgs& a) {
  const Config& c = l.rt.model->cfg;
  char buf[512];
  const int nt = l.pool ? l.pool->size() : 0;
  const std::string dev =
      l.device == "cuda" ? std::string("cuda") : "cpu, " + std::to_string(nt) + (nt == 1 ? " thread" : " threads");
  std::snprintf(buf, sizeof buf, "%s: %s %lld layers, %.2f GB of weights | %s | ctx %lld (kv %s) | loaded in %.2fs",
                std::filesystem::path(a.model).filename().c_str(), c.arch_name(), (long long)c.n_layers,
                double(l.rt.model->file->size()) / 1e9, dev.c_str(), (long long)l.ctx, a.kv.c_str(), l.rt.load_s);
  return buf;
}

std::atomic<bool>& interrupted() {
  static std::atomic<bool> flag{false};
  return flag;
}

static void on_interrupt(int) { interrupted().store(true); }

void install_interrupt() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace r1::cli
