// Faults from outside: the model file truncated under a running process, a reader that closes
// the pipe early.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "core/runtime.h"
#include "fixture_models.h"
#include "test_util.h"

using namespace r1::test;

TEST_CASE("a model file truncated while mapped gives a clear error, not SIGBUS", "[faults]") {
  TempDir d("r1fault");
  std::string model = d / "m.r1m";
  fs::copy_file(r1test::packed("tiny-qwen2-py", "f32"), model);
  // a long generation, so the truncation lands while weights are being read
  pid_t pid = spawn_r1({"run", "-m", model, "--raw", "-p", "def main():\n", "--temp", "0", "-n", "100000", "--ctx", "4096"},
                       d / "out", d / "err");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  REQUIRE(::truncate(model.c_str(), 4096) == 0);
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  INFO(slurp(d / "err"));
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 2);
  CHECK(slurp(d / "err").find("truncated or changed while in use") != std::string::npos);
}

TEST_CASE("r1 run | head -c 10 ends quietly", "[faults]") {
  TempDir d("r1pipe");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  std::string cmd = "set -o pipefail; " + shell_quote(R1_BIN) + " run -m " + shell_quote(model) +
                    " --raw -p 'import os' --temp 0 -n 2000 2>" + shell_quote(d / "err") + " | head -c 10 >" +
                    shell_quote(d / "out");
  int st = std::system(("bash -c " + shell_quote(cmd)).c_str());
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);  // documented: a closed pipe is not an error
  CHECK(slurp(d / "err").empty());
  CHECK(slurp(d / "out").size() == 10);
}

TEST_CASE("a full disk while packing: clear error, no .r1m and no temporary left", "[faults]") {
  TempDir d("r1full");
  // a file-size limit stands in for a full disk (writes fail with EFBIG like ENOSPC)
  std::string cmd = "ulimit -f 2048; " + shell_quote(R1_BIN) + " pack " + shell_quote(fixture_model("tiny-qwen2")) +
                    " -o " + shell_quote(d / "m.r1m") + " --quant bf16 -q 2>" + shell_quote(d / "err");
  int st = std::system(("bash -c " + shell_quote(cmd)).c_str());
  INFO(slurp(d / "err"));
  CHECK(WEXITSTATUS(st) == 2);
  CHECK(slurp(d / "err").find("disk full") != std::string::npos);
  CHECK(count_lines(slurp(d / "err")) == 1);
  CHECK(files_containing(d.path(), "m.r1m").empty());
}

TEST_CASE("SIGTERM during r1 batch: the current line is finished or dropped, and the job resumes", "[faults]") {
  TempDir d("r1term");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  std::string in;
  for (int i = 0; i < 40; i++) in += "{\"id\": " + std::to_string(i) + ", \"prompt\": \"def f" + std::to_string(i) + "(x):\\n\"}\n";
  write_file(d / "in.jsonl", in);
  std::vector<std::string> args{"batch", "-m", model, d / "in.jsonl", "-o", d / "out.jsonl", "--template", "raw", "-n", "16", "--temp", "0"};
  pid_t pid = spawn_r1(args, d / "o", d / "e");
  for (int i = 0; i < 500 && count_lines(fs::exists(d / "out.jsonl") ? slurp(d / "out.jsonl") : "") < 3; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  kill(pid, SIGTERM);
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 130);
  CHECK(slurp(d / "e").find("resume") != std::string::npos);
  std::string partial = slurp(d / "out.jsonl");
  CHECK((partial.empty() || partial.back() == '\n'));
  CHECK(count_lines(partial) < 40);
  auto r = run_r1(args);
  CHECK(r.code == 0);
  CHECK(count_lines(slurp(d / "out.jsonl")) == 40);
}

// An explicit --ctx whose KV cache cannot fit is refused before anything is allocated, with what
// would fit; without this, the cache's pages fill as the prompt runs and the OOM killer ends it.
TEST_CASE("a --ctx whose KV cache exceeds the memory is refused up front", "[faults]") {
  const uint64_t avail = r1::available_memory();
  REQUIRE(avail > 0);  // Linux: MemAvailable
  r1::Config c;  // Llama-70B's attention shape with a long trained context
  c.n_layers = 80;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.max_pos = int64_t(1) << 24;
  const int64_t per = 80 * 8 * 128 * 2 * 2;  // K and V in f16, bytes per position
  const int64_t too_many = int64_t(avail / uint64_t(per)) + 4096;
  REQUIRE(too_many <= c.max_pos);
  std::string msg;
  try {
    r1::choose_ctx(c, too_many, r1::KvFormat::F16);
  } catch (const r1::Error& e) {
    msg = e.what();
    CHECK(e.kind == r1::ErrorKind::Usage);
  }
  INFO(msg);
  CHECK(msg.find("--ctx " + std::to_string(too_many) + " needs") != std::string::npos);
  CHECK(msg.find("or --kv q8") != std::string::npos);
  // what fits is accepted; a GPU's cache is not counted against this machine's memory
  CHECK(r1::choose_ctx(c, 1024, r1::KvFormat::F16) == 1024);
  CHECK(r1::choose_ctx(c, too_many, r1::KvFormat::F16, /*kv_in_ram=*/false) == too_many);
}
