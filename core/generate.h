// Generation, shared by run, chat and batch: reuse the cached prefix, prefill the rest, then
// sample token by token until a stop token, the token cap, the context limit, a loop or an
// interrupt. Splits the model's reasoning (<think> ... </think>) from its answer as it streams,
// and keeps the reasoning in bounds: a think budget and the loop guard close it with a short
// message and "</think>" so that the model answers. The per-token decisions live in SeqDecoder,
// which Generator (one sequence) and the batch scheduler (many, core/batch_sched.h) both drive;
// everything a request asks for is in GenOptions, everything it got in GenResult.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/loop_guard.h"
#include "core/sampler.h"
#include "core/session.h"
#include "core/tokenizer.h"

namespace r1 {

// Why generation ended: a stop token, the token cap (-n, or the answer's own), the context, the
// loop guard (--on-loop stop, or a loop in the answer), an interrupt.
enum class Finish { Stop, Length, Context, Loop, Interrupted };
const char* finish_name(Finish f);  // "stop", "length", "context", "loop", "interrupted"

// How the reasoning ended: none was started; the model wrote "</think>"; r1 closed it at the
// think budget or on a loop; or it was still open when generation ended (then: the finish).
enum class ThinkEnd { None, Stop, Budget, Loop, Open };

// What the loop guard does: Auto answers when the loop is in the reasoning (as the budget does)
// and stops when it is in the answer; Answer and Stop do that everywhere (an answer that loops
// stops either way); Off never looks.
enum class OnLoop { Auto, Stop, Answer, Off };

inline constexpr const char* kThinkBudgetMessage = "Time is up; answering now.";

struct GenOptions {
  int64_t max_new = -1;               // all generated tokens; -1: until the context is full
  int64_t max_answer = -1;            // tokens after the reasoning; -1: no cap of its own
  SamplerParams sampling;
  bool starts_in_think = false;       // the prompt ended with "<think>\n"
  int64_t think_budget = -1;          // reasoning tokens before r1 closes it; -1: none
  // Written (as "\n\n" message "\n", then "</think>") where r1 closes the reasoning; "": only "\n".
  std::string think_budget_message = kThinkBudgetMessage;
  OnLoop on_loop = OnLoop::Auto;
  // sampling.dry.breakers against the vocabulary; made from the tokenizer when null and DRY is on
  // (share one across sequences: making it reads the whole vocabulary).
  std::shared_ptr<const DryBreakers> dry_breakers;
  std::vector<int32_t> stop_ids;      // end-of-sentence and other stop tokens
  const std::atomic<bool>* interrupt = nullptr;
  // Set by the caller once it has what it wants (r1 serve: a stop string in the answer): the
  // sequence ends as at a stop token, after the token that set it.
  const std::atomic<bool>* stop_now = nullptr;
};

struct GenStats {
  // completion: every generated token (the reasoning, what r1 wrote to close it, the answer);
  // think: the model's reasoning tokens; answer: the model's tokens after the reasoning (all of
  // them when there was none).
  int64_t prompt_tokens = 0, prefilled_tokens = 0, completion_tokens = 0, think_tokens = 0, answer_tokens = 0;
  double prefill_s = 0, decode_s = 0, think_s = 0;
  double prefill_tps() const { return prefill_s > 0 ? double(prefilled_tokens) / prefill_s : 0; }
  double decode_tps() const { return decode_s > 0 && completion_tokens > 1 ? double(completion_tokens - 1) / decode_s : 0; }
};

struct GenResult {
  std::string reasoning, answer;
  std::vector<int32_t> ids;  // generated ids, including any </think>, excluding the stop token
  Finish finish = Finish::Stop;
  ThinkEnd think_end = ThinkEnd::None;
  uint64_t seed = 0;  // the sampler's
  GenStats stats;
};

// How the reasoning ended, for reports: "stop" (the model closed it), "think_budget", "loop", or
// the finish while it was still open; nullptr when there was no reasoning.
const char* think_end_name(const GenResult& r);

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
// the next token (sampled with the sequence's own sampler and seed, or the closing of the
// reasoning that r1 writes at the think budget or a loop), the stop/cap/context/loop checks, and
// the streamed reasoning and answer text. Its state is its own, so a sequence decodes the same
// alone or in a batch.
class SeqDecoder {
 public:
  using OnEvent = std::function<void(const GenEvent&)>;
  // ctx: positions the sequence may fill. Emits ThinkBegin if the prompt opened the reasoning.
  SeqDecoder(const Tokenizer& tok, const GenOptions& opt, const std::vector<int32_t>& prompt, int64_t ctx,
             int64_t vocab, OnEvent on_event = {});
  // logits: [vocab] of the last position run. Returns the token to run next, or -1 once the
  // sequence is done (result().finish says why).
  int32_t next(const float* logits);
  // The same for a token picked from those logits elsewhere (Session::forward_pick), where
  // samples_next() says the next token is sampled (not one r1 writes itself, not the end), with
  // draw(): this sequence's next uniform draw (0 when greedy).
  bool samples_next();
  double draw();
  int32_t next_picked(int32_t picked);
  bool done() const { return done_; }
  // The text and ids so far; complete once done(). Its prefill stats are the caller's to fill.
  GenResult& result() { return res_; }

 private:
  void emit(GenEvent::Kind k, std::string text, int32_t id);
  void finish(Finish f);
  bool ready();  // the checks before a token (interrupt, stop, think budget): false once done
  int32_t accept(int32_t next, bool forced);
  void close_think(ThinkEnd why);  // queues the message and "</think>"
  bool on_loop();                  // the guard fired: true when generation stops
  const Tokenizer& tok_;
  GenOptions opt_;
  OnEvent on_event_;
  int64_t ctx_, vocab_, n_prompt_;
  int32_t think_open_, think_close_;
  std::shared_ptr<const DryBreakers> dry_;
  Sampler sampler_;
  LoopGuard guard_;
  std::vector<int32_t> closing_;  // tokens r1 still has to write to close the reasoning
  size_t closing_at_ = 0;
  ThinkEnd closing_why_ = ThinkEnd::None;
  std::vector<float> work_;
  std::vector<int32_t> history_;  // prompt and generated ids (for the repetition penalty and DRY)
  GenResult res_;
  StreamDecoder dec_;
  bool in_think_, after_think_ = false;  // after_think: the answer's leading newlines are dropped
  bool done_ = false;
  int64_t think_count_ = 0, answer_count_ = 0;
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
