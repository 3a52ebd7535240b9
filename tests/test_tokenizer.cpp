// Tokenizer tests: byte-exact ids against Hugging Face references, round trips, streaming decode,
// invalid input, and the fast NFC path against utf8proc.
#include <catch2/catch.hpp>
#include <utf8proc.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/chat_template.h"
#include "core/error.h"
#include "core/tok_utf8.h"
#include "core/tokenizer.h"

using namespace r1;
using json = nlohmann::json;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const Tokenizer& full(const std::string& name) {
  static Tokenizer qwen = Tokenizer::load(load_tokenizer_source(R1_FIXTURES "/tokenizers/deepseek-r1-qwen"));
  static Tokenizer llama = Tokenizer::load(load_tokenizer_source(R1_FIXTURES "/tokenizers/deepseek-r1-llama"));
  return name == "deepseek-r1-qwen" ? qwen : llama;
}

std::string nfc(const std::string& s) {
  utf8proc_uint8_t* r = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str()));
  REQUIRE(r != nullptr);
  std::string out(reinterpret_cast<char*>(r));
  std::free(r);
  return out;
}

std::string cp_utf8(uint32_t c) {
  utf8proc_uint8_t b[4];
  auto n = utf8proc_encode_char(utf8proc_int32_t(c), b);
  return std::string(reinterpret_cast<char*>(b), size_t(n));
}

std::string joined_bytes(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += t.token_text(id);
  return s;
}

std::string stream(const Tokenizer& t, const std::vector<int32_t>& ids, bool special = false) {
  StreamDecoder d(t, special);
  std::string s;
  for (int32_t id : ids) {
    std::string piece = d.push(id);
    CHECK(utf8::valid(piece));
    s += piece;
  }
  return s + d.flush();
}

// Random valid UTF-8 mixing the things pre-tokenizers care about.
std::string random_text(std::mt19937& rng) {
  static const char* const snippets[] = {"'s", "'T", "'re", "'ll", "'d", " ", "  ", "\t", "\r\n",
                                         "\n\n", "\r", "123", "4567", "-", "::", "()", "\"", "    "};
  std::uniform_int_distribution<int> kind(0, 11), len(0, 30);
  std::string s;
  int n = len(rng);
  for (int i = 0; i < n; ++i) {
    auto pick = [&](uint32_t lo, uint32_t hi) {
      return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
    };
    switch (kind(rng)) {
      case 0: s += char(pick('a', 'z')); break;
      case 1: s += char(pick('A', 'Z')); break;
      case 2: s += char(pick('0', '9')); break;
      case 3: s += snippets[pick(0, std::size(snippets) - 1)]; break;
      case 4: s += char(pick(0x20, 0x7E)); break;
      case 5: s += cp_utf8(pick(0x300, 0x36F)); break;     // combining marks
      case 6: s += cp_utf8(pick(0x4E00, 0x9FFF)); break;   // CJK
      case 7: s += cp_utf8(pick(0x1F300, 0x1FAFF)); break;  // emoji (astral)
      case 8: s += cp_utf8(pick(0xAC00, 0xD7A3)); break;   // Hangul syllables
      case 9: s += cp_utf8(pick(0x80, 0x2FF)); break;      // Latin-1 and extended
      case 10: {                                            // any scalar value, all planes
        uint32_t c;
        do c = pick(1, 0x10FFFF); while (c >= 0xD800 && c < 0xE000);
        s += cp_utf8(c);
        break;
      }
      default: s += cp_utf8(pick(0x2000, 0x3000)); break;  // spaces, punctuation, symbols
    }
  }
  return s;
}

}  // namespace

TEST_CASE("full tokenizers reproduce the HF reference ids", "[tokenizer]") {
  std::istringstream lines(slurp(R1_FIXTURES "/tokenizer-cases.jsonl"));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    json c = json::parse(line);
    const Tokenizer& t = full(c["tokenizer"]);
    std::string text = c["text"];
    INFO(c["tokenizer"].get<std::string>() << ": " << text);
    CHECK(t.encode(text) == c["ids"].get<std::vector<int32_t>>());
    CHECK(t.encode(text, true) == c["ids_with_bos"].get<std::vector<int32_t>>());
    ++n;
  }
  CHECK(n >= 40);
}

TEST_CASE("extra HF reference cases", "[tokenizer]") {
  std::string path = R1_FIXTURES "/tokenizer-cases-extra.jsonl";
  REQUIRE(std::filesystem::exists(path));  // a fixture of this repository: missing is a failure
  std::istringstream lines(slurp(path));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    json c = json::parse(line);
    const Tokenizer& t = full(c["tokenizer"]);
    std::string text = c["text"];
    INFO(c["tokenizer"].get<std::string>() << ": " << json(text).dump());
    CHECK(t.encode(text) == c["ids"].get<std::vector<int32_t>>());
    if (c.contains("decoded")) CHECK(t.decode(c["ids"].get<std::vector<int32_t>>()) == c["decoded"].get<std::string>());
  }
}

TEST_CASE("special token ids and metadata", "[tokenizer]") {
  const Tokenizer& q = full("deepseek-r1-qwen");
  CHECK(q.bos_id() == 151646);
  CHECK(q.eos_id() == 151643);
  CHECK(q.vocab_size() == 151665);
  CHECK(q.token_id("<｜User｜>") == 151644);
  CHECK(q.token_id("</think>") == 151649);
  CHECK(q.token_id("Ġthe") == q.token_id(" the"));
  CHECK(q.token_id("no such token, surely") == -1);
  CHECK(q.is_special(151643));
  CHECK_FALSE(q.is_special(151648));
  const Tokenizer& l = full("deepseek-r1-llama");
  CHECK(l.bos_id() == 128000);
  CHECK(l.eos_id() == 128001);
  CHECK(l.vocab_size() == 128256);
  CHECK(l.token_id("<think>") == 128013);
  CHECK(l.token_id("</think>") == 128014);
  CHECK(l.token_text(128014) == "</think>");
}

TEST_CASE("tiny fixture models: template and prompt ids", "[tokenizer][template]") {
  for (const char* name : {"tiny-qwen2", "tiny-llama3"}) {
    std::string dir = std::string(R1_FIXTURES "/models/") + name;
    TokenizerSource src = load_tokenizer_source(dir);
    Tokenizer tok = Tokenizer::load(src);
    ChatTemplate tpl = ChatTemplate::from_config(src.tokenizer_config_json);
    CHECK(tpl.kind() == TemplateKind::R1);
    CHECK(tpl.prompt_opens_think());
    json ref = json::parse(slurp(dir + "/reference.json"));
    for (auto& c : ref["cases"]) {
      std::vector<Message> msgs = parse_messages_json(c["messages"].dump());
      std::string rendered = tpl.render(msgs);
      INFO(name << ": " << rendered);
      CHECK(rendered == c["rendered"].get<std::string>());
      std::vector<int32_t> ids = tok.encode(rendered);
      CHECK(ids == c["prompt_ids"].get<std::vector<int32_t>>());
      CHECK(ids[0] == tok.bos_id());
      CHECK(std::count(ids.begin(), ids.end(), tok.bos_id()) == 1);  // no doubled BOS
      CHECK(tok.decode(ids, true) == rendered);
    }
  }
  std::string dir = R1_FIXTURES "/models/tiny-qwen2-py";
  Tokenizer tok = Tokenizer::load(load_tokenizer_source(dir));
  json ref = json::parse(slurp(dir + "/reference.json"));
  for (auto& c : ref["cases"]) {
    CHECK(tok.encode(c["text"].get<std::string>()) == c["prompt_ids"].get<std::vector<int32_t>>());
    if (c.contains("greedy_continuation_text"))
      CHECK(tok.decode(c["greedy_continuation_ids"].get<std::vector<int32_t>>()) ==
            c["greedy_continuation_text"].get<std::string>());
  }
}

TEST_CASE("round trip on fixture texts", "[tokenizer]") {
  std::vector<std::string> texts;
  std::istringstream lines(slurp(R1_FIXTURES "/tokenizer-cases.jsonl"));
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) texts.push_back(json::parse(line)["text"]);
  texts.push_back(slurp(R1_FIXTURES "/heldout.py.txt").substr(0, 60000));
  for (const char* name : {"deepseek-r1-qwen", "deepseek-r1-llama"}) {
    const Tokenizer& t = full(name);
    bool is_qwen = std::string(name) == "deepseek-r1-qwen";
    for (auto& x : texts) {
      auto ids = t.encode(x);
      std::string want = is_qwen ? nfc(x) : x;
      CHECK(t.decode(ids, true) == want);
      CHECK(stream(t, ids, true) == want);
    }
  }
}

TEST_CASE("round trip on random valid UTF-8", "[tokenizer]") {
  std::mt19937 rng(1234);
  for (const char* name : {"deepseek-r1-qwen", "deepseek-r1-llama"}) {
    const Tokenizer& t = full(name);
    bool is_qwen = std::string(name) == "deepseek-r1-qwen";
    for (int i = 0; i < 2500; ++i) {
      std::string x = random_text(rng);
      REQUIRE(utf8::valid(x));
      auto ids = t.encode(x);
      std::string want = is_qwen ? nfc(x) : x;
      INFO(name << " " << json(x).dump());
      REQUIRE(t.decode(ids) == want);
      REQUIRE(stream(t, ids) == want);
    }
  }
}

TEST_CASE("random invalid bytes never crash and keep their bytes", "[tokenizer]") {
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40), coin(0, 3);
  for (const char* name : {"deepseek-r1-qwen", "deepseek-r1-llama"}) {
    const Tokenizer& t = full(name);
    bool is_qwen = std::string(name) == "deepseek-r1-qwen";
    for (int i = 0; i < 3000; ++i) {
      std::string x;
      int n = len(rng);
      for (int k = 0; k < n; ++k) {
        if (coin(rng) == 0) x += random_text(rng).substr(0, 6);
        else x += char(byte(rng));
      }
      auto ids = t.encode(x);
      // Defined behaviour: byte-level BPE keeps every byte; NFC applies to the valid runs only.
      std::string want = is_qwen ? utf8::normalize(x, utf8::NormForm::NFC) : x;
      REQUIRE(joined_bytes(t, ids) == want);
      std::string d = t.decode(ids);
      REQUIRE(utf8::valid(d));
      REQUIRE(d == utf8::lossy(want));
      REQUIRE(stream(t, ids) == d);
    }
  }
}

TEST_CASE("stream decoder holds back partial characters", "[tokenizer]") {
  const Tokenizer& t = full("deepseek-r1-qwen");
  int32_t e6 = t.token_id(std::string("\xE6"));  // first byte of 日 (E6 97 A5)
  int32_t b97 = t.token_id(std::string("\x97"));
  int32_t ba5 = t.token_id(std::string("\xA5"));
  REQUIRE(e6 >= 0);
  REQUIRE(b97 >= 0);
  REQUIRE(ba5 >= 0);
  {
    StreamDecoder d(t);
    CHECK(d.push(t.token_id("a")) == "a");
    CHECK(d.push(e6) == "");
    CHECK(d.push(b97) == "");
    CHECK(d.push(ba5) == "日");
    CHECK(d.flush() == "");
  }
  {
    StreamDecoder d(t);
    CHECK(d.push(e6) == "");
    CHECK(d.push(b97) == "");
    CHECK(d.flush() == "\xEF\xBF\xBD");  // truncated: one U+FFFD
  }
  {
    StreamDecoder d(t);
    CHECK(d.push(e6) == "");
    CHECK(d.push(t.token_id("b")) == "\xEF\xBF\xBD" "b");
  }
  CHECK(t.decode({e6, b97}) == "\xEF\xBF\xBD");
  CHECK(t.decode({b97, ba5}) == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(t.token_text(e6) == "\xE6");
  CHECK(t.token_text(-1) == "");
}

TEST_CASE("special tokens decode only when asked", "[tokenizer]") {
  const Tokenizer& t = full("deepseek-r1-qwen");
  auto ids = t.encode("Hi<｜end▁of▁sentence｜>", true);
  REQUIRE(ids.size() == 3);
  CHECK(ids[0] == 151646);
  CHECK(ids[2] == 151643);
  CHECK(t.decode(ids) == "Hi");
  CHECK(t.decode(ids, true) == "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>");
  CHECK(stream(t, ids) == "Hi");
  // <think> is an added token but not a special one: it always shows.
  CHECK(t.decode(t.encode("<think>x</think>")) == "<think>x</think>");
}

TEST_CASE("NFC fast path agrees with utf8proc", "[tokenizer]") {
  // Every code point the fast path accepts must be NFC-stable on its own...
  for (uint32_t c = 1; c < 0x110000; ++c) {
    if (c >= 0xD800 && c < 0xE000) continue;
    std::string s = cp_utf8(c);
    if (!utf8::nfc_quick_stable(s)) continue;
    INFO(c);
    REQUIRE(utf8proc_get_property(utf8proc_int32_t(c))->combining_class == 0);
    REQUIRE(nfc(s) == s);
  }
  // ...and never the second half of a canonical composition.
  for (uint32_t c = 1; c < 0x110000; ++c) {
    if (c >= 0xD800 && c < 0xE000) continue;
    utf8proc_int32_t buf[8];
    int bound;
    auto n = utf8proc_decompose_char(utf8proc_int32_t(c), buf, 8, UTF8PROC_DECOMPOSE, &bound);
    for (utf8proc_ssize_t k = 1; k < n; ++k) {
      INFO(c << " part " << buf[k]);
      REQUIRE_FALSE(utf8::nfc_quick_stable(cp_utf8(uint32_t(buf[k]))));
    }
  }
}

TEST_CASE("lenient normalizer and lossy decoding", "[tokenizer]") {
  CHECK(utf8::normalize("e\xCC\x81", utf8::NormForm::NFC) == "\xC3\xA9");
  CHECK(utf8::normalize("e\xCC\x81\xFF" "e\xCC\x81", utf8::NormForm::NFC) == "\xC3\xA9\xFF\xC3\xA9");
  CHECK(utf8::normalize("\xED\xA0\x80", utf8::NormForm::NFC) == "\xED\xA0\x80");  // surrogate bytes kept
  CHECK(utf8::lossy("a\xF0\x9F\x98") == "a\xEF\xBF\xBD");
  CHECK(utf8::lossy("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(utf8::lossy("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_CASE("loading errors are clean", "[tokenizer]") {
  CHECK_THROWS_AS(load_tokenizer_source("/nonexistent/dir"), r1::Error);
  CHECK_THROWS_AS(load_tokenizer_source(R1_FIXTURES "/heldout.py.txt"), r1::Error);
  TokenizerSource bad{"{not json", "", "{}", "bad"};
  CHECK_THROWS_AS(Tokenizer::load(bad), r1::Error);
  TokenizerSource empty_model{R"({"model": {"type": "WordPiece", "vocab": {}}})", "", "{}", "wp"};
  CHECK_THROWS_WITH(Tokenizer::load(empty_model), Catch::Contains("WordPiece"));
  // Found by fuzzing: 80 tokens whose ids reach 666,666,665 made the loader size its tables
  // (and 8 GB of memory) by the largest id.
  TokenizerSource sparse{R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 666666665}, "merges": []}})", "", "{}",
                         "sparse"};
  CHECK_THROWS_WITH(Tokenizer::load(sparse), Catch::Contains("token ids go up to 666666665"));
  // Also found by fuzzing: a number where a flag belongs escaped as a JSON library exception.
  TokenizerSource wrong_type{R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                 "added_tokens": [{"id": 1, "content": "<x>", "special": 7}]})",
                             "", "{}", "types"};
  CHECK_THROWS_AS(Tokenizer::load(wrong_type), r1::Error);
}

TEST_CASE("SentencePiece model matches the Python sentencepiece library", "[tokenizer]") {
  // tests/fixtures/spm: made by scripts/make_spm_fixture.py (ids from Python sentencepiece).
  Tokenizer t = Tokenizer::load(load_tokenizer_source(R1_FIXTURES "/spm/tiny.model"));
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.vocab_size() == 400);
  CHECK(t.is_special(1));
  CHECK_FALSE(t.is_special(300));
  std::istringstream lines(slurp(R1_FIXTURES "/spm/cases.jsonl"));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    json c = json::parse(line);
    std::string text = c["text"];
    INFO(text);
    auto ids = t.encode(text);
    CHECK(ids == c["ids"].get<std::vector<int32_t>>());
    auto with_bos = t.encode(text, true);
    CHECK(with_bos.size() == ids.size() + 1);
    CHECK(with_bos[0] == 1);
    CHECK(t.decode(ids) == c["decoded"].get<std::string>());
    CHECK(stream(t, ids) == c["decoded"].get<std::string>());
    ++n;
  }
  CHECK(n >= 8);
  // Byte-fallback pieces may split a character: the stream holds it back.
  auto ids = t.encode("🦙");
  CHECK(t.decode(ids) == "🦙");
  std::vector<int32_t> cut(ids.begin(), ids.end() - 1);
  CHECK(stream(t, cut) == "\xEF\xBF\xBD");
}
