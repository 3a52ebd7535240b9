// Faults from outside: the model file truncated under a running process, a reader that closes
// the pipe early.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "models/runtime.h"
#include "fixture_models.h"
#include "test_util.h"

using namespace r1::test;

TEST_CASE("a model file truncated while mapped gives a clear error, not SIGBUS", "[faults]") {
  TempDir d("r1fault");
  std::string model = d / "m.r1m";
  fs::copy_file(r1test::packed("tiny-qwen2-py", "f32"), model);
  // a long generation, so the truncation lands while weights are being read
  pid_t pid = spawn_r1({"run", "-m", model, "--raw", "-p", "def main():\n", "--temp", "0", "-n", "100000", "--ctx", "4096", "--on-loop", "off"},
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

namespace {

// One invocation of each command that writes to stdout, with what it reads on stdin.
struct Invocation {
  std::vector<std::string> args;
  std::string in;
};
std::vector<Invocation> every_output(const TempDir& d) {
  const std::string m = r1test::packed("tiny-qwen2-py", "q8");
  write_file(d / "score.jsonl", "{\"prompt\": \"def f(x):\", \"completion\": \" return x\"}\n");
  write_file(d / "batch.jsonl", "{\"id\": 1, \"prompt\": \"import os\"}\n");
  std::error_code ec;
  fs::remove(d / "batch.out", ec);  // a fresh run each time, so that it has something to write
  return {{{"run", "-m", m, "--raw", "-p", "import os", "-n", "8", "--temp", "0"}, ""},
          {{"run", "-m", m, "--raw", "-p", "import os", "-n", "8", "--temp", "0", "--json"}, ""},
          {{"info", m}, ""},
          {{"info", m, "--json"}, ""},
          {{"verify", m}, ""},
          {{"score", "-m", m, d / "score.jsonl"}, ""},
          {{"batch", "-m", m, d / "batch.jsonl", "-o", d / "batch.out", "-n", "4", "--json-summary"}, ""},
          {{"tokenize", "-m", m}, "def f(x):\n    return x\n"},
          {{"detokenize", "-m", m}, "755 282 7 87 2123"},
          {{"template", "-m", m}, "[{\"role\": \"user\", \"content\": \"hi\"}]"}};
}

// Runs r1 with stdout on fd `out_fd` (stdin from `in`, stderr to a file); returns exit code and stderr.
CliResult run_r1_to_fd(const std::vector<std::string>& args, const std::string& in, int out_fd) {
  TempDir io("r1fd");
  write_file(io / "in", in);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int i = ::open((io / "in").c_str(), O_RDONLY), e = ::open((io / "err").c_str(), O_WRONLY | O_CREAT, 0644);
    ::dup2(i, 0);
    ::dup2(out_fd, 1);
    ::dup2(e, 2);
    std::vector<std::string> a{R1_BIN};
    a.insert(a.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(R1_BIN, argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  CliResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.err = slurp(io / "err");
  return r;
}

}  // namespace

TEST_CASE("stdout on a full disk: every command exits 2 with one line", "[faults]") {
  TempDir d("r1full");
  const int full = ::open("/dev/full", O_WRONLY);
  REQUIRE(full >= 0);
  for (auto& c : every_output(d)) {
    CliResult r = run_r1_to_fd(c.args, c.in, full);
    INFO("r1 " << c.args[0] << " " << c.args.back() << ": " << r.err);
    CHECK(r.code == 2);
    const std::string line = "r1 " + c.args[0] + ": writing the output: No space left on device\n";
    // r1 batch says what it did on stderr first (the results went to its -o file)
    if (c.args[0] == "batch") CHECK(r.err.substr(r.err.find('\n') + 1) == line);
    else CHECK(r.err == line);
  }
  ::close(full);
}

TEST_CASE("stdout a pipe nobody reads: every command exits 0 quietly", "[faults]") {
  TempDir d("r1pipe");
  for (auto& c : every_output(d)) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    ::close(p[0]);  // the reader is gone before r1 writes: every write is EPIPE
    CliResult r = run_r1_to_fd(c.args, c.in, p[1]);
    ::close(p[1]);
    INFO("r1 " << c.args[0] << " " << c.args.back() << ": " << r.err);
    CHECK(r.code == 0);
    if (c.args[0] == "batch") CHECK(r.err.rfind("r1 batch: 1 written", 0) == 0);
    CHECK(count_lines(r.err) == (c.args[0] == "batch" ? 1 : 0));
  }
}
