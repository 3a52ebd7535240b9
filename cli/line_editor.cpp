#include "cli/line_editor.h"

#include <histedit.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace r1::cli {

std::string default_history_path() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  std::string dir;
  if (xdg && *xdg) dir = std::string(xdg) + "/r1";
  else if (const char* home = std::getenv("HOME"); home && *home) dir = std::string(home) + "/.local/state/r1";
  else return "";
  return dir + "/chat_history";
}

struct LineEditor::Impl {
  EditLine* el = nullptr;
  History* hist = nullptr;
  std::string history_path, prompt = "> ", continuation = ". ";
  const std::string* current = &prompt;
  bool ctrl_c = false;
  bool entered = false;        // the line ended with Enter: an empty one is a line, not the end
  bool pasting = false;        // between the terminal's bracketed-paste markers
  bool newline_in_paste = false;  // the line just read ended inside a paste
  bool bracketed = false;      // the terminal was asked for bracketed paste

  static Impl* self(EditLine* el) {
    void* p = nullptr;
    el_get(el, EL_CLIENTDATA, &p);
    return static_cast<Impl*>(p);
  }
  static char* prompt_fn(EditLine* el) { return const_cast<char*>(self(el)->current->c_str()); }
  // ^C reaches us as a key (the line editor turns ISIG off while editing): end the line and
  // say it was an interrupt, instead of a signal that libedit would swallow.
  static unsigned char on_ctrl_c(EditLine* el, int) {
    self(el)->ctrl_c = true;
    return end_line();
  }
  // Our own accept-line (libedit's moves to a new line itself; a bound function must).
  static unsigned char end_line() {
    std::fputs("\n", stdout);
    std::fflush(stdout);
    return CC_NEWLINE;
  }
  // Pasted text arrives between ESC[200~ and ESC[201~: a newline inside it continues the
  // message instead of sending it, so a pasted block is one message.
  static unsigned char on_paste_begin(EditLine* el, int) {
    self(el)->pasting = true;
    return CC_NORM;
  }
  static unsigned char on_paste_end(EditLine* el, int) {
    self(el)->pasting = false;
    return CC_NORM;
  }
  static unsigned char on_enter(EditLine* el, int) {
    self(el)->entered = true;
    self(el)->newline_in_paste = self(el)->pasting;
    return end_line();
  }
};

LineEditor::LineEditor(bool interactive, std::string history_path)
    : impl_(std::make_unique<Impl>()), interactive_(interactive) {
  if (!interactive_) return;
  Impl& m = *impl_;
  m.history_path = std::move(history_path);
  m.hist = history_init();
  HistEvent ev;
  history(m.hist, &ev, H_SETSIZE, 1000);
  history(m.hist, &ev, H_SETUNIQUE, 1);
  if (!m.history_path.empty()) history(m.hist, &ev, H_LOAD, m.history_path.c_str());

  m.el = el_init("r1", stdin, stdout, stderr);
  el_set(m.el, EL_CLIENTDATA, &m);
  el_set(m.el, EL_EDITOR, "emacs");
  el_set(m.el, EL_PROMPT_ESC, &Impl::prompt_fn, '\1');
  el_set(m.el, EL_HIST, history, m.hist);
  el_set(m.el, EL_SETTY, "-d", "-isig", nullptr);
  el_set(m.el, EL_ADDFN, "r1-interrupt", "End the line as an interrupt", &Impl::on_ctrl_c);
  el_set(m.el, EL_BIND, "^C", "r1-interrupt", nullptr);
  el_set(m.el, EL_ADDFN, "r1-paste-begin", "Start of pasted text", &Impl::on_paste_begin);
  el_set(m.el, EL_ADDFN, "r1-paste-end", "End of pasted text", &Impl::on_paste_end);
  el_set(m.el, EL_ADDFN, "r1-enter", "Send the line (continue it inside a paste)", &Impl::on_enter);
  el_set(m.el, EL_BIND, "\033[200~", "r1-paste-begin", nullptr);
  el_set(m.el, EL_BIND, "\033[201~", "r1-paste-end", nullptr);
  el_set(m.el, EL_BIND, "^M", "r1-enter", nullptr);
  el_set(m.el, EL_BIND, "^J", "r1-enter", nullptr);
  const char* term = std::getenv("TERM");
  m.bracketed = !(term && std::string(term) == "dumb");
  el_source(m.el, nullptr);  // the user's ~/.editrc
}

LineEditor::~LineEditor() {
  if (impl_->el) el_end(impl_->el);
  if (impl_->hist) history_end(impl_->hist);
}

void LineEditor::set_prompt(std::string prompt, std::string continuation) {
  impl_->prompt = std::move(prompt);
  impl_->continuation = std::move(continuation);
}

void LineEditor::remember(const std::string& entry) {
  Impl& m = *impl_;
  if (!m.hist || entry.empty()) return;
  HistEvent ev;
  history(m.hist, &ev, H_ENTER, entry.c_str());
  if (m.history_path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(m.history_path).parent_path(), ec);
  history(m.hist, &ev, H_SAVE, m.history_path.c_str());  // after each entry: a crash keeps it
}

LineEditor::Line LineEditor::read_line(bool continuation, std::string& line) {
  Impl& m = *impl_;
  line.clear();
  if (!interactive_) {
    if (!std::getline(std::cin, line)) return Line::Eof;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return Line::Ok;
  }
  m.current = continuation ? &m.continuation : &m.prompt;
  m.ctrl_c = false;
  m.entered = false;
  m.newline_in_paste = false;
  if (m.bracketed) std::fputs("\033[?2004h", stdout);
  int count = 0;
  const char* s = el_gets(m.el, &count);
  if (m.bracketed) {
    std::fputs("\033[?2004l", stdout);
    std::fflush(stdout);
  }
  pasted_ = m.newline_in_paste;
  if (s && count > 0) line.assign(s, size_t(count));
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (m.ctrl_c) return Line::Interrupt;
  // el_gets gives NULL for an empty line as for Ctrl-D: only Enter tells them apart.
  if (!m.entered && (!s || count <= 0)) return Line::Eof;
  return Line::Ok;
}

LineEditor::Read LineEditor::read_message(std::string& msg) {
  msg.clear();
  std::string line;
  bool block = false, more = false;
  for (;;) {
    Line r = read_line(block || more, line);
    if (r == Line::Interrupt) {
      msg += line;  // the caller tells an empty prompt from a dropped line
      return Read::Interrupt;
    }
    if (r == Line::Eof) {
      if (!interactive_ || msg.empty()) return msg.empty() ? Read::Eof : Read::Message;
      return Read::Eof;
    }
    more = false;
    if (line == "\"\"\"") {  // opens or closes a block
      if (block) {
        if (!msg.empty() && msg.back() == '\n') msg.pop_back();
        return Read::Message;
      }
      block = true;
      continue;
    }
    if (block) {
      msg += line + "\n";
      continue;
    }
    if (pasted_) {  // more of the same paste follows
      msg += line + "\n";
      more = true;
      continue;
    }
    if (!line.empty() && line.back() == '\\') {
      msg += line.substr(0, line.size() - 1) + "\n";
      more = true;
      continue;
    }
    msg += line;
    return Read::Message;
  }
}

}  // namespace r1::cli
