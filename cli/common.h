// Flags shared by the commands that run a model (run, chat, batch, score, bench).
#pragma once
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/generate.h"
#include "models/runtime.h"
#include "core/sampler.h"
#include "core/threadpool.h"

namespace r1::cli {

struct ModelArgs {
  std::string model;
  int64_t ctx = 0;  // 0: automatic
  int threads = 0;  // 0: physical cores
  std::string kv = "f16";
  std::string device = "auto";
  bool verbose = false;
};

struct SamplingArgs {
  std::optional<float> temp, top_p, min_p, repeat_penalty, dry_multiplier, dry_base;
  std::optional<int> top_k, dry_allowed_length;
  std::optional<int64_t> dry_last_n;
  std::vector<std::string> dry_breakers;  // as given (escapes not yet processed); none: the defaults
  std::optional<uint64_t> seed;
  // The file's defaults overridden by the flags given; a random seed unless one is given.
  SamplerParams resolve(const SamplerParams& defaults) const;
};

// How the reasoning is kept in bounds (run, chat, batch): GenOptions' think_budget,
// think_budget_message, on_loop and max_answer.
struct ReasoningArgs {
  int64_t think_budget = -1, max_answer = -1;
  std::string message = kThinkBudgetMessage;
  std::string on_loop;  // "": the default (answer in the reasoning, stop in the answer)
  void apply(GenOptions& o) const;
};

void add_model_flags(CLI::App& app, ModelArgs& a, bool model_required = true);
void add_sampling_flags(CLI::App& app, SamplingArgs& s);
void add_reasoning_flags(CLI::App& app, ReasoningArgs& r);
// The DRY sequence breakers of p against the vocabulary, made once for every sequence that
// samples with p (null when DRY is off).
std::shared_ptr<const DryBreakers> dry_breakers(const Tokenizer& tok, const SamplerParams& p);
// DeepSeek's advice, once per process on stderr, when an R1 distill (prompted with the R1 chat
// template) samples greedily or below temperature 0.5.
void advise_temperature(const ChatTemplate& t, const SamplerParams& p, bool quiet);
// The fields every result reports (run --json, batch lines): reasoning, answer, finish_reason,
// reasoning_finish, token counts, seed.
nlohmann::json result_json(const GenResult& r);
// --template r1|chatml|llama3|raw (empty: the model's own)
void add_template_flag(CLI::App& app, std::string& tmpl);
// --think: how the reasoning is shown, the same words for run and chat (and chat's /think).
inline const std::vector<std::string> kThinkModes = {"show", "hide", "fold", "stderr"};
void add_think_flag(CLI::App& app, std::string& think);

// A loaded model with a CPU session sized from the flags (none with with_session false:
// the caller makes its own, e.g. r1 batch's many-slot one, from ctx and kv).
struct Loaded {
  Runtime rt;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Session> session;
  int64_t ctx = 0;
  KvFormat kv = KvFormat::F16;
  std::string device = "cpu";  // what --device resolved to
};
Loaded load_for_run(const ModelArgs& a, bool with_session = true);
// The packer's progress bar on stderr (only when `on`: a terminal), and lines printed past it;
// the bar is cleared at the end.
class PackBar {
 public:
  explicit PackBar(bool on);
  ~PackBar();
  void draw(size_t done, size_t total, uint64_t bytes_done, uint64_t bytes_total);
  void line(const std::string& text);

 private:
  bool on_, drawn_ = false;
  std::chrono::steady_clock::time_point t0_;
};
// The .r1m for a model argument: the file, or a GGUF file or checkpoint directory packed into
// the user's cache (quant/model_cache.h), with progress on a terminal.
std::string model_file(const std::string& path, const ModelArgs& a);
// A KV format flag's value (flag: its name, for the error); kKvNames is what the flags accept.
inline const std::vector<std::string> kKvNames = {"f16", "q8", "f32"};
KvFormat kv_format(const std::string& flag, const std::string& value);
inline KvFormat kv_format(const ModelArgs& a) { return kv_format("--kv", a.kv); }
// Sequences run at once (batch, serve): `want`, no more than `runnable`, and KV slots of ctx
// positions within half the available memory. An explicit want that does not fit is a usage
// error; the default shrinks to what fits.
int64_t choose_slots(const Config& c, int64_t ctx, KvFormat kv, int64_t want, bool explicit_want, int64_t runnable);
// A session or many-slot batch on the device chosen at load (models/backend.h).
std::unique_ptr<Session> make_session(const Loaded& l);
std::unique_ptr<BatchSession> make_batch(const Loaded& l, int64_t n_slots, int64_t ctx);
std::string describe(const Loaded& l, const ModelArgs& a);  // one line: model, device, ctx, load time

// SIGINT/SIGTERM set this flag instead of killing the process (after install_interrupt()).
std::atomic<bool>& interrupted();
void install_interrupt();

}  // namespace r1::cli
