// The slash commands of `r1 chat`. A bad command or value is one line of help, never an exit.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "cli/chat.h"
#include "cli/term.h"
#include "core/error.h"
#include "core/snapshot.h"

namespace r1::cli {

namespace {

const char kHelp[] =
    "/help                 this list\n"
    "/clear                start a new conversation (keeps /system)\n"
    "/system TEXT          set the system prompt (/system alone clears it)\n"
    "/think MODE           show, hide, fold or stderr: how reasoning is shown\n"
    "/think last           print the last reasoning\n"
    "/set NAME VALUE       temp, top_p, top_k, min_p, seed, max_tokens, think_budget\n"
    "                      (max_tokens and think_budget: off for no limit), on_loop\n"
    "                      (answer, stop, off; auto: answer while reasoning)\n"
    "/stats                tokens, seed, finish, speeds of the last turn; context\n"
    "/save FILE            save the conversation and its KV cache\n"
    "/load FILE            resume a saved conversation (same model only)\n"
    "/exit                 leave (also Ctrl-D)\n"
    "Input: a line ending in \\ continues; \"\"\" opens and closes a multi-line block.\n";

double parse_number(const std::string& name, const std::string& v) {
  size_t used = 0;
  double d = 0;
  try {
    d = std::stod(v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v.size() || !std::isfinite(d)) fail_usage("/set " + name + ": '" + v + "' is not a number");
  return d;
}

int64_t parse_int(const std::string& name, const std::string& v, int64_t lo, int64_t hi) {
  double d = parse_number(name, v);
  if (d != std::floor(d) || d < double(lo) || d > double(hi))
    fail_usage("/set " + name + ": expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return int64_t(d);
}

KvShape snapshot_shape(const Session& s) {
  KvShape shape;
  if (!s.kv_shape(&shape)) fail_usage("/save and /load are not available with this backend");
  return shape;
}

}  // namespace

bool Chat::command(const std::string& line) {
  std::istringstream in(line);
  std::string cmd, arg;
  in >> cmd;
  std::getline(in >> std::ws, arg);
  while (!arg.empty() && (arg.back() == ' ' || arg.back() == '\t')) arg.pop_back();

  if (cmd == "/exit" || cmd == "/quit") return false;
  if (cmd == "/help" || cmd == "/?") {
    say(kHelp);
  } else if (cmd == "/clear") {
    turns.clear();
    last_reasoning.clear();
    warned_full = false;
    notice("[conversation cleared]");
  } else if (cmd == "/system") {
    system = arg;
    notice(system.empty() ? "[system prompt cleared]" : "[system prompt set]");
  } else if (cmd == "/think") {
    if (std::find(kThinkModes.begin(), kThinkModes.end(), arg) != kThinkModes.end()) {
      think_mode = arg;
      notice("[reasoning: " + arg + "]");
    } else if (arg == "last") {
      if (last_reasoning.empty()) notice("[no reasoning yet]");
      else say(std::string(dim(color)) + last_reasoning + reset(color) + "\n");
    } else {
      fail_usage("/think: expected show, hide, fold, stderr or last");
    }
  } else if (cmd == "/set") {
    std::istringstream as(arg);
    std::string name, v, extra;
    as >> name >> v >> extra;
    if (name.empty() || v.empty() || !extra.empty()) fail_usage("/set: expected /set NAME VALUE (see /help)");
    SamplerParams p = sampling;
    if (name == "temp") p.temperature = float(parse_number(name, v));
    else if (name == "top_p") p.top_p = float(parse_number(name, v));
    else if (name == "min_p") p.min_p = float(parse_number(name, v));
    else if (name == "top_k") p.top_k = int(parse_int(name, v, 0, 1 << 30));
    else if (name == "seed") p.seed = uint64_t(parse_int(name, v, 0, int64_t(1) << 53));
    else if (name == "max_tokens") a.max_tokens = v == "off" ? -1 : parse_int(name, v, 1, int64_t(1) << 30);
    else if (name == "think_budget") a.reasoning.think_budget = v == "off" ? -1 : parse_int(name, v, 0, int64_t(1) << 30);
    else if (name == "on_loop" && (v == "answer" || v == "stop" || v == "off" || v == "auto"))
      a.reasoning.on_loop = v == "auto" ? "" : v;
    else if (name == "on_loop") fail_usage("/set on_loop: expected answer, stop, off or auto");
    else fail_usage("/set: unknown setting '" + name + "' (temp, top_p, top_k, min_p, seed, max_tokens, think_budget, on_loop)");
    try {
      validate(p);
    } catch (const Error& e) {
      fail_usage("/set " + name + ": " + e.what());
    }
    sampling = p;
    notice("[" + name + " = " + v + "]");
    advise_temperature(tmpl, sampling, a.quiet);
  } else if (cmd == "/stats") {
    const int64_t used = L.session->n_past(), ctx = L.session->ctx();
    char buf[512];
    const GenStats& st = last.stats;
    const char* think_end = think_end_name(last);
    if (have_last)
      std::snprintf(buf, sizeof buf,
                    "prompt %lld tokens (%lld prefilled, %lld reused) at %.1f tok/s | generated %lld tokens "
                    "(%lld reasoning, %lld answer) at %.1f tok/s\nseed %llu | finish %s%s%s\n",
                    (long long)st.prompt_tokens, (long long)st.prefilled_tokens,
                    (long long)(st.prompt_tokens - st.prefilled_tokens), st.prefill_tps(),
                    (long long)st.completion_tokens, (long long)st.think_tokens, (long long)st.answer_tokens,
                    st.decode_tps(), (unsigned long long)last.seed, finish_name(last.finish),
                    think_end ? " | reasoning finish " : "", think_end ? think_end : "");
    else
      std::snprintf(buf, sizeof buf, "no turn yet\n");
    say(buf);
    std::snprintf(buf, sizeof buf, "context %lld of %lld tokens (%.0f%%) | %zu messages\n", (long long)used,
                  (long long)ctx, 100.0 * double(used) / double(ctx), turns.size());
    say(buf);
  } else if (cmd == "/save") {
    if (arg.empty()) fail_usage("/save: expected a file name");
    Session& s = *L.session;
    Snapshot snap;
    snap.shape = snapshot_shape(s);
    if (gen.cached().empty() || int64_t(gen.cached().size()) != s.n_past()) fail_usage("/save: nothing to save yet");
    snap.model_id = L.rt.model->file->identity();
    snap.conversation = conversation_to_json({system, turns});
    snap.tokens = gen.cached();
    snap.kv = s.kv_save();
    save_snapshot(arg, snap);
    notice("[saved " + std::to_string(turns.size()) + " messages, " + std::to_string(snap.tokens.size()) +
           " cached tokens to " + arg + "]");
  } else if (cmd == "/load") {
    if (arg.empty()) fail_usage("/load: expected a file name");
    Session& s = *L.session;
    Snapshot snap = load_snapshot(arg, L.rt.model->file->identity(), snapshot_shape(s), s.ctx());
    // Everything is checked before the current conversation is replaced.
    Conversation conv;
    try {
      conv = conversation_from_json(snap.conversation);
    } catch (const Error& e) {
      fail_input(arg + ": " + e.what());
    }
    for (int32_t id : snap.tokens)
      if (id < 0 || id >= L.session->vocab())
        fail_input(arg + ": not a usable r1 chat snapshot: it holds a token outside the vocabulary");
    s.kv_load(snap.kv, int64_t(snap.tokens.size()));
    gen.resume(std::move(snap.tokens));
    system = conv.system;
    turns = std::move(conv.turns);
    last_reasoning.clear();
    for (auto& t : turns)
      if (t.role == "assistant") last_reasoning = t.reasoning;
    have_last = false;
    warned_full = false;
    notice("[loaded " + std::to_string(turns.size()) + " messages, " + std::to_string(s.n_past()) +
           " cached tokens from " + arg + "]");
    dump_logits();
  } else {
    fail_usage("unknown command " + cmd + "; /help lists the commands");
  }
  return true;
}

}  // namespace r1::cli
