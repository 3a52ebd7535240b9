// r1 run: one prompt in, one answer out; made for shell pipelines. stdout gets the answer only
// unless asked otherwise; the reasoning goes to the terminal (dimmed), to stderr, or nowhere.
#include <unistd.h>

#include <functional>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/term.h"
#include "core/error.h"
#include "core/generate.h"

namespace {

using namespace r1;
using namespace r1::cli;

struct RunArgs {
  ModelArgs model;
  SamplingArgs sampling;
  ReasoningArgs reasoning;
  std::string prompt, system, think, tmpl, prompt_ids;
  std::vector<std::string> words;  // the prompt given as positional arguments
  bool prompt_given = false, json = false, raw = false, print_ids = false, bos = false, quiet = false;
  int64_t n = -1;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::string tok;
  std::stringstream ss(s);
  while (std::getline(ss, tok, ',')) {
    size_t used = 0;
    long long v;
    try {
      v = std::stoll(tok, &used);
    } catch (...) {
      fail_usage("--prompt-ids: '" + tok + "' is not a token id");
    }
    if (used != tok.size() || v < 0 || v > INT32_MAX) fail_usage("--prompt-ids: '" + tok + "' is not a token id");
    ids.push_back(int32_t(v));
  }
  if (ids.empty()) fail_usage("--prompt-ids is empty");
  return ids;
}

int run(RunArgs& a) {
  // The prompt: -p, --prompt-ids, or stdin.
  if (!a.prompt_given && a.prompt_ids.empty()) {
    if (is_tty(stdin)) fail_usage("no prompt: pass -p TEXT or pipe the prompt on stdin");
    a.prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
    while (!a.prompt.empty() && (a.prompt.back() == '\n' || a.prompt.back() == '\r')) a.prompt.pop_back();
    if (a.prompt.empty()) fail_input("empty prompt on stdin");
  }
  Loaded L = load_for_run(a.model);
  const Tokenizer& tok = *L.rt.tok;
  if (a.model.verbose) std::fprintf(stderr, "%s\n", describe(L, a.model).c_str());

  std::vector<int32_t> ids;
  GenOptions opt;
  opt.sampling = a.sampling.resolve(L.rt.defaults);
  if (!a.prompt_ids.empty()) {
    ids = parse_ids(a.prompt_ids);
  } else if (a.raw) {
    ids = tok.encode(a.prompt, a.bos);
  } else {
    ChatTemplate t = L.rt.chat_template(a.tmpl);
    std::vector<Message> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", a.prompt});
    ids = tok.encode(t.generation_prompt(msgs, opt.starts_in_think));
    advise_temperature(t, opt.sampling, a.quiet);
  }
  if (ids.empty()) fail_input("the prompt has no tokens");
  opt.max_new = a.n;
  a.reasoning.apply(opt);
  if (a.model.verbose) std::fprintf(stderr, "seed %llu\n", (unsigned long long)opt.sampling.seed);
  opt.stop_ids = L.rt.stop_ids;
  install_interrupt();
  opt.interrupt = &interrupted();

  // Where the reasoning goes: on a terminal it is shown dimmed; in a pipeline it is dropped
  // unless asked for. fold is a live count on a terminal, and hide elsewhere.
  const bool tty = is_tty(stdout);
  std::string think = a.think.empty() ? (tty ? "show" : "hide") : a.think;
  if (think == "fold" && !tty) think = "hide";
  int64_t folded = 0;
  const bool stream = !a.json && !a.print_ids;
  const bool color = use_color(stdout);
  const bool ecolor = use_color(stderr);

  Generator gen(*L.session, tok);
  // What the stream leaves open: the reasoning (dimmed on stdout or stderr) and stdout's last
  // line. A run that stops inside the reasoning (the cap, Ctrl-C, an error) closes them too,
  // so the terminal is never left dimmed or without its final newline.
  struct Open {
    bool dim_out = false, dim_err = false, line_out = false;
  } open;
  auto put = [&](FILE* f, const std::string& s) {
    out(f, s);
    if (f == stdout && !s.empty()) open.line_out = s.back() != '\n';
  };
  auto close_open = [&](const std::function<void(FILE*, const std::string&)>& write) {
    if (open.dim_out) write(stdout, reset(true));
    if (open.line_out) write(stdout, "\n");
    if (open.dim_err) write(stderr, std::string(reset(true)) + "\n");
    open.dim_out = open.dim_err = open.line_out = false;
  };
  struct OnUnwind {  // an exception: best effort, no more errors
    std::function<void()> f;
    ~OnUnwind() { if (f) f(); }
  } on_unwind{[&] { close_open([](FILE* f, const std::string& s) { std::fputs(s.c_str(), f); std::fflush(f); }); }};
  // Every piece is flushed as it comes: a terminal or a pipeline sees text per token, and a
  // reader that closed the pipe is noticed at the next token, not a buffer later.
  auto on_event = [&](const GenEvent& e) {
    if (!stream) return;
    if (e.kind == GenEvent::ThinkBegin) {
      if (think == "show") put(stdout, color ? std::string(dim(true)) : std::string("<think>\n"));
      if (think == "stderr") out(stderr, dim(ecolor));
      open.dim_out = think == "show" && color;
      open.dim_err = think == "stderr" && ecolor;
    } else if (e.kind == GenEvent::ThinkEnd) {
      open.dim_out = open.dim_err = false;
      if (think == "show") put(stdout, color ? std::string(reset(true)) + "\n" : std::string("\n</think>\n\n"));
      if (think == "stderr") out(stderr, std::string(reset(ecolor)) + "\n");
      if (think == "fold") {
        char s[96];
        std::snprintf(s, sizeof s, "thought for %lld tokens, %.1fs", (long long)e.think_tokens, e.think_s);
        put(stdout, (color ? std::string("\r\033[K") : "\r" + std::string(40, ' ') + "\r") + dim(color) + s + reset(color) + "\n\n");
      }
    } else if (e.in_think) {
      if (think == "show") put(stdout, e.text);
      if (think == "fold" && e.id >= 0 && ++folded % 4 == 1)
        put(stdout, "\r" + std::string(dim(color)) + "thinking… " + std::to_string(folded) + " tokens" + reset(color));
      if (think == "stderr") out(stderr, e.text);
    } else {
      put(stdout, e.text);
    }
  };
  GenResult r = gen.generate(ids, opt, on_event);
  on_unwind.f = nullptr;
  close_open([](FILE* f, const std::string& s) { out(f, s); });

  if (a.print_ids) {
    std::string s;
    for (size_t i = 0; i < r.ids.size(); i++) s += (i ? " " : "") + std::to_string(r.ids[i]);
    out(stdout, s + "\n");
  } else if (a.json) {
    nlohmann::json j = result_json(r);
    j["prefill_tok_s"] = r.stats.prefill_tps();
    j["decode_tok_s"] = r.stats.decode_tps();
    out(stdout, j.dump() + "\n");
  }
  if (r.finish == Finish::Context)
    std::fprintf(stderr, "r1 run: stopped at the context limit (%lld tokens); raise --ctx for longer output\n",
                 (long long)L.ctx);
  else if (r.finish == Finish::Length && r.think_end == ThinkEnd::Open)  // else a pipeline gets nothing and no reason
    std::fprintf(stderr, "r1 run: the -n cap of %lld tokens was reached while the model was still reasoning, "
                         "before any answer; raise -n (or drop it: until the context is full)\n", (long long)a.n);
  if (r.finish == Finish::Loop)
    std::fprintf(stderr, "r1 run: stopped: the %s repeats itself in a loop (--on-loop off lets it go on)\n",
                 r.think_end == ThinkEnd::Open ? "reasoning" : "answer");
  if (a.model.verbose)
    std::fprintf(stderr, "prompt %lld tokens, %.1f tok/s | generated %lld tokens, %.1f tok/s | %s\n",
                 (long long)r.stats.prompt_tokens, r.stats.prefill_tps(), (long long)r.stats.completion_tokens,
                 r.stats.decode_tps(), finish_name(r.finish));
  return r.finish == Finish::Interrupted ? 130 : 0;
}

R1_COMMAND("run", "Answer one prompt (from -p or stdin); for pipelines", 1, [](CLI::App& sub) {
  auto a = std::make_shared<RunArgs>();
  add_model_flags(sub, a->model);
  auto* p = sub.add_option("-p,--prompt", a->prompt, "The prompt (default: read stdin)")->each([a](const std::string&) { a->prompt_given = true; });
  // `r1 run -m M why is the sky blue`: the words after the options are the prompt, as with -p.
  sub.add_option("prompt", a->words, "The prompt, as the last arguments (instead of -p)")
      ->excludes(p)
      ->each([a](const std::string&) { a->prompt_given = true; });
  sub.callback([a] {
    for (size_t i = 0; i < a->words.size(); i++) a->prompt += (i ? " " : "") + a->words[i];
  });
  sub.add_option("--system", a->system, "System prompt (R1 works best without one)");
  sub.add_option("-n,--max-tokens", a->n, "Most tokens to generate (default: until the context is full)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  add_sampling_flags(sub, a->sampling);
  add_reasoning_flags(sub, a->reasoning);
  add_think_flag(sub, a->think);
  add_template_flag(sub, a->tmpl);
  sub.add_flag("--json", a->json, "Print one JSON object: reasoning, answer, finish_reason (stop, length, context, "
                                  "loop), reasoning_finish (stop, think_budget, loop), token counts, seed, speeds");
  sub.add_flag("-q,--quiet", a->quiet, "No advice on stderr");
  sub.add_flag("--raw", a->raw, "No chat template: the prompt text is the model's input");
  sub.add_flag("--bos", a->bos, "With --raw: start with the BOS token");
  sub.add_option("--prompt-ids", a->prompt_ids, "Token ids, comma-separated, as the model's input");
  sub.add_flag("--print-ids", a->print_ids, "Print the generated token ids instead of text");
  sub.footer("Exit codes: 0 ok (also when the reader of stdout closes the pipe), 1 usage error,\n"
             "2 bad input or model file, 130 interrupted (the partial answer is printed).");
  return [a]() { return run(*a); };
});

}  // namespace
