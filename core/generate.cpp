#include "core/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace r1 {

using Clock = std::chrono::steady_clock;
static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::Stop: return "stop";
    case Finish::Length: return "length";
    case Finish::Context: return "context";
    case Finish::Loop: return "loop";
    case Finish::Interrupted: return "interrupted";
  }
  return "?";
}

const char* think_end_name(const GenResult& r) {
  switch (r.think_end) {
    case ThinkEnd::None: return nullptr;
    case ThinkEnd::Stop: return "stop";
    case ThinkEnd::Budget: return "think_budget";
    case ThinkEnd::Loop: return "loop";
    case ThinkEnd::Open: return finish_name(r.finish);
  }
  return "?";
}

std::vector<int32_t> default_stop_ids(const std::vector<int32_t>& config_eos, const Tokenizer& tok) {
  std::vector<int32_t> ids = config_eos;
  if (tok.eos_id() >= 0) ids.push_back(tok.eos_id());
  // Llama-3 style end-of-turn markers, when the vocabulary has them
  for (const char* t : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|EOT|>"}) {
    int32_t id = tok.token_id(t);
    if (id >= 0) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

SeqDecoder::SeqDecoder(const Tokenizer& tok, const GenOptions& opt, const std::vector<int32_t>& prompt, int64_t ctx,
                       int64_t vocab, OnEvent on_event)
    : tok_(tok),
      opt_(opt),
      on_event_(std::move(on_event)),
      ctx_(ctx),
      vocab_(vocab),
      n_prompt_(int64_t(prompt.size())),
      think_open_(tok.token_id("<think>")),
      think_close_(tok.token_id("</think>")),
      dry_(opt.sampling.dry.on() && !opt.dry_breakers ? std::make_shared<DryBreakers>(tok, opt.sampling.dry.breakers)
                                                      : opt.dry_breakers),
      sampler_(opt.sampling, vocab, dry_.get()),
      history_(prompt),
      dec_(tok),
      in_think_(opt.starts_in_think) {
  res_.seed = opt.sampling.seed;
  if (in_think_) {
    res_.think_end = ThinkEnd::Open;
    emit(GenEvent::ThinkBegin, "", -1);
  }
  t_decode_ = t_think_ = Clock::now();
}

void SeqDecoder::emit(GenEvent::Kind k, std::string text, int32_t id) {
  if (k == GenEvent::Text && !in_think_ && after_think_) {
    size_t i = text.find_first_not_of("\r\n");
    text = i == std::string::npos ? "" : text.substr(i);
    if (!text.empty()) after_think_ = false;
  }
  if (k == GenEvent::Text && text.empty()) return;
  if (k == GenEvent::Text) (in_think_ ? res_.reasoning : res_.answer) += text;
  if (on_event_) on_event_(GenEvent{k, in_think_, text, id, res_.stats.think_tokens, res_.stats.think_s});
}

void SeqDecoder::finish(Finish f) {
  res_.finish = f;
  done_ = true;
  emit(GenEvent::Text, dec_.flush(), -1);
  if (in_think_) {
    res_.stats.think_tokens = think_count_;
    res_.stats.think_s = since(t_think_);
  }
  res_.stats.answer_tokens = answer_count_;
  res_.stats.decode_s = since(t_decode_);
}

void SeqDecoder::close_think(ThinkEnd why) {
  const std::string& m = opt_.think_budget_message;
  closing_ = tok_.encode(m.empty() ? std::string("\n") : "\n\n" + m + "\n");
  closing_.push_back(think_close_);
  closing_at_ = 0;
  closing_why_ = why;
}

bool SeqDecoder::on_loop() {
  const bool answer = opt_.on_loop == OnLoop::Auto || opt_.on_loop == OnLoop::Answer;
  if (in_think_ && answer && think_close_ >= 0) {
    close_think(ThinkEnd::Loop);
    return false;
  }
  finish(Finish::Loop);
  return true;
}

bool SeqDecoder::ready() {
  if (done_) return false;
  if (opt_.interrupt && opt_.interrupt->load()) { finish(Finish::Interrupted); return false; }
  if (opt_.stop_now && opt_.stop_now->load()) { finish(Finish::Stop); return false; }
  if (in_think_ && closing_.empty() && opt_.think_budget >= 0 && think_count_ >= opt_.think_budget && think_close_ >= 0)
    close_think(ThinkEnd::Budget);
  return true;
}

bool SeqDecoder::samples_next() { return ready() && closing_.empty(); }

double SeqDecoder::draw() { return opt_.sampling.temperature > 0 ? sampler_.draw() : 0.0; }

int32_t SeqDecoder::next(const float* logits) {
  if (!ready()) return -1;
  if (!closing_.empty()) {
    const int32_t t = closing_[closing_at_++];
    if (closing_at_ == closing_.size()) closing_.clear();
    return accept(t, true);
  }
  work_.assign(logits, logits + vocab_);
  return accept(sampler_.sample(work_.data(), history_), false);
}

int32_t SeqDecoder::next_picked(int32_t picked) {
  if (!ready()) return -1;
  if (!closing_.empty() || picked < 0 || picked >= vocab_) fail_input("internal: a picked token where none was asked");
  return accept(picked, false);
}

// r1's own tokens (`forced`: closing the reasoning) are run like the model's, but never stop it,
// never count as reasoning or answer, and never feed the loop guard.
int32_t SeqDecoder::accept(int32_t next, bool forced) {
  if (!forced && std::find(opt_.stop_ids.begin(), opt_.stop_ids.end(), next) != opt_.stop_ids.end()) {
    finish(Finish::Stop);
    return -1;
  }
  res_.ids.push_back(next);
  history_.push_back(next);
  res_.stats.completion_tokens++;
  // Sections: <think> opens reasoning (only as the first token), </think> closes it.
  if (next == think_open_ && res_.ids.size() == 1 && !in_think_) {
    in_think_ = true;
    res_.think_end = ThinkEnd::Open;
    emit(GenEvent::ThinkBegin, "", next);
    t_think_ = Clock::now();
  } else if (next == think_close_ && in_think_) {
    emit(GenEvent::Text, dec_.flush(), -1);
    res_.stats.think_tokens = think_count_;
    res_.stats.think_s = since(t_think_);
    res_.think_end = forced ? closing_why_ : ThinkEnd::Stop;
    in_think_ = false;
    after_think_ = true;
    guard_.reset();  // the answer is watched on its own
    emit(GenEvent::ThinkEnd, "", next);
    dec_ = StreamDecoder(tok_);
  } else {
    if (!forced) (in_think_ ? think_count_ : answer_count_)++;
    emit(GenEvent::Text, dec_.push(next), next);
    if (!forced && opt_.on_loop != OnLoop::Off && guard_.push(next) && on_loop()) return -1;
  }
  if (opt_.stop_now && opt_.stop_now->load()) { finish(Finish::Stop); return -1; }
  if (opt_.max_new >= 0 && res_.stats.completion_tokens >= opt_.max_new) { finish(Finish::Length); return -1; }
  if (opt_.max_answer >= 0 && answer_count_ >= opt_.max_answer) { finish(Finish::Length); return -1; }
  // positions filled: the prompt and every generated token but this one (not run yet)
  if (n_prompt_ + int64_t(res_.ids.size()) - 1 >= ctx_) { finish(Finish::Context); return -1; }
  return next;
}

Generator::Generator(Session& s, const Tokenizer& tok) : s_(s), tok_(tok) {}

void Generator::reset() {
  s_.truncate(0);
  cached_.clear();
  last_logits_.clear();
}

void Generator::resume(std::vector<int32_t> ids) {
  if (ids.empty() || int64_t(ids.size()) != s_.n_past()) fail_input("internal: resumed cache does not match its tokens");
  s_.truncate(s_.n_past() - 1);
  const float* logits = s_.forward(&ids.back(), 1);
  last_logits_.assign(logits, logits + s_.vocab());
  cached_ = std::move(ids);
}

const float* Generator::prefill(const std::vector<int32_t>& prompt, GenStats& st) {
  if (prompt.empty()) fail_input("empty prompt");
  if (int64_t(prompt.size()) >= s_.ctx())
    fail_input("the prompt is " + std::to_string(prompt.size()) + " tokens; the context holds " +
               std::to_string(s_.ctx()) + " (raise --ctx or shorten the prompt)");
  // Longest common prefix with what the cache holds; always run at least one token for logits.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) common++;
  if (common == prompt.size()) common--;
  s_.truncate(int64_t(common));
  cached_.resize(common);
  auto t0 = Clock::now();
  const int64_t n = int64_t(prompt.size() - common);
  const float* logits = s_.forward(prompt.data() + common, n);
  st.prefill_s = since(t0);
  st.prefilled_tokens = n;
  st.prompt_tokens = int64_t(prompt.size());
  cached_.insert(cached_.end(), prompt.begin() + int64_t(common), prompt.end());
  return logits;
}

GenResult Generator::generate(const std::vector<int32_t>& prompt, const GenOptions& opt,
                              const std::function<void(const GenEvent&)>& on_event) {
  validate(opt.sampling);
  GenStats prefill_stats;
  const float* logits = prefill(prompt, prefill_stats);
  SeqDecoder d(tok_, opt, prompt, s_.ctx(), s_.vocab(), on_event);
  d.result().stats = prefill_stats;
  // Where the session picks tokens itself (the GPU's token loop), only the token comes back; the
  // tokens r1 writes itself, and the first one (from the prompt's logits), take the logits.
  const bool pick = s_.picks(opt.sampling);
  bool picked = false;
  for (int32_t next = d.next(logits); next >= 0;) {
    picked = pick && d.samples_next();
    if (picked) {
      const double u = d.draw();
      const int32_t chosen = s_.forward_pick(next, opt.sampling, u);
      cached_.push_back(next);
      next = d.next_picked(chosen);
    } else {
      logits = s_.forward(&next, 1);
      cached_.push_back(next);
      next = d.next(logits);
    }
  }
  if (picked) logits = s_.picked_logits();
  last_logits_.assign(logits, logits + s_.vocab());
  return std::move(d.result());
}

}  // namespace r1
