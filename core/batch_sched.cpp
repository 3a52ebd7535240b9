#include "core/batch_sched.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace r1 {

using Clock = std::chrono::steady_clock;

struct BatchScheduler::Slot {
  bool busy = false;
  BatchJob job;
  std::vector<int32_t> cached;     // tokens whose keys and values are in the slot, in order
  int64_t reused = 0;              // of the prompt, found cached at admission
  std::optional<SeqDecoder> dec;   // once the whole prompt has run
  int32_t next = -1;               // the token to run in the next pass
  Clock::time_point t_admit;
};

BatchScheduler::BatchScheduler(BatchSession& s, const Tokenizer& tok, BatchPlan plan)
    : s_(s), tok_(tok), plan_(plan), slots_(size_t(s.slots())) {}

BatchScheduler::~BatchScheduler() = default;

void BatchScheduler::admit(BatchJob& job) {
  int64_t best = -1, best_len = -1;
  for (int64_t i = 0; i < int64_t(slots_.size()); i++) {
    const Slot& sl = slots_[size_t(i)];
    if (sl.busy) continue;
    int64_t len = 0;
    if (plan_.reuse_prefix) {
      // at least the prompt's last token runs again: its logits start the decoding
      const size_t cap = std::min(sl.cached.size(), job.prompt.size() - 1);
      while (size_t(len) < cap && sl.cached[size_t(len)] == job.prompt[size_t(len)]) len++;
    }
    // ties go to the slot holding least, so an unrelated job does not evict a conversation
    // while an emptier slot is free
    const bool emptier = plan_.reuse_prefix && len == best_len && sl.cached.size() < slots_[size_t(best)].cached.size();
    if (len > best_len || emptier) best = i, best_len = len;
  }
  Slot& sl = slots_[size_t(best)];
  sl.job = std::move(job);
  sl.job.opt.interrupt = plan_.interrupt;
  sl.busy = true;
  sl.cached.resize(size_t(best_len));
  sl.reused = best_len;
  sl.dec.reset();
  sl.t_admit = Clock::now();
}

bool BatchScheduler::run(const std::function<bool(BatchJob&)>& next_job,
                         const std::function<void(const BatchJob&, GenResult&)>& on_done) {
  const int64_t S = s_.slots(), V = s_.vocab();
  std::vector<float> logits(size_t(S * V));  // one row per run at most, a slot at most once per pass
  std::vector<int32_t> tokens;
  std::vector<SlotRun> runs;
  std::vector<BatchSession::RowPick> picks;
  std::vector<int32_t> picked(static_cast<size_t>(S));
  auto stopped = [&] { return plan_.interrupt && plan_.interrupt->load(); };
  auto drop = [](Slot& sl) {
    sl.busy = false;
    sl.dec.reset();
    sl.job = BatchJob{};  // lets go of the caller's callbacks
  };

  for (;;) {
    if (stopped()) {
      for (auto& sl : slots_) drop(sl);
      return false;
    }
    for (auto& sl : slots_)
      if (sl.busy && sl.job.cancel && sl.job.cancel->load()) drop(sl);
    // refill free slots
    int64_t free = 0;
    for (auto& sl : slots_) free += !sl.busy;
    for (; free > 0; free--) {
      BatchJob job;
      if (!next_job(job)) break;
      if (job.prompt.empty()) fail_input("internal: empty prompt in a batch job");
      if (int64_t(job.prompt.size()) >= s_.ctx()) fail_input("internal: batch prompt does not fit its slot");
      validate(job.opt.sampling);
      admit(job);
    }

    // The pass: one token of each decoding slot, then prompt chunks within the row budget.
    tokens.clear();
    runs.clear();
    for (int64_t i = 0; i < S; i++) {
      Slot& sl = slots_[size_t(i)];
      if (!sl.busy || !sl.dec) continue;
      runs.push_back({i, int64_t(sl.cached.size()), 1, SlotRun::Last});
      tokens.push_back(sl.next);
    }
    const int64_t chunk = s_.prefill_chunk();
    int64_t budget = plan_.prefill_rows > 0 ? plan_.prefill_rows : 2 * chunk;
    bool any_prefill = false;
    for (int64_t i = 0; i < S; i++) {
      Slot& sl = slots_[size_t(i)];
      if (!sl.busy || sl.dec) continue;
      const int64_t filled = int64_t(sl.cached.size());
      const int64_t left = int64_t(sl.job.prompt.size()) - filled, len = std::min(chunk, left);
      if (any_prefill && len > budget) break;
      const bool last = len == left;
      runs.push_back({i, filled, len, last ? SlotRun::Last : SlotRun::None});
      tokens.insert(tokens.end(), sl.job.prompt.begin() + filled, sl.job.prompt.begin() + filled + len);
      budget -= len;
      any_prefill = true;
    }
    if (runs.empty()) return true;  // nothing running and no job waiting
    // Decoding rows whose next token the backend can pick (the GPU's token loop) take one draw
    // of their own sequence's generator now, and get the token instead of logits. picks are by
    // wanted row: the decoding runs come first, a row each, so their row r is run r.
    picks.assign(runs.size(), {});
    bool any_pick = false;
    for (size_t r = 0; r < runs.size(); r++) {
      Slot& sl = slots_[size_t(runs[r].slot)];
      if (!sl.dec || !s_.picks(sl.job.opt.sampling) || !sl.dec->samples_next()) continue;
      picks[r] = {&sl.job.opt.sampling, sl.dec->draw()};
      any_pick = true;
    }
    if (any_pick) s_.forward_pick(tokens.data(), runs.data(), int64_t(runs.size()), picks.data(), picked.data(), logits.data());
    else s_.forward(tokens.data(), runs.data(), int64_t(runs.size()), logits.data());

    // Advance every slot; sample where there are logits; report and free the finished ones.
    int64_t row = 0;
    size_t at = 0;
    for (const SlotRun& g : runs) {
      Slot& sl = slots_[size_t(g.slot)];
      sl.cached.insert(sl.cached.end(), tokens.begin() + int64_t(at), tokens.begin() + int64_t(at) + g.n);
      at += size_t(g.n);
      if (g.logits == SlotRun::None) continue;
      const int64_t r = row++;
      const float* lg = logits.data() + r * V;
      if (!sl.dec) {  // prompt complete: decoding starts
        sl.dec.emplace(tok_, sl.job.opt, sl.job.prompt, s_.ctx(), V, sl.job.on_event);
        GenStats& st = sl.dec->result().stats;
        st.prompt_tokens = int64_t(sl.job.prompt.size());
        st.prefilled_tokens = st.prompt_tokens - sl.reused;
        st.prefill_s = std::chrono::duration<double>(Clock::now() - sl.t_admit).count();
      }
      const int32_t nx = picks[size_t(r)].p ? sl.dec->next_picked(picked[size_t(r)]) : sl.dec->next(lg);
      if (nx >= 0) {
        sl.next = nx;
        continue;
      }
      if (sl.dec->result().finish != Finish::Interrupted) on_done(sl.job, sl.dec->result());
      drop(sl);
    }
  }
}

bool run_batched(BatchSession& s, const Tokenizer& tok, const std::function<bool(BatchJob&)>& next_job,
                 const std::function<void(const BatchJob&, GenResult&)>& on_done, const BatchPlan& plan) {
  BatchScheduler sched(s, tok, plan);
  return sched.run(next_job, on_done);
}

}  // namespace r1
