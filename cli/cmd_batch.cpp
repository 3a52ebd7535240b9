// r1 batch: many prompts from a file to a JSONL file of results, exactly once per id, resumable
// after a kill, and splittable into shards for a cluster scheduler. Records run with continuous
// batching (core/batch_sched.h) over a many-slot CPU session.
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/term.h"
#include "core/batch_io.h"
#include "core/batch_sched.h"
#include "core/error.h"
#include "core/generate.h"
#include "core/kv_cache.h"
#include "kernels/cpu/cpu.h"

namespace {

using namespace r1;
using namespace r1::cli;

struct BatchArgs {
  ModelArgs model;
  SamplingArgs sampling;
  ReasoningArgs reasoning;
  std::string input, output, shard, tmpl;
  int64_t n = 4096, max_concurrent = 8, shards = 0;
  bool json_summary = false;
};

// A record without its own seed gets one from the run's seed and its id, so re-running (or
// resuming) gives the same output.
uint64_t record_seed(uint64_t base, const std::string& id) {
  uint64_t h = base ^ 0x9e3779b97f4a7c15ull;
  for (unsigned char c : id) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// A record ready to run: its prompt tokens and options, or why it cannot run.
struct Item {
  const BatchRecord* rec;
  std::vector<int32_t> ids;
  GenOptions opt;
  std::string error;
};

int run(BatchArgs& a, bool concurrency_given) {
  const Shard shard = parse_shard(a.shard, a.shards, [](const char* k) { return std::getenv(k); });
  if (a.shard == "auto" && a.model.verbose)
    std::fprintf(stderr, "r1 batch: shard %lld/%lld (%s)\n", (long long)shard.i, (long long)shard.n, shard.from.c_str());
  std::string text;
  if (a.input == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream f(a.input, std::ios::binary);
    if (!f) fail_input(a.input + ": cannot read");
    text.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto records = parse_batch_input(text, a.input == "-" ? "stdin" : a.input);
  records = take_shard(records, shard.i, shard.n);
  // -o -: results on stdout, as they finish (nothing to resume from); else a resumable file,
  // which must not be the input (it would be read as results already done).
  std::unique_ptr<BatchOutput> file;
  if (a.output != "-") {
    struct stat si, so;
    if (a.input != "-" && ::stat(a.input.c_str(), &si) == 0 && ::stat(a.output.c_str(), &so) == 0 &&
        si.st_dev == so.st_dev && si.st_ino == so.st_ino)
      fail_usage(a.output + " is the input file; give the results their own -o");
    file = std::make_unique<BatchOutput>(a.output);
  }
  const std::set<std::string> none;
  const std::set<std::string>& done = file ? file->done_ids() : none;
  std::vector<const BatchRecord*> todo;
  for (auto& r : records)
    if (!done.count(r.id)) todo.push_back(&r);

  Loaded L = load_for_run(a.model, /*with_session=*/false);
  const Tokenizer& tok = *L.rt.tok;
  ChatTemplate tmpl = L.rt.chat_template(a.tmpl);
  SamplerParams base = a.sampling.resolve(L.rt.defaults);
  const auto dry = dry_breakers(tok, base);  // one for all records
  const uint64_t base_seed = a.sampling.seed ? *a.sampling.seed : 0;
  install_interrupt();
  const bool tty = is_tty(stderr);

  // Every prompt tokenized first: each slot holds the longest prompt plus its token cap (within
  // the context the flags and memory allow), so nothing ends for want of room that would not
  // have ended in a run alone.
  std::vector<Item> items;
  int64_t need = 1, runnable = 0;
  for (const BatchRecord* r : todo) {
    Item it{r, {}, {}, {}};
    it.ids = tok.encode(tmpl.generation_prompt(r->messages, it.opt.starts_in_think));
    it.opt.sampling = base;
    it.opt.dry_breakers = dry;
    a.reasoning.apply(it.opt);
    if (r->think_budget) it.opt.think_budget = *r->think_budget;
    if (r->temperature) it.opt.sampling.temperature = *r->temperature;
    it.opt.sampling.seed = r->seed ? *r->seed : record_seed(base_seed, r->id);
    it.opt.max_new = r->max_tokens ? *r->max_tokens : a.n;
    it.opt.stop_ids = L.rt.stop_ids;
    if (it.ids.empty()) it.error = "empty prompt";
    else if (int64_t(it.ids.size()) >= L.ctx)
      it.error = "prompt of " + std::to_string(it.ids.size()) + " tokens does not fit the context of " + std::to_string(L.ctx);
    else need = std::max(need, int64_t(it.ids.size()) + it.opt.max_new), runnable++;
    items.push_back(std::move(it));
  }
  const int64_t ctx = std::min(L.ctx, need);
  // Without VNNI the int8 dot products are compute-bound: a batched step of q4/q8 weights costs
  // about as much per token as running alone (measured: 8 sequences at half the tok/s of one),
  // so by default such CPUs run one sequence at a time.
  int64_t want = a.max_concurrent;
  if (!concurrency_given && is_quantized(L.rt.model->layers.at(0).gate.fmt) && L.device == "cpu" &&
      std::string(cpu::kernel_set()) == "avx2")
    want = 1;
  const int64_t n_slots = choose_slots(L.rt.model->cfg, ctx, L.kv, want, concurrency_given, runnable);
  std::unique_ptr<BatchSession> batch = make_batch(L, n_slots, ctx);
  BatchSession& session = *batch;
  if (a.model.verbose)
    std::fprintf(stderr, "%s | batch: %lld slots of %lld positions, KV %.2f GB\n", describe(L, a.model).c_str(),
                 (long long)n_slots, (long long)ctx, double(KVCache::bytes_for(L.rt.model->cfg, ctx, L.kv, n_slots)) / 1e9);

  auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0, written = 0, failed = 0;
  auto progress = [&] {
    if (!tty) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double eta = written > 0 ? s / double(written) * double(int64_t(items.size()) - written) : 0;
    std::fprintf(stderr, "\r\033[K%lld/%zu records  %.1f tok/s  ETA %.0fs", (long long)written, items.size(),
                 s > 0 ? double(tokens) / s : 0.0, eta);
  };
  auto write = [&](const BatchRecord& r, const nlohmann::json& line) {
    if (file) file->write_line(r.id, line.dump());
    else out(stdout, line.dump() + "\n");
    written++;
    progress();
  };
  size_t next = 0;
  auto next_job = [&](BatchJob& job) {
    for (; next < items.size(); next++) {  // records that cannot run get their error line on the way
      Item& it = items[next];
      if (it.error.empty()) break;
      write(*it.rec, {{"id", nlohmann::json::parse(it.rec->id)}, {"error", it.error}, {"finish_reason", "error"}});
      failed++;
    }
    if (next == items.size()) return false;
    job.tag = next;
    job.prompt = std::move(items[next].ids);
    job.opt = items[next].opt;
    next++;
    return true;
  };
  auto on_done = [&](const BatchJob& job, GenResult& g) {
    const BatchRecord& r = *items[job.tag].rec;
    tokens += g.stats.completion_tokens;
    nlohmann::json line = result_json(g);
    line["id"] = nlohmann::json::parse(r.id);
    write(r, line);
  };
  BatchPlan plan;
  plan.interrupt = &interrupted();
  run_batched(session, tok, next_job, on_done, plan);

  if (tty) std::fprintf(stderr, "\r\033[K");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const size_t skipped = records.size() - todo.size();
  nlohmann::json summary = {{"records", records.size()},     {"already_done", skipped}, {"written", written},
                            {"errors", failed},              {"generated_tokens", tokens}, {"seconds", secs},
                            {"tok_s", secs > 0 ? double(tokens) / secs : 0.0}, {"max_concurrent", n_slots},
                            {"complete", skipped + size_t(written) == records.size()}};
  if (a.json_summary) std::printf("%s\n", summary.dump().c_str());
  std::fprintf(stderr, "r1 batch: %lld written, %zu already done, %lld errors, %lld tokens in %.1fs (%.1f tok/s)%s\n",
               (long long)written, skipped, (long long)failed, (long long)tokens, secs, secs > 0 ? double(tokens) / secs : 0.0,
               interrupted() ? "; interrupted: re-run the same command to resume" : "");
  return interrupted() ? 130 : 0;
}

R1_COMMAND("batch", "Generate for every prompt of a file into a JSONL file (resumable)", 3, [](CLI::App& sub) {
  auto a = std::make_shared<BatchArgs>();
  add_model_flags(sub, a->model);
  sub.add_option("input", a->input, "Prompts: JSONL {\"id\", \"prompt\"|\"messages\", ...} or one prompt per line; - for stdin")
      ->required();
  sub.add_option("-o,--output", a->output, "Results, one JSON line per input id; re-running resumes it (- for stdout: no resuming)")->required();
  sub.add_option("--shard", a->shard,
                 "I/N: take every N-th record starting at I (0-based); auto: the shard of this Slurm array task "
                 "(SLURM_ARRAY_TASK_ID) or Kubernetes Indexed Job pod (JOB_COMPLETION_INDEX, with --shards)");
  sub.add_option("--shards", a->shards, "With --shard auto: how many shards (a Kubernetes Job's completions; overrides Slurm's)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  auto* mc = sub.add_option("--max-concurrent", a->max_concurrent,
                            "Sequences decoded together, one batched pass per token (default 8, or 1 for q4/q8 on CPUs "
                            "without AVX-512 VNNI; fewer if their KV caches do not fit in half the free memory)")
                 ->check(CLI::Range(int64_t(1), int64_t(4096)));
  sub.add_option("-n,--max-tokens", a->n, "Most tokens per record unless the record says (default 4096)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  add_sampling_flags(sub, a->sampling);
  add_reasoning_flags(sub, a->reasoning);
  add_template_flag(sub, a->tmpl);
  sub.add_flag("--json-summary", a->json_summary, "Print a JSON summary on stdout at the end");
  sub.footer("A record's \"think_budget\" overrides --think-budget.\n"
             "Without a per-record \"seed\", each record's seed comes from --seed (default 0) and its id,\n"
             "so a resumed or sharded run gives the same results as one uninterrupted run, whatever\n"
             "--max-concurrent is. Lines are written as records finish, not in input order.");
  return [a, mc]() { return run(*a, mc->count() > 0); };
});

}  // namespace
