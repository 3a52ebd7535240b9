// r1 chat: an interactive reasoning chat. Each turn renders the whole conversation with the chat
// template (past reasoning stripped, as the template does); the Generator reuses the cached
// prefix, so only the new part is prefilled. The reasoning streams dimmed (or folded into a
// counter, or hidden) and closes with a one-line summary. With stdin not a terminal it reads
// one message per line (or per """ block) and prints the answers, for scripts.
//
// Testing hook: with R1_CHAT_DUMP_LOGITS=FILE set, the logits of the next token (after the
// cached conversation) are written to FILE as raw f32 after every turn and after /load.
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "cli/chat.h"
#include "cli/command.h"
#include "cli/term.h"
#include "core/error.h"
#include "core/out_file.h"

namespace r1::cli {

Chat::Chat(ChatArgs& args, Loaded& loaded, LineEditor& editor)
    : a(args), L(loaded), ed(editor), tmpl(loaded.rt.chat_template(args.tmpl)), gen(*loaded.session, *loaded.rt.tok) {
  sampling = a.sampling.resolve(L.rt.defaults);
  dry = dry_breakers(*L.rt.tok, sampling);
  advise_temperature(tmpl, sampling, a.quiet);
  system = a.system;
  tty_out = is_tty(stdout);
  color = use_color(stdout);
  think_mode = !a.think.empty() ? a.think : (ed.interactive() && tty_out ? "show" : "hide");
}

void Chat::say(const std::string& s) const { out(stdout, s); }
void Chat::notice(const std::string& s) const {
  // Notices go with the conversation on a terminal, to stderr in scripts (stdout: answers).
  if (ed.interactive()) out(stdout, std::string(dim(color)) + s + reset(color) + "\n");
  else std::fprintf(stderr, "%s\n", s.c_str());
}

void Chat::dump_logits() const {
  const char* path = std::getenv("R1_CHAT_DUMP_LOGITS");
  if (!path || !*path || gen.last_logits().empty()) return;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(gen.last_logits().data()), std::streamsize(gen.last_logits().size() * 4));
}

static std::string fmt(const char* f, double a, double b = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

void Chat::turn(const std::string& user_text) {
  turns.push_back({"user", user_text, ""});
  std::vector<Message> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  for (auto& t : turns) msgs.push_back({t.role, t.content});
  GenOptions opt;
  const std::vector<int32_t> ids = L.rt.tok->encode(tmpl.generation_prompt(msgs, opt.starts_in_think));
  if (int64_t(ids.size()) >= L.session->ctx()) {
    turns.pop_back();
    notice("the conversation (" + std::to_string(ids.size()) + " tokens) no longer fits the context of " +
           std::to_string(L.session->ctx()) + "; /clear to start over (or raise --ctx)");
    return;
  }

  opt.max_new = a.max_tokens;
  a.reasoning.apply(opt);
  opt.sampling = sampling;
  opt.dry_breakers = dry;
  opt.sampling.seed = sampling.seed + turns.size();  // same seed, same session; turns still differ
  opt.stop_ids = L.rt.stop_ids;
  interrupted().store(false);
  opt.interrupt = &interrupted();

  // Rendering: think_mode show (dim text under a marker), fold (a live counter), stderr (the
  // text on stderr, dimmed there on a terminal), hide.
  const bool show = think_mode == "show", fold = think_mode == "fold" && tty_out, to_err = think_mode == "stderr";
  const bool ecolor = to_err && use_color(stderr);
  bool thinking = false, answer_started = false, had_think = false;
  int64_t live_count = 0;
  auto t_think = std::chrono::steady_clock::now();
  auto summary = [&](int64_t n, double s, bool closed) {
    std::string what = closed ? "thought for " : "stopped while thinking, after ";
    return what + std::to_string(n) + " tokens, " + fmt("%.1fs", s) +
           (fold && closed ? " (/think last shows it)" : "");
  };
  auto close_think = [&](int64_t n, double s, bool closed) {
    thinking = false;
    if (show) {
      if (color) say(std::string(reset(true)) + "\n" + dim(true) + "└ " + summary(n, s, closed) + reset(true) + "\n\n");
      else say(tty_out ? "\n</think>\n(" + summary(n, s, closed) + ")\n\n" : std::string("\n</think>\n"));
    } else if (fold) {
      say((color ? std::string("\r\033[K") : "\r" + std::string(40, ' ') + "\r") + dim(color) + summary(n, s, closed) +
          reset(color) + "\n\n");
    } else if (to_err) {
      out(stderr, std::string(reset(ecolor)) + "\n");
    }
  };
  auto on_event = [&](const GenEvent& e) {
    if (e.kind == GenEvent::ThinkBegin) {
      thinking = true;
      t_think = std::chrono::steady_clock::now();
      if (show) say(color ? std::string(dim(true)) + "┌ thinking\n" : std::string("<think>\n"));
      if (to_err) out(stderr, dim(ecolor));
    } else if (e.kind == GenEvent::ThinkEnd) {
      had_think = true;
      close_think(e.think_tokens, e.think_s, true);
    } else if (e.in_think) {
      if (show) say(e.text);
      else if (to_err) out(stderr, e.text);
      else if (fold && e.id >= 0 && ++live_count % 4 == 1)
        say("\r" + std::string(dim(color)) + "thinking… " + std::to_string(live_count) + " tokens" + reset(color));
    } else {
      std::string t = e.text;
      if (had_think && !answer_started) {  // the answer follows "</think>\n\n": drop the blank lines
        size_t i = t.find_first_not_of("\r\n");
        t = i == std::string::npos ? "" : t.substr(i);
      }
      answer_started = answer_started || !t.empty();
      say(t);
    }
  };

  GenResult r;
  try {
    r = gen.generate(ids, opt, on_event);
  } catch (...) {
    if (thinking && color && show) say(reset(true));
    if (thinking && ecolor) std::fputs(reset(true), stderr);
    turns.pop_back();
    throw;
  }
  if (thinking)
    close_think(r.stats.think_tokens,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_think).count(), false);
  std::string answer = r.answer;
  if (size_t i = answer.find_first_not_of("\r\n"); i != std::string::npos) answer = answer.substr(i);
  else answer.clear();
  if (!answer.empty() && answer.back() != '\n') say("\n");
  else if (answer.empty() && (tty_out || !ed.interactive())) say("\n");

  // The partial turn stays in the conversation, also when interrupted.
  turns.push_back({"assistant", answer, r.reasoning});
  last_reasoning = r.reasoning;
  last = r;
  have_last = true;
  if (r.finish == Finish::Interrupted) notice("[interrupted]");
  if (r.finish == Finish::Loop)
    notice(std::string("[stopped: the ") + (r.think_end == ThinkEnd::Open ? "reasoning" : "answer") +
           " repeats itself in a loop; /set on_loop off lets it go on]");
  const int64_t used = L.session->n_past(), ctx = L.session->ctx();
  if (r.finish == Finish::Context) {
    notice("[the context is full: " + std::to_string(ctx) + " tokens; /clear to start over, or raise --ctx]");
  } else if (used * 10 >= ctx * 9 && !warned_full) {
    warned_full = true;
    notice("[warning: context " + std::to_string(used * 100 / ctx) + "% used (" + std::to_string(used) + " of " +
           std::to_string(ctx) + " tokens); /clear starts over]");
  }
  interrupted().store(false);
  dump_logits();
}

namespace {

// SIGTERM, or SIGHUP (the terminal went away), ends the chat at once wherever it is (at the
// prompt, in an answer, in a /load): the terminal gets back its settings (the line editor's raw
// mode) and attributes, a /save in progress loses its temporary, and the process ends as the
// signal says. (SIGINT only stops an answer.)
struct termios g_tty;
bool g_restore_tty = false, g_reset_tty = false;

void on_terminate(int sig) {
  if (g_restore_tty) tcsetattr(STDIN_FILENO, TCSANOW, &g_tty);
  if (g_reset_tty) {
    static const char s[] = "\033[0m\033[?2004l\n";  // attributes off, bracketed paste off
    ssize_t w = write(STDOUT_FILENO, s, sizeof s - 1);
    (void)w;
  }
  remove_registered_temps();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install_terminate() {
  g_restore_tty = tcgetattr(STDIN_FILENO, &g_tty) == 0;
  g_reset_tty = is_tty(stdout);
  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

int run_chat(ChatArgs& a) {
  const bool interactive = is_tty(stdin);
  Loaded L = load_for_run(a.model);
  install_interrupt();
  install_terminate();  // before the line editor changes the terminal's settings
  LineEditor ed(interactive, interactive ? default_history_path() : "");
  Chat chat(a, L, ed);
  if (!a.quiet) {
    std::fprintf(stderr, "%s\n", describe(L, a.model).c_str());
    if (a.model.verbose) std::fprintf(stderr, "seed %llu\n", (unsigned long long)chat.sampling.seed);
    if (interactive) std::fprintf(stderr, "Type a message; /help lists the commands; Ctrl-D leaves.\n");
  }

  bool ctrl_c_pending = false;  // a second Ctrl-C at an empty prompt leaves
  std::string msg;
  for (;;) {
    LineEditor::Read r = ed.read_message(msg);
    if (r == LineEditor::Read::Eof) {
      if (interactive) chat.say("\n");
      break;
    }
    if (r == LineEditor::Read::Interrupt) {
      if (msg.empty() && ctrl_c_pending) break;
      ctrl_c_pending = msg.empty();
      if (ctrl_c_pending) chat.notice("(Ctrl-C again or Ctrl-D to leave)");
      continue;
    }
    ctrl_c_pending = false;
    interrupted().store(false);
    size_t b = msg.find_first_not_of(" \t\r\n"), e = msg.find_last_not_of(" \t\r\n");
    if (b == std::string::npos) continue;
    std::string text = msg.substr(b, e - b + 1);
    ed.remember(text);
    try {
      if (text[0] == '/') {
        if (!chat.command(text)) break;
      } else {
        chat.turn(text);
      }
    } catch (const OutputFailed&) {
      throw;  // stdout is gone (a full disk): the chat cannot go on
    } catch (const std::exception& err) {  // a bad command or file (r1::Error), or out of memory: one line
      chat.say(reset(chat.color));
      std::fprintf(stderr, "r1 chat: %s\n",
                   dynamic_cast<const std::bad_alloc*>(&err) ? "out of memory" : err.what());
    }
  }
  return 0;
}

R1_COMMAND("chat", "Chat with a model interactively (or from a script on stdin)", 2, [](CLI::App& sub) {
  auto a = std::make_shared<ChatArgs>();
  add_model_flags(sub, a->model);
  add_sampling_flags(sub, a->sampling);
  sub.add_option("--system", a->system, "System prompt (R1 works best without one)");
  sub.add_option("-n,--max-tokens", a->max_tokens, "Most tokens per answer (default: until the context is full)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  add_reasoning_flags(sub, a->reasoning);
  add_think_flag(sub, a->think);  // fold: /think last shows what was folded
  add_template_flag(sub, a->tmpl);
  sub.add_flag("-q,--quiet", a->quiet, "No start-up line and no advice");
  sub.footer("In the chat: a line ending in \\ continues on the next; \"\"\" opens and closes a multi-line block.\n"
             "Ctrl-C stops an answer; Ctrl-D, /exit or Ctrl-C twice at an empty prompt leaves. /help lists the\n"
             "commands. History: $XDG_STATE_HOME/r1/chat_history. Exit codes: 0 ok, 1 usage, 2 bad model file.");
  return [a]() { return run_chat(*a); };
});

}  // namespace
}  // namespace r1::cli
