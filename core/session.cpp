#include "core/session.h"

#include <algorithm>
#include <string>

#include "core/config.h"
#include "core/error.h"

namespace r1 {

std::vector<uint8_t> Session::kv_save() const { fail_usage("this backend cannot save its KV cache"); }
void Session::kv_load(const std::vector<uint8_t>&, int64_t) {
  fail_usage("this backend cannot restore a KV cache");
}
int32_t Session::forward_pick(int32_t, const SamplerParams&, double) { fail_input("internal: this backend does not pick tokens"); }
const float* Session::picked_logits() { fail_input("internal: this backend does not pick tokens"); }
void BatchSession::forward_pick(const int32_t*, const SlotRun*, int64_t, const RowPick*, int32_t*, float*) {
  fail_input("internal: this backend does not pick tokens");
}

static void check_tokens(const int32_t* tok, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; i++)
    if (tok[i] < 0 || tok[i] >= vocab)
      fail_input("token id " + std::to_string(tok[i]) + " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
}

int64_t check_pass(const Config& c, const int32_t* tok, const SlotRun* runs, int64_t n_runs, int64_t slots, int64_t ctx) {
  int64_t n = 0;
  for (int64_t s = 0; s < n_runs; s++) {
    const SlotRun& g = runs[s];
    if (g.slot < 0 || g.slot >= slots || g.n <= 0 || g.pos0 < 0 || g.pos0 + g.n > ctx)
      fail_input("internal: bad slot run (slot " + std::to_string(g.slot) + ", positions " + std::to_string(g.pos0) +
                 "+" + std::to_string(g.n) + ")");
    n += g.n;
  }
  if (n == 0) fail_input("internal: forward with no tokens");
  check_tokens(tok, n, c.vocab_size);
  return n;
}

void check_append(const int32_t* tokens, int64_t n, int64_t n_past, int64_t ctx, int64_t vocab) {
  if (n <= 0) fail_input("internal: forward with no tokens");
  if (n_past + n > ctx)
    fail_input("context full: " + std::to_string(n_past + n) + " tokens do not fit in --ctx " + std::to_string(ctx));
  check_tokens(tokens, n, vocab);  // all of them before any chunk runs: a refused prompt leaves the cache as it was
}

const float* append_in_chunks(BatchSession& b, const int32_t* tokens, int64_t n, bool all_logits, int64_t& n_past,
                              std::vector<float>& logits) {
  check_append(tokens, n, n_past, b.ctx(), b.vocab());
  if (all_logits) logits.resize(size_t(n * b.vocab()));
  const int64_t chunk = b.prefill_chunk();
  for (int64_t done = 0; done < n; done += chunk) {
    const int64_t len = std::min(chunk, n - done);
    SlotRun seg{0, n_past, len, all_logits ? SlotRun::All : done + len == n ? SlotRun::Last : SlotRun::None};
    b.forward(tokens + done, &seg, 1, logits.data() + (all_logits ? done * b.vocab() : 0));
    n_past += len;
  }
  return logits.data();
}

}  // namespace r1
