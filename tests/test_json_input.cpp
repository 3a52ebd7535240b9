// Deeply nested JSON in every input r1 reads: refused with one clean line before anything
// recurses over it (a 100,000-deep batch record used to overflow the stack), while the depth
// real files use still parses.
#include <catch2/catch.hpp>

#include "core/chat_template.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/r1m.h"
#include "core/snapshot.h"
#include "core/tokenizer.h"
#include "fixture_models.h"
#include "quant/safetensors.h"
#include "test_util.h"

using namespace r1::test;

namespace {

std::string deep(size_t depth = 100000) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST_CASE("json_too_deep counts brackets outside strings up to the limit", "[json]") {
  const int lim = r1::kMaxJsonDepth;
  CHECK_FALSE(r1::json_too_deep(deep(size_t(lim))));
  CHECK(r1::json_too_deep(deep(size_t(lim) + 1)));
  CHECK_FALSE(r1::json_too_deep("{\"a\": \"" + std::string(1000, '[') + "\"}"));    // inside a string
  CHECK_FALSE(r1::json_too_deep("[\"\\\"" + std::string(1000, '{') + "\"]"));       // after an escaped quote
  CHECK(r1::json_too_deep("[\"\\\\\"" + std::string(size_t(lim), '[')));            // an escaped backslash ends no string
  CHECK(r1::parse_json(deep(size_t(lim)), "x").is_array());
  CHECK(error_of([&] { r1::parse_json(deep(), "in.json"); }) == "in.json: JSON nested deeper than 128 levels");
  CHECK(error_of([&] { r1::parse_json("{\"a\": \"\xff\"}", "in.json"); }) == "in.json: invalid UTF-8 at byte 8");
  CHECK(error_of([&] { r1::parse_json("{\"a\": ", "in.json"); }).rfind("in.json: malformed JSON at byte", 0) == 0);
}

TEST_CASE("r1 batch/template/detokenize/score refuse 100000-deep JSON with one line", "[json]") {
  TempDir d("r1deep");
  const std::string model = r1test::packed("tiny-qwen2", "q8");
  write_file(d / "in.jsonl", "{\"id\": 1, \"prompt\": \"hi\"}\n{\"id\": 2, \"messages\": " + deep() + "}\n");
  CliResult b = run_r1({"batch", "-m", model, d / "in.jsonl", "-o", d / "out.jsonl"});
  INFO(b.err);
  CHECK(b.code == 2);
  CHECK(b.err == "r1 batch: " + (d / "in.jsonl") + " line 2: JSON nested deeper than 128 levels\n");
  CHECK_FALSE(fs::exists(d / "out.jsonl"));

  CliResult t = run_r1_input({"template", "-m", model}, "[{\"role\": \"user\", \"content\": " + deep() + "}]");
  CHECK(t.code == 2);
  CHECK(t.err == "r1 template: messages: JSON nested deeper than 128 levels\n");

  CliResult ids = run_r1_input({"detokenize", "-m", model}, deep());
  CHECK(ids.code == 2);
  CHECK(ids.err == "r1 detokenize: ids: JSON nested deeper than 128 levels\n");

  write_file(d / "s.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\", \"id\": " + deep() + "}\n");
  CliResult s = run_r1({"score", "-m", model, d / "s.jsonl"});
  CHECK(s.code == 2);
  CHECK(s.err == "r1 score: " + (d / "s.jsonl") + " line 1: JSON nested deeper than 128 levels\n");
}

TEST_CASE("configs/tokenizer files/safetensors headers/r1m metadata/snapshots refuse deep JSON", "[json]") {
  TempDir d("r1deep");
  const std::string too_deep = "nested deeper than 128 levels";

  // a checkpoint's config.json and tokenizer_config.json, through r1 pack
  for (const char* file : {"config.json", "tokenizer_config.json"}) {
    copy_dir(fixture_model("tiny-qwen2"), d / "ckpt");
    write_file(d / (std::string("ckpt/") + file), "{\"x\": " + deep() + "}");
    CliResult p = run_r1({"pack", d / "ckpt", "-o", d / "m.r1m", "-q"});
    INFO(file << ": " << p.err);
    CHECK(p.code == 2);
    CHECK(p.err.find(too_deep) != std::string::npos);
    CHECK(count_lines(p.err) == 1);
    fs::remove_all(d / "ckpt");
  }

  r1::TokenizerSource src = r1::load_tokenizer_source(fixture_model("tiny-qwen2"));
  r1::TokenizerSource bad = src;
  bad.tokenizer_json = "{\"normalizer\": " + deep() + "}";
  CHECK(error_of([&] { r1::Tokenizer::load(bad); }).find(too_deep) != std::string::npos);
  bad = src;
  bad.tokenizer_config_json = "{\"bos_token\": " + deep() + "}";
  CHECK(error_of([&] { r1::Tokenizer::load(bad); }).find(too_deep) != std::string::npos);
  CHECK(error_of([&] { r1::ChatTemplate::from_config("{\"chat_template\": " + deep() + "}"); }).find(too_deep) !=
        std::string::npos);

  // a safetensors header
  const std::string h = "{\"__metadata__\": " + deep() + "}";
  const uint64_t hl = h.size();
  write_file(d / "deep.safetensors", std::string(reinterpret_cast<const char*>(&hl), 8) + h);
  CHECK(error_of([&] { r1::Safetensors::open(d / "deep.safetensors"); }).find(too_deep) != std::string::npos);

  // .r1m metadata (valid checksums, so only the depth can refuse it)
  {
    r1::R1Writer w(d / "deep.r1m", {{"t", r1::Format::F32, {4}}});
    const float x[4] = {1, 2, 3, 4};
    w.write_tensor(0, x, sizeof x);
    w.finish_json_text("{\"config\": {}, \"x\": " + deep() + "}");
  }
  CHECK(error_of([&] { r1::R1File::open(d / "deep.r1m"); }).find(too_deep) != std::string::npos);

  // a chat snapshot's conversation
  CHECK(error_of([&] { r1::conversation_from_json("{\"system\": \"\", \"turns\": [{\"role\": " + deep() + "}]}"); })
            .find("its conversation is malformed") != std::string::npos);
  r1::Conversation c = r1::conversation_from_json(r1::conversation_to_json({"sys", {{"user", "hi", ""}, {"assistant", "yo", "hmm"}}}));
  CHECK(c.system == "sys");
  REQUIRE(c.turns.size() == 2);
  CHECK(c.turns[1].reasoning == "hmm");
}

TEST_CASE("a number out of range in JSON is a clean input error, not an escaped exception", "[json]") {
  // nlohmann throws out_of_range (not parse_error) for 1e999: found by fuzz_safetensors
  for (const char* text : {"{\"x\": 1e999}", "[-1e400]", "{\"__metadata__\": {\"a\": 1e309}}"}) {
    INFO(text);
    CHECK_THROWS_AS(r1::parse_json(text, "test.json"), r1::Error);
    try {
      r1::parse_json(text, "test.json");
    } catch (const r1::Error& e) {
      CHECK(std::string(e.what()) == "test.json: a number in the JSON is out of range");
    }
  }
}
