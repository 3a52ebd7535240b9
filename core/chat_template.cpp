#include "core/chat_template.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"
#include "core/suggest.h"

namespace r1 {
using json = nlohmann::json;

static const char kUser[] = "<｜User｜>";
static const char kAssistant[] = "<｜Assistant｜>";
static const char kEos[] = "<｜end▁of▁sentence｜>";

static std::string token_field(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

const char* template_kind_name(TemplateKind k) {
  switch (k) {
    case TemplateKind::R1: return "r1";
    case TemplateKind::ChatML: return "chatml";
    case TemplateKind::Llama3: return "llama3";
    case TemplateKind::Raw: return "raw";
  }
  return "?";
}

static bool has(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

ChatTemplate ChatTemplate::from_config(std::string_view config_json, std::string_view forced) {
  json cfg = parse_json(config_json.empty() ? std::string_view("{}") : config_json, "tokenizer_config.json");
  if (!cfg.is_object()) fail_input("tokenizer_config.json is not a JSON object");
  ChatTemplate t;
  t.bos_ = token_field(cfg, "bos_token");
  t.eos_ = token_field(cfg, "eos_token");

  std::string tpl;
  if (auto it = cfg.find("chat_template"); it != cfg.end()) {
    if (it->is_string()) tpl = it->get<std::string>();
    else if (it->is_array())  // named templates: [{"name": "default", "template": ...}, ...]
      for (auto& e : *it)
        if (e.is_object() && e.value("name", std::string()) == "default" && e.contains("template") &&
            e["template"].is_string())
          tpl = e["template"].get<std::string>();
  }

  if (!forced.empty()) {
    if (forced == "r1") t.kind_ = TemplateKind::R1;
    else if (forced == "chatml") t.kind_ = TemplateKind::ChatML;
    else if (forced == "llama3") t.kind_ = TemplateKind::Llama3;
    else if (forced == "raw") t.kind_ = TemplateKind::Raw;
    else fail_usage("unknown --template '" + std::string(forced) + "' (use raw, chatml, llama3 or r1)");
    if (t.kind_ == TemplateKind::R1 && has(tpl, kUser) && has(tpl, kAssistant)) {
      // Forcing r1 onto an R1 template still honours which variant it is.
      t.opens_think_ = has(tpl, "<｜Assistant｜><think>");
      t.strip_think_ = has(tpl, "</think>");
    }
    if (t.kind_ == TemplateKind::R1 && t.bos_.empty()) t.bos_ = "<｜begin▁of▁sentence｜>";
    return t;
  }

  if (has(tpl, kUser) && has(tpl, kAssistant) && has(tpl, "bos_token")) {
    t.kind_ = TemplateKind::R1;
    // The newer template's generation prompt is '<｜Assistant｜><think>\n'; the first release's
    // stops at '<｜Assistant｜>'.
    t.opens_think_ = has(tpl, "<｜Assistant｜><think>");
    t.strip_think_ = has(tpl, "</think>");
  } else if (has(tpl, "<|im_start|>") && has(tpl, "<|im_end|>") && !has(tpl, "tools") &&
             !has(tpl, "You are")) {
    t.kind_ = TemplateKind::ChatML;  // plain ChatML without an injected default system prompt
  } else if (has(tpl, "<|start_header_id|>") && has(tpl, "<|eot_id|>") && !has(tpl, "tools") &&
             !has(tpl, "Cutting Knowledge")) {
    t.kind_ = TemplateKind::Llama3;  // Llama-3.0 style; 3.1's adds a dated system header
  } else if (tpl.empty()) {
    fail_input("tokenizer_config.json has no chat_template; use --template raw|chatml|llama3|r1");
  } else {
    fail_input("unknown chat template; use --template raw|chatml|llama3|r1");
  }
  return t;
}

static std::string r1_render(const std::vector<Message>& msgs, bool gen, const std::string& bos,
                             bool opens_think, bool strip_think) {
  // Mirrors the official Jinja: the last system message is pasted after BOS, tool outputs are
  // grouped, past assistant turns keep only the text after their last "</think>".
  std::string sys;
  for (auto& m : msgs)
    if (m.role == "system") sys = m.content;
  std::string out = bos + sys;
  bool is_tool = false, output_first = true;
  for (auto& m : msgs) {
    if (m.role == "user") {
      is_tool = false;
      out += kUser + m.content;
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>" + m.content + kEos;
        is_tool = false;
      } else {
        std::string_view c = m.content;
        if (strip_think) {
          size_t p = c.rfind("</think>");
          if (p != std::string_view::npos) c = c.substr(p + 8);
        }
        out += kAssistant;
        out += c;
        out += kEos;
      }
    } else if (m.role == "tool") {
      is_tool = true;
      if (output_first) {
        out += "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" + m.content + "<｜tool▁output▁end｜>";
        output_first = false;
      } else {
        out += "\n<｜tool▁output▁begin｜>" + m.content + "<｜tool▁output▁end｜>";
      }
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (gen && !is_tool) out += opens_think ? "<｜Assistant｜><think>\n" : kAssistant;
  return out;
}

std::string ChatTemplate::generation_prompt(const std::vector<Message>& msgs, bool& opens_think) const {
  std::string s = render(msgs, true);
  const std::string_view tag = kAssistant, think = "<think>\n";
  auto ends_with = [&](std::string_view e) { return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0; };
  if (kind_ == TemplateKind::R1 && ends_with(tag)) s += think;
  opens_think = kind_ == TemplateKind::R1 && ends_with(std::string(tag) + std::string(think));
  return s;
}

// Jinja's `trim`: Python str.strip() on whitespace.
static std::string_view trim(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string ChatTemplate::render(const std::vector<Message>& msgs, bool gen) const {
  std::string out;
  switch (kind_) {
    case TemplateKind::R1:
      return r1_render(msgs, gen, bos_, opens_think_, strip_think_);
    case TemplateKind::ChatML:
      for (auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (gen) out += "<|im_start|>assistant\n";
      return out;
    case TemplateKind::Llama3:
      out = bos_;
      for (auto& m : msgs) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
        out += trim(m.content);
        out += "<|eot_id|>";
      }
      if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case TemplateKind::Raw:
      for (auto it = msgs.rbegin(); it != msgs.rend(); ++it)
        if (it->role == "user") return it->content;
      return "";
  }
  return out;
}

std::vector<Message> parse_messages_json(std::string_view text) {
  const json j = parse_json(text, "messages");
  if (j.is_object()) {
    if (!j.contains("messages")) fail_input("messages: expected an array or an object with \"messages\"");
    return messages_from_json(j["messages"]);
  }
  return messages_from_json(j);
}

std::vector<Message> messages_from_json(const json& j) {
  static const std::vector<std::string> kRoles = {"system", "user", "assistant", "tool"};
  if (!j.is_array()) fail_input("messages: expected a JSON array of {role, content}");
  std::vector<Message> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) fail_input(at + ": expected an object {role, content}");
    check_keys(m, {"role", "content"}, at);
    if (!m.contains("role") || !m["role"].is_string()) fail_input(at + ": \"role\" must be a string");
    Message msg{m["role"].get<std::string>(), ""};
    if (std::find(kRoles.begin(), kRoles.end(), msg.role) == kRoles.end())
      fail_input(at + ": " + unknown_name("role", msg.role, kRoles));
    if (m.contains("content") && !m["content"].is_null()) {
      const json& c = m["content"];
      if (c.is_string()) msg.content = c.get<std::string>();
      else if (c.is_array()) {  // [{"type": "text", "text": ...}, ...]
        for (auto& part : c) {
          if (!part.is_object() || !part.contains("text") || !part["text"].is_string())
            fail_input(at + ": content parts must be {\"type\": \"text\", \"text\": ...}");
          msg.content += part["text"].get<std::string>();
        }
      } else {
        fail_input(at + ": \"content\" must be a string");
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace r1
