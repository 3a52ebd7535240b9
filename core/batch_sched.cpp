#include "core/batch_sched.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "core/error.h"

namespace r1 {

namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
  bool busy = false;
  BatchJob job;
  int64_t filled = 0;              // positions in the cache: prompt chunks run, then tokens run
  std::optional<SeqDecoder> dec;   // once the whole prompt has run
  int32_t next = -1;               // the token to run in the next pass
  Clock::time_point t_admit;
};

}  // namespace

bool run_batched(BatchSession& s, const Tokenizer& tok, const std::function<bool(BatchJob&)>& next_job,
                 const std::function<void(const BatchJob&, GenResult&)>& on_done, const BatchPlan& plan) {
  const int64_t S = s.slots(), V = s.vocab();
  std::vector<Slot> slots(static_cast<size_t>(S));
  std::vector<float> logits(size_t(S * V));  // one row per run at most, a slot at most once per pass
  std::vector<int32_t> tokens;
  std::vector<SlotRun> runs;
  bool more = true;
  auto stopped = [&] { return plan.interrupt && plan.interrupt->load(); };

  for (;;) {
    if (stopped()) return false;
    for (auto& sl : slots) {  // refill free slots
      if (sl.busy || !more) continue;
      if (!(more = next_job(sl.job))) break;
      if (sl.job.prompt.empty()) fail_input("internal: empty prompt in a batch job");
      if (int64_t(sl.job.prompt.size()) >= s.ctx()) fail_input("internal: batch prompt does not fit its slot");
      validate(sl.job.opt.sampling);
      sl.job.opt.interrupt = plan.interrupt;
      sl.busy = true;
      sl.filled = 0;
      sl.dec.reset();
      sl.t_admit = Clock::now();
    }

    // The pass: one token of each decoding slot, then prompt chunks within the row budget.
    tokens.clear();
    runs.clear();
    for (int64_t i = 0; i < S; i++) {
      Slot& sl = slots[size_t(i)];
      if (!sl.busy || !sl.dec) continue;
      runs.push_back({i, sl.filled, 1, SlotRun::Last});
      tokens.push_back(sl.next);
    }
    const int64_t chunk = s.prefill_chunk();
    int64_t budget = plan.prefill_rows > 0 ? plan.prefill_rows : 2 * chunk;
    bool any_prefill = false;
    for (int64_t i = 0; i < S; i++) {
      Slot& sl = slots[size_t(i)];
      if (!sl.busy || sl.dec) continue;
      const int64_t left = int64_t(sl.job.prompt.size()) - sl.filled, len = std::min(chunk, left);
      if (any_prefill && len > budget) break;
      const bool last = len == left;
      runs.push_back({i, sl.filled, len, last ? SlotRun::Last : SlotRun::None});
      tokens.insert(tokens.end(), sl.job.prompt.begin() + sl.filled, sl.job.prompt.begin() + sl.filled + len);
      budget -= len;
      any_prefill = true;
    }
    if (runs.empty()) return true;  // nothing running and no job left
    s.forward(tokens.data(), runs.data(), int64_t(runs.size()), logits.data());

    // Advance every slot; sample where there are logits; report and free the finished ones.
    int64_t row = 0;
    for (const SlotRun& g : runs) {
      Slot& sl = slots[size_t(g.slot)];
      sl.filled += g.n;
      if (g.logits == SlotRun::None) continue;
      const float* lg = logits.data() + row++ * V;
      if (!sl.dec) {  // prompt complete: decoding starts
        sl.dec.emplace(tok, sl.job.opt, sl.job.prompt, s.ctx(), V);
        GenStats& st = sl.dec->result().stats;
        st.prompt_tokens = st.prefilled_tokens = int64_t(sl.job.prompt.size());
        st.prefill_s = std::chrono::duration<double>(Clock::now() - sl.t_admit).count();
      }
      const int32_t nx = sl.dec->next(lg);
      if (nx >= 0) {
        sl.next = nx;
        continue;
      }
      if (sl.dec->result().finish != Finish::Interrupted) on_done(sl.job, sl.dec->result());
      sl.busy = false;
      sl.dec.reset();
    }
  }
}

}  // namespace r1
