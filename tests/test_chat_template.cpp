// Chat template tests: the R1 template against strings the official Jinja renders, detection of
// template variants, forced kinds, and messages JSON errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/chat_template.h"
#include "core/error.h"

using namespace r1;
using json = nlohmann::json;

namespace {

std::string config(const std::string& name) {
  std::ifstream f(std::string(R1_FIXTURES "/tokenizers/") + name + "/tokenizer_config.json");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string with_template(const std::string& tpl) {
  return json{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"chat_template", tpl}}.dump();
}

const std::string BOS = "<｜begin▁of▁sentence｜>";

}  // namespace

TEST_CASE("R1 template renders like the official Jinja", "[template]") {
  for (const char* name : {"deepseek-r1-qwen", "deepseek-r1-llama"}) {
    ChatTemplate t = ChatTemplate::from_config(config(name));
    REQUIRE(t.kind() == TemplateKind::R1);
    CHECK(t.prompt_opens_think());
    CHECK(t.render({{"user", "Hi"}}) == BOS + "<｜User｜>Hi<｜Assistant｜><think>\n");
    CHECK(t.render({{"user", "Hi"}}, false) == BOS + "<｜User｜>Hi");
    CHECK(t.render({{"system", "Be brief."}, {"user", "Hi"}}) ==
          BOS + "Be brief.<｜User｜>Hi<｜Assistant｜><think>\n");
    // The last system message wins, wherever it is.
    CHECK(t.render({{"system", "A"}, {"user", "Hi"}, {"system", "B"}}) ==
          BOS + "B<｜User｜>Hi<｜Assistant｜><think>\n");
    CHECK(t.render({{"user", "Q1"},
                    {"assistant", "<think>\nhmm</think>\nmid</think>\n\nA1"},
                    {"user", "Q2"},
                    {"assistant", "no think here"},
                    {"user", "Q3"}}) ==
          BOS + "<｜User｜>Q1<｜Assistant｜>\n\nA1<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜>no think here"
                "<｜end▁of▁sentence｜><｜User｜>Q3<｜Assistant｜><think>\n");
    CHECK(t.render({}) == BOS + "<｜Assistant｜><think>\n");
    // Tool outputs, as the Jinja groups them.
    CHECK(t.render({{"user", "Q"}, {"tool", "r1"}, {"tool", "r2"}}) ==
          BOS + "<｜User｜>Q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r1<｜tool▁output▁end｜>"
                "\n<｜tool▁output▁begin｜>r2<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
    CHECK(t.render({{"user", "Q"}, {"tool", "r"}, {"assistant", "done"}}) ==
          BOS + "<｜User｜>Q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r<｜tool▁output▁end｜>"
                "<｜tool▁outputs▁end｜>done<｜end▁of▁sentence｜><｜Assistant｜><think>\n");
  }
}

TEST_CASE("older R1 template ends at the Assistant tag", "[template]") {
  json cfg = json::parse(config("deepseek-r1-qwen"));
  std::string tpl = cfg["chat_template"];
  const std::string newer = "{{'<｜Assistant｜><think>\\n'}}";
  size_t p = tpl.find(newer);
  REQUIRE(p != std::string::npos);
  tpl.replace(p, newer.size(), "{{'<｜Assistant｜>'}}");
  cfg["chat_template"] = tpl;
  ChatTemplate t = ChatTemplate::from_config(cfg.dump());
  CHECK(t.kind() == TemplateKind::R1);
  CHECK_FALSE(t.prompt_opens_think());
  CHECK(t.render({{"user", "Hi"}}) == BOS + "<｜User｜>Hi<｜Assistant｜>");
}

TEST_CASE("unknown templates are a clear error", "[template]") {
  CHECK_THROWS_WITH(ChatTemplate::from_config(with_template("{{ messages[0]['content'] }}")),
                    Catch::Contains("unknown chat template; use --template raw|chatml|llama3|r1"));
  CHECK_THROWS_AS(ChatTemplate::from_config("{}"), r1::Error);
  CHECK_THROWS_AS(ChatTemplate::from_config("not json"), r1::Error);
  try {
    ChatTemplate::from_config(with_template("{% for m in messages %}{{m.content}}{% endfor %}"));
    FAIL("no error");
  } catch (const r1::Error& e) {
    CHECK(e.kind == ErrorKind::Input);
  }
  try {
    ChatTemplate::from_config("{}", "jinja");
    FAIL("no error");
  } catch (const r1::Error& e) {
    CHECK(e.kind == ErrorKind::Usage);
  }
}

TEST_CASE("forced and detected kinds", "[template]") {
  std::vector<Message> msgs{{"system", "S"}, {"user", "  U1 "}, {"assistant", "A"}, {"user", "U2"}};
  ChatTemplate chatml = ChatTemplate::from_config("{}", "chatml");
  CHECK(chatml.kind() == TemplateKind::ChatML);
  CHECK_FALSE(chatml.prompt_opens_think());
  CHECK(chatml.render(msgs) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n  U1 <|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
  ChatTemplate llama = ChatTemplate::from_config(with_template(""), "llama3");
  CHECK(llama.render({{"user", "  U1 "}}) ==
        "<s><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  ChatTemplate raw = ChatTemplate::from_config("{}", "raw");
  CHECK(raw.render(msgs) == "U2");
  ChatTemplate r1 = ChatTemplate::from_config("{}", "r1");
  CHECK(r1.render({{"user", "x"}}) == BOS + "<｜User｜>x<｜Assistant｜><think>\n");
  ChatTemplate r1_raw = ChatTemplate::from_config(config("deepseek-r1-llama"), "raw");
  CHECK(r1_raw.render({{"user", "<think>"}}) == "<think>");

  // Plain ChatML and Llama-3.0 templates are recognised.
  std::string chatml_tpl =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  CHECK(ChatTemplate::from_config(with_template(chatml_tpl)).kind() == TemplateKind::ChatML);
  std::string llama_tpl =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  CHECK(ChatTemplate::from_config(with_template(llama_tpl)).kind() == TemplateKind::Llama3);
}

TEST_CASE("messages JSON parsing", "[template]") {
  auto m = parse_messages_json(R"([{"role":"user","content":"hi"},{"role":"assistant","content":null}])");
  REQUIRE(m.size() == 2);
  CHECK(m[0].content == "hi");
  CHECK(m[1].content == "");
  auto w = parse_messages_json(R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})");
  REQUIRE(w.size() == 1);
  CHECK(w[0].content == "ab");
  for (const char* bad : {"", "[", "{}", "42", "[1]", R"([{"content":"x"}])", R"([{"role":1,"content":"x"}])",
                          R"([{"role":"user","content":5}])", R"({"messages": {}})"}) {
    INFO(bad);
    try {
      parse_messages_json(bad);
      FAIL("accepted");
    } catch (const r1::Error& e) {
      CHECK(e.kind == ErrorKind::Input);
      CHECK(std::string(e.what()).find('\n') == std::string::npos);
    }
  }
}
