// `r1 tokenize`, `r1 detokenize` and `r1 template`: the tokenizer and chat template on their own,
// for checking prompts against other tools.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/term.h"
#include "core/chat_template.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/tokenizer.h"

namespace r1::cli {
namespace {

std::string read_stdin() {
  std::string s{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  if (std::cin.bad()) fail_input("error reading stdin");
  return s;
}

void write_out(const std::string& s) { out(stdout, s); }  // a closed pipe ends quietly, as everywhere

// Ids as a JSON array, or separated by whitespace and/or commas.
std::vector<int32_t> parse_ids(const std::string& text, int64_t vocab) {
  std::vector<int64_t> raw;
  size_t b = text.find_first_not_of(" \t\r\n");
  if (b != std::string::npos && text[b] == '[') {
    auto j = parse_json(text, "ids");
    if (!j.is_array()) fail_input("ids: malformed JSON array");
    for (auto& v : j) {
      if (!v.is_number_integer()) fail_input("ids: " + v.dump() + " is not an integer");
      raw.push_back(v.get<int64_t>());
    }
  } else {
    size_t i = 0;
    while (i < text.size()) {
      if (std::isspace(uint8_t(text[i])) || text[i] == ',') { ++i; continue; }
      size_t j = i;
      while (j < text.size() && !std::isspace(uint8_t(text[j])) && text[j] != ',') ++j;
      std::string tok = text.substr(i, j - i);
      size_t used = 0;
      int64_t v = 0;
      try { v = std::stoll(tok, &used); } catch (...) { used = 0; }
      if (used != tok.size() || tok.empty()) fail_input("ids: '" + tok + "' is not an integer");
      raw.push_back(v);
      i = j;
    }
  }
  std::vector<int32_t> ids;
  for (int64_t v : raw) {
    if (v < 0 || v >= vocab)
      fail_input("ids: " + std::to_string(v) + " is out of range (vocabulary has " + std::to_string(vocab) + " tokens)");
    ids.push_back(int32_t(v));
  }
  return ids;
}

Runner setup_tokenize(CLI::App& sub) {
  auto model = std::make_shared<std::string>();
  auto bos = std::make_shared<bool>(false);
  auto as_json = std::make_shared<bool>(false);
  sub.add_option("-m,--model", *model, "model: .r1m file or Hugging Face directory")->required();
  sub.add_flag("--bos", *bos, "prepend the BOS token");
  sub.add_flag("--json", *as_json, "print a JSON array");
  return [=] {
    Tokenizer tok = Tokenizer::load(load_tokenizer_source(*model));
    // Invalid UTF-8 is not an error: byte-level BPE encodes the bytes as they are.
    std::vector<int32_t> ids = tok.encode(read_stdin(), *bos);
    std::string out;
    if (*as_json) out = nlohmann::json(ids).dump();
    else
      for (size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
    write_out(out + "\n");
    return 0;
  };
}

Runner setup_detokenize(CLI::App& sub) {
  auto model = std::make_shared<std::string>();
  auto special = std::make_shared<bool>(false);
  sub.add_option("-m,--model", *model, "model: .r1m file or Hugging Face directory")->required();
  sub.add_flag("--special", *special, "print special tokens too");
  return [=] {
    Tokenizer tok = Tokenizer::load(load_tokenizer_source(*model));
    write_out(tok.decode(parse_ids(read_stdin(), tok.vocab_size()), *special));
    return 0;
  };
}

Runner setup_template(CLI::App& sub) {
  auto model = std::make_shared<std::string>();
  auto system = std::make_shared<std::string>();
  auto kind = std::make_shared<std::string>();
  auto no_gen = std::make_shared<bool>(false);
  sub.add_option("-m,--model", *model, "model: .r1m file or Hugging Face directory")->required();
  sub.add_option("--system", *system, "system prompt (replaces any in the messages)");
  sub.add_option("--template", *kind, "template kind: r1, chatml, llama3 or raw (default: detect)")
      ->check(CLI::IsMember({"r1", "chatml", "llama3", "raw"}));
  sub.add_flag("--no-generation-prompt", *no_gen, "leave out the assistant prompt at the end");
  return [=] {
    TokenizerSource src = load_tokenizer_source(*model);
    ChatTemplate tpl = ChatTemplate::from_config(src.tokenizer_config_json, *kind);
    std::vector<Message> msgs = parse_messages_json(read_stdin());
    if (!system->empty()) {
      std::erase_if(msgs, [](const Message& m) { return m.role == "system"; });
      msgs.insert(msgs.begin(), Message{"system", *system});
    }
    write_out(tpl.render(msgs, !*no_gen));  // exactly the prompt: no newline added
    return 0;
  };
}

}  // namespace

R1_COMMAND("tokenize", "text on stdin -> token ids", 60, setup_tokenize);
R1_COMMAND("detokenize", "token ids on stdin -> text", 61, setup_detokenize);
R1_COMMAND("template", "render a chat prompt from messages JSON on stdin", 62, setup_template);

}  // namespace r1::cli
