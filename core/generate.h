// Generation, shared by run, chat and batch: reuse the cached prefix, prefill the rest, then
// sample token by token until a stop token, the token cap, the context limit or an interrupt.
// Splits the model's reasoning (<think> ... </think>) from its answer as it streams. The
// per-token decisions live in SeqDecoder, which Generator (one sequence) and the batch
// scheduler (many, core/batch_sched.h) both drive.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/sampler.h"
#include "core/session.h"
#include "core/tokenizer.h"

namespace r1 {

enum class Finish { Stop, Length, Context, Interrupted };
const char* finish_name(Finish f);  // "stop", "length", "length" (context), "interrupted"

struct GenOptions {
  int64_t max_new = -1;               // -1: until the context is full
  SamplerParams sampling;
  bool starts_in_think = false;       // the prompt ended with "<think>\n"
  int64_t think_budget = -1;          // reasoning tokens before "</think>" is forced; -1: none
  std::vector<int32_t> stop_ids;      // end-of-sentence and other stop tokens
  const std::atomic<bool>* interrupt = nullptr;
};

struct GenStats {
  int64_t prompt_tokens = 0, prefilled_tokens = 0, completion_tokens = 0, think_tokens = 0;
  double prefill_s = 0, decode_s = 0, think_s = 0;
  double prefill_tps() const { return prefill_s > 0 ? double(prefilled_tokens) / prefill_s : 0; }
  double decode_tps() const { return decode_s > 0 && completion_tokens > 1 ? double(completion_tokens - 1) / decode_s : 0; }
};

struct GenResult {
  std::string reasoning, answer;
  std::vector<int32_t> ids;  // generated ids, including any </think>, excluding the stop token
  Finish finish = Finish::Stop;
  GenStats stats;
};

// A piece of streamed text: reasoning or answer, or a section boundary.
struct GenEvent {
  enum Kind { Text, ThinkBegin, ThinkEnd } kind = Text;
  bool in_think = false;
  std::string text;
  int32_t id = -1;
  // Reasoning so far, as of a ThinkEnd (for a summary line).
  int64_t think_tokens = 0;
  double think_s = 0;
};

// One sequence's decoding after its prompt is in the cache: from the logits of the last token run,
// the next token (sampled with the sequence's own sampler and seed, or a forced "</think>" at the
// think budget), the stop/cap/context checks, and the streamed reasoning and answer text.
class SeqDecoder {
 public:
  using OnEvent = std::function<void(const GenEvent&)>;
  // ctx: positions the sequence may fill. Emits ThinkBegin if the prompt opened the reasoning.
  SeqDecoder(const Tokenizer& tok, const GenOptions& opt, const std::vector<int32_t>& prompt, int64_t ctx,
             int64_t vocab, OnEvent on_event = {});
  // logits: [vocab] of the last position run. Returns the token to run next, or -1 once the
  // sequence is done (result().finish says why).
  int32_t next(const float* logits);
  bool done() const { return done_; }
  // The text and ids so far; complete once done(). Its prefill stats are the caller's to fill.
  GenResult& result() { return res_; }

 private:
  void emit(GenEvent::Kind k, std::string text, int32_t id);
  void finish(Finish f);
  const Tokenizer& tok_;
  GenOptions opt_;
  OnEvent on_event_;
  int64_t ctx_, vocab_, n_prompt_;
  int32_t think_open_, think_close_;
  Sampler sampler_;
  std::vector<float> work_;
  std::vector<int32_t> history_;  // prompt and generated ids (for the repetition penalty)
  GenResult res_;
  StreamDecoder dec_;
  bool in_think_, after_think_ = false;  // after_think: the answer's leading newlines are dropped
  bool done_ = false;
  int64_t think_count_ = 0;
  std::chrono::steady_clock::time_point t_decode_, t_think_;
};

class Generator {
 public:
  Generator(Session& s, const Tokenizer& tok);
  // Generates after `prompt` (the full conversation so far). Tokens already in the session's
  // cache that match the prompt's start are not run again.
  GenResult generate(const std::vector<int32_t>& prompt, const GenOptions& opt,
                     const std::function<void(const GenEvent&)>& on_event = {});
  // Tokens whose keys and values are in the cache, in order.
  const std::vector<int32_t>& cached() const { return cached_; }
  void set_cached(std::vector<int32_t> ids) { cached_ = std::move(ids); }
  void reset();
  // Logits of the last cached position, as of the last forward (for tests and /save).
  const std::vector<float>& last_logits() const { return last_logits_; }
  // The session's cache was restored from elsewhere (a saved chat) and holds `ids`: adopts them
  // as the cached prefix and recomputes the last position's logits by re-running only the last
  // token (positions before it are read from the restored cache).
  void resume(std::vector<int32_t> ids);

 private:
  const float* prefill(const std::vector<int32_t>& prompt, GenStats& st);
  Session& s_;
  const Tokenizer& tok_;
  std::vector<int32_t> cached_;
  std::vector<float> last_logits_;
};

// Stop tokens of a model: its config's eos ids, the tokenizer's eos, and any generation-config eos.
std::vector<int32_t> default_stop_ids(const std::vector<int32_t>& config_eos, const Tokenizer& tok);

}  // namespace r1
