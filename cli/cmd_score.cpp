// r1 score: the numbers evaluation harnesses ask of a model.
//   r1 score -m M FILE.jsonl   per {"prompt", "completion"} record, the log-likelihood of the
//                              completion given the prompt (lm-eval-harness' loglikelihood)
//   r1 score -m M --text FILE  perplexity over a text in windows (as llama-perplexity), and with
//                              --kl-base REF the KL divergence from a reference model: the
//                              measure of what quantization costs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/term.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/score.h"
#include "models/backend.h"

namespace {

using namespace r1;
using namespace r1::cli;

struct ScoreArgs {
  ModelArgs model;
  std::string input, text, kl_base, base_kv, tmpl;
  int64_t stride = 0;
  bool bos = false, raw = false, chat = false, json = false;
};

std::string read_all(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail_input(path + ": no such file");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input(path + ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Runtime open_runtime(const ModelArgs& a, const std::string& path) { return Runtime::load(model_file(path, a)); }

// The session is sized by the caller (the window, or the longest record) rather than by the
// generation default, so that no memory goes to cache positions that are never used.
Loaded finish_load(Runtime rt, const ModelArgs& a, int64_t ctx) {
  Loaded l{std::move(rt), nullptr, nullptr, 0, kv_format(a), "cpu"};
  l.device = choose_device(a.device, *l.rt.model, l.kv);
  l.pool = std::make_unique<ThreadPool>(a.threads > 0 ? a.threads : ThreadPool::default_threads());
  l.ctx = choose_ctx(l.rt.model->cfg, ctx, l.kv, l.device == "cpu");
  l.session = make_session(l);
  return l;
}

// ------------------------------------------------------------------------ JSONL records

struct Record {
  int64_t line = 0;
  nlohmann::json id;
  std::vector<int32_t> context, continuation;
  bool separate = false, truncated = false;
};

// Parses every line before anything runs, so bad input fails fast and prints nothing else.
std::vector<nlohmann::json> parse_jsonl(const std::string& name, const std::string& data, std::vector<int64_t>& lines) {
  std::vector<nlohmann::json> out;
  std::istringstream in(data);
  std::string s;
  for (int64_t ln = 1; std::getline(in, s); ln++) {
    if (s.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const std::string where = name + " line " + std::to_string(ln) + ": ";
    nlohmann::json j = parse_json(s, name + " line " + std::to_string(ln));
    if (!j.is_object()) fail_input(where + "expected an object {\"prompt\": ..., \"completion\": ...}");
    check_keys(j, {"prompt", "completion", "id"}, name + " line " + std::to_string(ln));
    for (const char* k : {"prompt", "completion"})
      if (!j.contains(k) || !j[k].is_string()) fail_input(where + "\"" + k + "\" must be a string");
    out.push_back(std::move(j));
    lines.push_back(ln);
  }
  if (out.empty()) fail_input(name + ": no records");
  return out;
}

// Tokenizes like lm-eval-harness: the prompt's trailing whitespace moves to the completion,
// then the completion's tokens are those of encode(prompt + completion) after encode(prompt).
// Where the prompt's tokens are not a prefix of the joint encoding (a merge across the
// boundary), the two are encoded separately and the record says so.
Record encode_record(const Tokenizer& tok, const ChatTemplate* tmpl, bool bos, const nlohmann::json& j, int64_t line) {
  Record r;
  r.line = line;
  r.id = j.contains("id") ? j["id"] : nlohmann::json(line);
  std::string prompt = j["prompt"].get<std::string>(), comp = j["completion"].get<std::string>();
  if (tmpl) prompt = tmpl->render(std::vector<Message>{Message{"user", prompt}}, true);
  const size_t keep = prompt.find_last_not_of(" \t\r\n\f\v") + 1;  // npos + 1 == 0: all whitespace
  comp = prompt.substr(keep) + comp;
  prompt.resize(keep);
  r.context = tok.encode(prompt, bos);
  if (r.context.empty())
    fail_input("line " + std::to_string(line) + ": the prompt has no tokens; pass --bos to predict the completion from BOS");
  if (comp.empty()) return r;
  std::vector<int32_t> joint = tok.encode(prompt + comp, bos);
  if (joint.size() > r.context.size() && std::equal(r.context.begin(), r.context.end(), joint.begin())) {
    r.continuation.assign(joint.begin() + std::ptrdiff_t(r.context.size()), joint.end());
  } else {
    r.continuation = tok.encode(comp, false);
    r.separate = true;
  }
  return r;
}

int score_records(ScoreArgs& a) {
  const std::string name = a.input == "-" ? "stdin" : a.input;
  std::vector<int64_t> lines;
  auto recs_json = parse_jsonl(name, read_all(a.input), lines);

  Runtime rt = open_runtime(a.model, a.model.model);
  std::optional<ChatTemplate> tmpl;
  if (a.chat) tmpl = rt.chat_template(a.tmpl);
  std::vector<Record> recs;
  int64_t need = 1;
  for (size_t i = 0; i < recs_json.size(); i++) {
    recs.push_back(encode_record(*rt.tok, tmpl ? &*tmpl : nullptr, a.bos, recs_json[i], lines[i]));
    need = std::max(need, int64_t(recs.back().context.size() + recs.back().continuation.size()) - 1);
  }
  const int64_t ctx = a.model.ctx > 0 ? a.model.ctx : std::min(choose_ctx(rt.model->cfg, 0, kv_format(a.model)), need);
  Loaded L = finish_load(std::move(rt), a.model, ctx);
  if (a.model.verbose) std::fprintf(stderr, "%s\n", describe(L, a.model).c_str());

  // Too long for the context: drop the oldest prompt tokens, as lm-eval-harness does.
  for (Record& r : recs) {
    const int64_t over = int64_t(r.context.size() + r.continuation.size()) - 1 - L.ctx;
    if (over <= 0) continue;
    if (int64_t(r.continuation.size()) >= L.ctx)
      fail_input(name + " line " + std::to_string(r.line) + ": the completion has " + std::to_string(r.continuation.size()) +
                 " tokens, more than --ctx " + std::to_string(L.ctx) + " allows");
    r.context.erase(r.context.begin(), r.context.begin() + over);
    r.truncated = true;
  }

  install_interrupt();
  ContinuationScorer scorer(*L.session);
  for (const Record& r : recs) {
    if (interrupted().load()) return 130;
    ContinuationScore s = scorer.score(r.context, r.continuation);
    nlohmann::json j = {{"id", r.id},
                        {"loglik", s.loglik},
                        {"tokens", r.continuation.size()},
                        {"greedy", s.greedy},
                        {"prompt_tokens", r.context.size()},
                        {"separate_encoding", r.separate},
                        {"truncated", r.truncated}};
    out(stdout, j.dump() + "\n");
  }
  return 0;
}

// ------------------------------------------------------------------------------ text

std::string fmt(const char* f, double x, double y = 0) {
  char buf[128];
  std::snprintf(buf, sizeof buf, f, x, y);
  return buf;
}

int score_text(ScoreArgs& a) {
  const std::string text = read_all(a.text);
  if (text.empty()) fail_input(a.text + ": empty");
  const int64_t window = a.model.ctx > 0 ? a.model.ctx : 512;
  Loaded L = finish_load(open_runtime(a.model, a.model.model), a.model, window);
  if (a.model.verbose) std::fprintf(stderr, "%s\n", describe(L, a.model).c_str());
  const Tokenizer& tok = *L.rt.tok;

  std::optional<Runtime> base_rt;
  std::unique_ptr<Session> base;  // on the scored model's device where it fits beside it, else the CPU
  std::string base_device;
  if (!a.kl_base.empty()) {
    base_rt.emplace(open_runtime(a.model, a.kl_base));
    if (base_rt->model->cfg.vocab_size != L.rt.model->cfg.vocab_size || base_rt->tok->vocab_size() != tok.vocab_size())
      fail_input(a.kl_base + ": a different vocabulary from " + a.model.model + "; KL needs the same tokenizer");
    // One pool for both: the two sessions run alternately, never at once.
    const KvFormat bkv = a.base_kv.empty() ? L.kv : kv_format("--kl-base-kv", a.base_kv);
    base_device = L.device;
    if (L.device != "cpu") {
      try {
        base = make_session(L.device, *base_rt->model, L.ctx, bkv, *L.pool);
      } catch (const Error& e) {
        std::fprintf(stderr, "r1 score: the reference runs on the CPU (on %s: %s)\n", L.device.c_str(), e.what());
        base_device = "cpu";
      }
    }
    if (!base) base = make_session("cpu", *base_rt->model, L.ctx, bkv, *L.pool);
  }

  TextEvalOptions o;
  o.ctx = window;
  o.stride = a.stride;
  if (a.bos) {
    o.bos = tok.bos_id();
    if (o.bos < 0) fail_usage("--bos: this model's tokenizer has no BOS token");
  }
  o.pool = L.pool.get();
  install_interrupt();
  o.interrupt = &interrupted();
  const std::vector<int32_t> ids = tok.encode(text, false);
  const bool live = is_tty(stderr);
  if (live)
    o.progress = [&](const TextStats& s, int64_t done, int64_t total) {
      std::string line = "\r[" + std::to_string(done) + "/" + std::to_string(total) + "] PPL " + fmt("%.4f ± %.4f", s.ppl(), s.ppl_se());
      if (s.has_base) line += fmt("  KL %.6f  top-1 %.2f%%", s.kl_mean(), 100 * s.top1());
      out(stderr, line + "\033[K");
    };
  TextStats s = evaluate_text(*L.session, base.get(), ids, o);
  if (live) out(stderr, "\r\033[K");
  if (s.interrupted) std::fprintf(stderr, "r1 score: interrupted; results over the %lld windows done\n", (long long)s.windows);
  if (s.tokens == 0) return s.interrupted ? 130 : 0;

  const std::string scheme = a.stride > 0 ? "windows of " + std::to_string(window) + " every " + std::to_string(a.stride) + " tokens"
                                          : std::to_string(s.windows) + " windows of " + std::to_string(window) + ", second half scored";
  if (a.json) {
    nlohmann::json j = {{"text", a.text}, {"text_tokens", ids.size()}, {"ctx", window}, {"stride", a.stride},
                        {"bos", a.bos}, {"windows", s.windows}, {"tokens", s.tokens}, {"nll_mean", s.nll / double(s.tokens)},
                        {"ppl", s.ppl()}, {"ppl_se", s.ppl_se()}, {"interrupted", s.interrupted}};
    if (s.has_base) {
      j["base"] = a.kl_base;
      j["base_device"] = base_device;
      j["base_ppl"] = s.base_ppl();
      j["base_ppl_se"] = s.base_ppl_se();
      j["ppl_ratio"] = s.ppl_ratio();
      j["ppl_ratio_se"] = s.ppl_ratio_se();
      j["kl_mean"] = s.kl_mean();
      j["kl_se"] = s.kl_se();
      j["top1"] = s.top1();
      j["top1_se"] = s.top1_se();
      j["rms_dp"] = s.rms_dp();
      j["mean_dp"] = s.mean_dp();
    }
    out(stdout, j.dump() + "\n");
  } else {
    std::string o2 = "PPL          " + fmt("%.4f ± %.4f", s.ppl(), s.ppl_se()) + "\n";
    if (s.has_base) {
      o2 += "base PPL     " + fmt("%.4f ± %.4f", s.base_ppl(), s.base_ppl_se()) + "\n";
      o2 += "PPL ratio    " + fmt("%.4f ± %.4f", s.ppl_ratio(), s.ppl_ratio_se()) + "\n";
      o2 += "mean KL      " + fmt("%.6f ± %.6f", s.kl_mean(), s.kl_se()) + "\n";
      o2 += "same top-1   " + fmt("%.2f%% ± %.2f%%", 100 * s.top1(), 100 * s.top1_se()) + "\n";
      o2 += "RMS Δp       " + fmt("%.3f%%  (mean Δp %+.3f%%)", 100 * s.rms_dp(), 100 * s.mean_dp()) + "\n";
    }
    o2 += "scored       " + std::to_string(s.tokens) + " of " + std::to_string(ids.size()) + " tokens (" + scheme + ")\n";
    out(stdout, o2);
  }
  return s.interrupted ? 130 : 0;
}

int run(ScoreArgs& a) {
  const bool text = !a.text.empty();
  if (text == !a.input.empty()) fail_usage("give either a JSONL file of {prompt, completion} records or --text FILE");
  if (!text && (!a.kl_base.empty() || a.stride)) fail_usage("--kl-base and --stride go with --text");
  if (!a.base_kv.empty() && a.kl_base.empty()) fail_usage("--kl-base-kv goes with --kl-base");
  if (!a.tmpl.empty()) a.chat = true;
  if (a.chat && (text || a.raw)) fail_usage(text ? "--chat/--template go with JSONL records, not --text" : "--raw and --chat exclude each other");
  if (a.chat && a.bos) fail_usage("--bos is for raw prompts; the chat template adds its own");
  return text ? score_text(a) : score_records(a);
}

R1_COMMAND("score", "Log-likelihood of completions (JSONL), or perplexity and KL divergence over a text", 20, [](CLI::App& sub) {
  auto a = std::make_shared<ScoreArgs>();
  add_model_flags(sub, a->model);
  sub.add_option("input", a->input, "JSONL file of {\"prompt\", \"completion\"[, \"id\"]} records (- for stdin)");
  sub.add_option("--text", a->text, "Plain text file: perplexity over it in windows of --ctx tokens (default 512)");
  sub.add_option("--stride", a->stride, "With --text: overlapping windows every S tokens, each scoring its last S "
                                        "(default: non-overlapping, second half of each scored, as llama-perplexity)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  sub.add_option("--kl-base", a->kl_base, "With --text: reference .r1m (e.g. bf16) to compare with: mean KL(ref || model), "
                                          "same top-1, both PPLs, RMS Δp; it runs on --device beside the model (the CPU where it does not fit)");
  sub.add_option("--kl-base-kv", a->base_kv, "KV cache precision of the reference (default: --kv's); with the model "
                                             "itself as --kl-base, --kv q8 --kl-base-kv f16 measures what the q8 cache costs")
      ->check(CLI::IsMember(kKvNames));
  sub.add_flag("--raw", a->raw, "The prompt text is the model's input as is (the default)");
  sub.add_flag("--chat", a->chat, "Render each prompt as a user turn with the model's chat template");
  sub.add_option("--template", a->tmpl, "Chat template to force (implies --chat): r1, chatml, llama3 or raw")
      ->check(CLI::IsMember({"r1", "chatml", "llama3", "raw"}));
  sub.add_flag("--bos", a->bos, "Start with the BOS token (with --text: the first token of each window becomes BOS, "
                                "as llama-perplexity does)");
  sub.add_flag("--json", a->json, "With --text: print one JSON object");
  sub.footer("Records: one JSON line out per record: id (or the line number), loglik (natural log), tokens,\n"
             "greedy (every completion token is the argmax), prompt_tokens, separate_encoding, truncated.\n"
             "--ctx: with --text the window size; with records the context (the oldest prompt tokens are\n"
             "dropped if a record does not fit). Exit codes: 0 ok, 1 usage error, 2 bad input or model\n"
             "file, 130 interrupted.");
  return [a]() { return run(*a); };
});

}  // namespace
