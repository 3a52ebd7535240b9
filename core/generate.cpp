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
    case Finish::Context: return "length";
    case Finish::Interrupted: return "interrupted";
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

Generator::Generator(Session& s, const Tokenizer& tok) : s_(s), tok_(tok) {
  think_open_ = tok.token_id("<think>");
  think_close_ = tok.token_id("</think>");
}

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
  GenResult res;
  const float* logits = prefill(prompt, res.stats);
  const int64_t vocab = s_.vocab();
  Sampler sampler(opt.sampling, vocab);
  std::vector<float> work;
  std::vector<int32_t> history = prompt;

  bool in_think = opt.starts_in_think;
  StreamDecoder dec(tok_);
  bool after_think = false;  // the answer follows "</think>\n\n": its leading newlines are dropped
  auto emit = [&](GenEvent::Kind k, std::string text, int32_t id) {
    if (k == GenEvent::Text && !in_think && after_think) {
      size_t i = text.find_first_not_of("\r\n");
      text = i == std::string::npos ? "" : text.substr(i);
      if (!text.empty()) after_think = false;
    }
    if (k == GenEvent::Text && text.empty()) return;
    if (k == GenEvent::Text) (in_think ? res.reasoning : res.answer) += text;
    if (on_event) on_event(GenEvent{k, in_think, text, id, res.stats.think_tokens, res.stats.think_s});
  };
  if (in_think) emit(GenEvent::ThinkBegin, "", -1);

  auto t_decode = Clock::now();
  auto t_think = Clock::now();
  int64_t think_count = 0;
  for (;;) {
    if (opt.interrupt && opt.interrupt->load()) { res.finish = Finish::Interrupted; break; }
    int32_t next;
    const bool force_close = in_think && opt.think_budget >= 0 && think_count >= opt.think_budget && think_close_ >= 0;
    if (force_close) {
      next = think_close_;
    } else {
      work.assign(logits, logits + vocab);
      next = sampler.sample(work.data(), history);
    }
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), next) != opt.stop_ids.end()) {
      res.finish = Finish::Stop;
      break;
    }
    res.ids.push_back(next);
    history.push_back(next);
    res.stats.completion_tokens++;
    // Sections: <think> opens reasoning (only as the first token), </think> closes it.
    if (next == think_open_ && res.ids.size() == 1 && !in_think) {
      in_think = true;
      emit(GenEvent::ThinkBegin, "", next);
      t_think = Clock::now();
    } else if (next == think_close_ && in_think) {
      emit(GenEvent::Text, dec.flush(), -1);
      res.stats.think_tokens = think_count;
      res.stats.think_s = since(t_think);
      in_think = false;
      after_think = true;
      emit(GenEvent::ThinkEnd, "", next);
      dec = StreamDecoder(tok_);
    } else {
      if (in_think) think_count++;
      emit(GenEvent::Text, dec.push(next), next);
    }
    if (opt.max_new >= 0 && res.stats.completion_tokens >= opt.max_new) { res.finish = Finish::Length; break; }
    if (s_.n_past() >= s_.ctx()) { res.finish = Finish::Context; break; }
    logits = s_.forward(&next, 1);
    cached_.push_back(next);
  }
  emit(GenEvent::Text, dec.flush(), -1);
  if (in_think) {
    res.stats.think_tokens = think_count;
    res.stats.think_s = since(t_think);
  }
  res.stats.decode_s = since(t_decode);
  last_logits_.assign(logits, logits + vocab);
  return res;
}

}  // namespace r1
