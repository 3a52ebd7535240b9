// r1 batch: many prompts from a file to a JSONL file of results, exactly once per id, resumable
// after a kill, and splittable into shards for a cluster scheduler.
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/term.h"
#include "core/batch_io.h"
#include "core/error.h"
#include "core/generate.h"

namespace {

using namespace r1;
using namespace r1::cli;

struct BatchArgs {
  ModelArgs model;
  SamplingArgs sampling;
  std::string input, output, shard, tmpl;
  int64_t n = 4096;
  bool json_summary = false;
};

// A record without its own seed gets one from the run's seed and its id, so re-running (or
// resuming) gives the same output.
uint64_t record_seed(uint64_t base, const std::string& id) {
  uint64_t h = base ^ 0x9e3779b97f4a7c15ull;
  for (unsigned char c : id) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

int run(BatchArgs& a) {
  int64_t shard_i = 0, shard_n = 1;
  if (!a.shard.empty()) {
    char slash = 0;
    std::istringstream ss(a.shard);
    if (!(ss >> shard_i >> slash >> shard_n) || slash != '/' || !ss.eof() || shard_n < 1 || shard_i < 0 || shard_i >= shard_n)
      fail_usage("--shard wants I/N with 0 <= I < N, e.g. 0/4");
  }
  std::string text;
  if (a.input == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream f(a.input, std::ios::binary);
    if (!f) fail_input(a.input + ": cannot read");
    text.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto records = parse_batch_input(text, a.input == "-" ? "stdin" : a.input);
  records = take_shard(records, shard_i, shard_n);
  BatchOutput out(a.output);
  std::vector<const BatchRecord*> todo;
  for (auto& r : records)
    if (!out.done_ids().count(r.id)) todo.push_back(&r);

  Loaded L = load_for_run(a.model);
  const Tokenizer& tok = *L.rt.tok;
  ChatTemplate tmpl = L.rt.chat_template(a.tmpl);
  SamplerParams base = a.sampling.resolve(L.rt.defaults);
  const uint64_t base_seed = a.sampling.seed ? *a.sampling.seed : 0;
  install_interrupt();
  const bool tty = is_tty(stderr);

  Generator gen(*L.session, tok);
  auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0, written = 0, failed = 0;
  for (size_t k = 0; k < todo.size(); k++) {
    const BatchRecord& r = *todo[k];
    GenOptions opt;
    opt.sampling = base;
    if (r.temperature) opt.sampling.temperature = *r.temperature;
    opt.sampling.seed = r.seed ? *r.seed : record_seed(base_seed, r.id);
    opt.max_new = r.max_tokens ? *r.max_tokens : a.n;
    opt.stop_ids = L.rt.stop_ids;
    opt.starts_in_think = tmpl.prompt_opens_think();
    opt.interrupt = &interrupted();
    nlohmann::json line = {{"id", nlohmann::json::parse(r.id)}};
    std::vector<int32_t> ids = tok.encode(tmpl.render(r.messages, true));
    if (int64_t(ids.size()) >= L.ctx) {
      line["error"] = "prompt of " + std::to_string(ids.size()) + " tokens does not fit the context of " + std::to_string(L.ctx);
      line["finish_reason"] = "error";
      failed++;
    } else {
      gen.reset();
      GenResult g = gen.generate(ids, opt);
      if (g.finish == Finish::Interrupted) break;  // this record is not written: it reruns on resume
      line["reasoning"] = g.reasoning;
      line["answer"] = g.answer;
      line["finish_reason"] = finish_name(g.finish);
      line["prompt_tokens"] = g.stats.prompt_tokens;
      line["completion_tokens"] = g.stats.completion_tokens;
      tokens += g.stats.completion_tokens;
    }
    out.write_line(r.id, line.dump());
    written++;
    if (tty) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double eta = written > 0 ? s / double(written) * double(todo.size() - k - 1) : 0;
      std::fprintf(stderr, "\r\033[K%zu/%zu records  %.1f tok/s  ETA %.0fs", k + 1, todo.size(), double(tokens) / s, eta);
    }
    if (interrupted()) break;
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const size_t skipped = records.size() - todo.size();
  nlohmann::json summary = {{"records", records.size()},     {"already_done", skipped}, {"written", written},
                            {"errors", failed},              {"generated_tokens", tokens}, {"seconds", secs},
                            {"tok_s", secs > 0 ? double(tokens) / secs : 0.0}, {"complete", skipped + size_t(written) == records.size()}};
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
  sub.add_option("-o,--output", a->output, "Results, one JSON line per input id; re-running resumes it")->required();
  sub.add_option("--shard", a->shard, "I/N: take every N-th record starting at I (0-based)");
  sub.add_option("-n,--max-tokens", a->n, "Most tokens per record unless the record says (default 4096)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  add_sampling_flags(sub, a->sampling);
  sub.add_option("--template", a->tmpl, "Chat template: r1, chatml, llama3 or raw (default: from the model)")
      ->check(CLI::IsMember({"r1", "chatml", "llama3", "raw"}));
  sub.add_flag("--json-summary", a->json_summary, "Print a JSON summary on stdout at the end");
  sub.footer("Without a per-record \"seed\", each record's seed comes from --seed (default 0) and its id,\n"
             "so a resumed or sharded run gives the same results as one uninterrupted run.");
  return [a]() { return run(*a); };
});

}  // namespace
