// Reading the user's messages for `r1 chat`: libedit line editing and a history file on a
// terminal, plain lines otherwise (scripted sessions). Both join a trailing-backslash line with
// the next and take a block between two `"""` lines as one message; on a terminal, pasted
// multi-line text (bracketed paste) is one message too.
#pragma once
#include <memory>
#include <string>

namespace r1::cli {

class LineEditor {
 public:
  enum class Read { Message, Eof, Interrupt };

  // interactive: libedit on the terminal; history_path: "" for no history file.
  LineEditor(bool interactive, std::string history_path);
  ~LineEditor();
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  void set_prompt(std::string prompt, std::string continuation);
  // One message (without the final newline). Interrupt: Ctrl-C at the prompt (the line is
  // dropped); Eof: Ctrl-D on an empty line or the end of stdin.
  Read read_message(std::string& msg);
  // Adds an entry to the history and the history file.
  void remember(const std::string& entry);
  bool interactive() const { return interactive_; }

 private:
  enum class Line { Ok, Eof, Interrupt };
  Line read_line(bool continuation, std::string& line);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool interactive_;
  bool pasted_ = false;  // the last line ended inside a bracketed paste
};

// $XDG_STATE_HOME/r1/chat_history, else ~/.local/state/r1/chat_history; "" if neither is known.
std::string default_history_path();

}  // namespace r1::cli
