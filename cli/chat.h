// `r1 chat` state shared by the REPL (cli/cmd_chat.cpp) and its slash commands
// (cli/chat_commands.cpp).
#pragma once
#include <string>
#include <vector>

#include "cli/common.h"
#include "cli/line_editor.h"
#include "core/chat_template.h"
#include "core/generate.h"
#include "core/snapshot.h"

namespace r1::cli {

struct ChatArgs {
  ModelArgs model;
  SamplingArgs sampling;
  ReasoningArgs reasoning;
  std::string system, think, tmpl;
  int64_t max_tokens = -1;
  bool quiet = false;
};

using Turn = ChatTurn;

struct Chat {
  Chat(ChatArgs& args, Loaded& loaded, LineEditor& editor);

  void turn(const std::string& user_text);      // one exchange, streamed
  bool command(const std::string& line);         // a slash command; false: leave
  void dump_logits() const;                      // to $R1_CHAT_DUMP_LOGITS, if set

  // output helpers: stdout, or stderr for notices
  void say(const std::string& s) const;
  void notice(const std::string& s) const;

  ChatArgs& a;
  Loaded& L;
  LineEditor& ed;
  ChatTemplate tmpl;
  Generator gen;
  SamplerParams sampling;
  std::shared_ptr<const DryBreakers> dry;  // sampling.dry's breakers, made once
  std::string system, think_mode, last_reasoning;
  std::vector<Turn> turns;
  GenResult last;
  bool have_last = false, tty_out, color, warned_full = false;
};

}  // namespace r1::cli
