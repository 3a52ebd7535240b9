// Chat prompts rendered natively (no Jinja engine): the DeepSeek-R1 distill template byte for byte
// as the official Jinja renders it, plus plain ChatML, Llama-3 and raw text. A template r1 does
// not recognise is an error rather than a guess.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace r1 {

struct Message {
  std::string role, content;
};

enum class TemplateKind { R1, ChatML, Llama3, Raw };
const char* template_kind_name(TemplateKind k);  // "r1", "chatml", "llama3", "raw": --template's words

class ChatTemplate {
 public:
  // From tokenizer_config.json text (chat_template, bos_token, eos_token). `forced` = "" (detect)
  // or "r1" / "chatml" / "llama3" / "raw".
  static ChatTemplate from_config(std::string_view tokenizer_config_json, std::string_view forced = "");
  TemplateKind kind() const { return kind_; }
  std::string render(const std::vector<Message>& msgs, bool add_generation_prompt = true) const;
  bool prompt_opens_think() const { return kind_ == TemplateKind::R1 && opens_think_; }
  // The text to generate from: render(msgs, true), where the older R1 template (whose generation
  // prompt stops at the Assistant tag) gets the "<think>\n" the newer one appends, as DeepSeek
  // advises, so that both variants reason alike. opens_think: it ends inside the reasoning.
  std::string generation_prompt(const std::vector<Message>& msgs, bool& opens_think) const;

 private:
  TemplateKind kind_ = TemplateKind::Raw;
  std::string bos_, eos_;
  bool opens_think_ = true;   // R1: generation prompt ends "<think>\n" (newer copies)
  bool strip_think_ = true;   // R1: history keeps only what follows "</think>"
};

// A JSON array of {role, content}, or an object {"messages": [...]}; fail_input when malformed,
// when a role is not system, user, assistant or tool (it would be dropped from the prompt), or
// when a message has another key (a misspelt "content" would leave it empty).
std::vector<Message> parse_messages_json(std::string_view json);
// The same from parsed JSON (a batch record's "messages").
std::vector<Message> messages_from_json(const nlohmann::json& j);

}  // namespace r1
