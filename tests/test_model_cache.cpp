// A GGUF file or a Hugging Face checkpoint directory given to run, chat, batch or score: packed
// once into $XDG_CACHE_HOME/r1 (saying where and how big first), reused while the source is
// unchanged, packed again when it changes, refused cleanly when the disk lacks the room.
#include <sys/stat.h>
#include <utime.h>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "fixture_models.h"
#include "quant/model_cache.h"
#include "test_util.h"

using namespace r1::test;

namespace {

// $XDG_CACHE_HOME for the r1 processes this test starts (each test case is its own process).
struct CacheHome {
  TempDir dir{"r1cache"};
  CacheHome() { ::setenv("XDG_CACHE_HOME", dir.path().c_str(), 1); }
  ~CacheHome() { ::unsetenv("XDG_CACHE_HOME"); }
  std::vector<std::string> entries() const { return files_containing(dir / "r1", ""); }
};

ino_t inode(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Moves a file's modification time (as an edit would) without changing its bytes.
void touch_back(const std::string& p, int seconds) {
  struct stat st;
  REQUIRE(::stat(p.c_str(), &st) == 0);
  struct utimbuf t{st.st_atime, st.st_mtime - seconds};
  REQUIRE(::utime(p.c_str(), &t) == 0);
}

}  // namespace

TEST_CASE("a checkpoint directory given to r1 run is packed once into the cache and reused", "[cache]") {
  CacheHome home;
  TempDir d("r1src");
  copy_dir(fixture_model("tiny-qwen2"), d / "tiny-qwen2");
  const std::vector<std::string> args{"run", "-m", d / "tiny-qwen2", "-p", "What is 2+2?", "-n", "6", "--temp", "0", "--json"};

  CliResult first = run_r1(args);
  INFO(first.err);
  REQUIRE(first.code == 0);
  REQUIRE(home.entries().size() == 1);
  const std::string cached = home.dir / ("r1/" + home.entries()[0]);
  // where, and how big, before the work
  CHECK(first.err.rfind("r1: packing " + (d / "tiny-qwen2") + " into " + cached + " (", 0) == 0);
  CHECK(first.err.find(" MB; once: reused while the source is unchanged)\n") != std::string::npos);
  // the same model as r1 pack makes by default (q4): the same greedy tokens
  CliResult packed = run_r1({"run", "-m", r1test::packed("tiny-qwen2", "q4"), "-p", "What is 2+2?", "-n", "6", "--temp", "0", "--json"});
  REQUIRE(packed.code == 0);
  CHECK(nlohmann::json::parse(first.out)["reasoning"] == nlohmann::json::parse(packed.out)["reasoning"]);

  CliResult again = run_r1(args);
  CHECK(again.code == 0);
  CHECK(again.err.find("packing") == std::string::npos);
  CHECK(nlohmann::json::parse(again.out)["reasoning"] == nlohmann::json::parse(first.out)["reasoning"]);
  CHECK(home.entries().size() == 1);
  const ino_t ino = inode(cached);

  // an edited source (a file's modification time moved) is packed again; the old copy goes
  touch_back(d / "tiny-qwen2/config.json", 10);
  CliResult edited = run_r1(args);
  CHECK(edited.code == 0);
  CHECK(edited.err.find("r1: packing ") == 0);
  REQUIRE(home.entries().size() == 1);
  CHECK(home.dir / ("r1/" + home.entries()[0]) != cached);
  CHECK(inode(cached) != ino);

  // a file that is no model says what r1 takes, and names r1 pack
  CliResult bad = run_r1({"run", "-m", d / "tiny-qwen2/config.json", "-p", "hi"});
  CHECK(bad.code == 2);
  CHECK(count_lines(bad.err) == 1);
  CHECK(bad.err.find("r1 pack") != std::string::npos);
}

TEST_CASE("a GGUF file works in chat, batch and score, packed once for all three", "[cache]") {
  CacheHome home;
  TempDir d("r1gg");
  const std::string gguf = std::string(R1_FIXTURES) + "/gguf/tiny-qwen2-q8_0.gguf";
  CliResult chat = run_r1_input({"chat", "-q", "-m", gguf, "-n", "4"}, "hello\n");
  write_file(d / "in.jsonl", "{\"id\": 1, \"prompt\": \"hi\"}\n");
  CliResult batch = run_r1({"batch", "-m", gguf, d / "in.jsonl", "-o", d / "out.jsonl", "-n", "4"});
  write_file(d / "s.jsonl", "{\"prompt\": \"a b\", \"completion\": \" c\"}\n");
  CliResult score = run_r1({"score", "-m", gguf, d / "s.jsonl"});
  INFO(chat.err << batch.err << score.err);
  CHECK(chat.code == 0);
  CHECK(batch.code == 0);
  CHECK(score.code == 0);
  CHECK(chat.err.find("r1: packing " + gguf + " into ") == 0);
  CHECK(batch.err.find("packing") == std::string::npos);
  CHECK(score.err.find("packing") == std::string::npos);
  CHECK(home.entries().size() == 1);
  CHECK(count_lines(slurp(d / "out.jsonl")) == 1);
}

TEST_CASE("the model cache refuses cleanly when the disk lacks the room, and follows split GGUF parts", "[cache]") {
  TempDir cache("r1cache"), d("r1split");
  r1::CacheOptions o;
  o.dir = cache.path();
  o.free_bytes = [](const std::string&) { return uint64_t(1000); };
  const std::string msg = error_of([&] { r1::resolve_model(fixture_model("tiny-qwen2"), o); });
  INFO(msg);
  CHECK(msg.find("packing " + fixture_model("tiny-qwen2") + " needs ") == 0);
  CHECK(msg.find(" in " + cache.path() + ", which has 0.0 MB free") != std::string::npos);
  CHECK(msg.find("XDG_CACHE_HOME") != std::string::npos);
  CHECK(files_containing(cache.path(), "").empty());  // nothing written, no temporary left

  // a split GGUF: the cache entry follows the state of every part
  o.free_bytes = nullptr;
  for (const char* part : {"tiny-llama3-q4_0-00001-of-00002.gguf", "tiny-llama3-q4_0-00002-of-00002.gguf"})
    fs::copy_file(std::string(R1_FIXTURES) + "/gguf/" + part, d / part);
  const std::string first = r1::resolve_model(d / "tiny-llama3-q4_0-00001-of-00002.gguf", o);
  CHECK(r1::resolve_model(d / "tiny-llama3-q4_0-00001-of-00002.gguf", o) == first);
  touch_back(d / "tiny-llama3-q4_0-00002-of-00002.gguf", 10);
  const std::string second = r1::resolve_model(d / "tiny-llama3-q4_0-00001-of-00002.gguf", o);
  CHECK(second != first);
  CHECK(files_containing(cache.path(), ".r1m").size() == 1);
  // an .r1m is itself
  CHECK(r1::resolve_model(second, o) == second);
}
