// r1 batch: exactly-once results across kills and resumes, shards that add up to the whole,
// results equal to r1 run, and clean failures.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <thread>

#include "fixture_models.h"
#include "test_util.h"

using namespace r1::test;

namespace {

const char* kPrompts[] = {"def add(a, b):\n", "import sys\n", "class Stack:\n", "for i in range(10):\n",
                          "def main():\n", "x = [1, 2, 3]\n", "# parse the arguments\n", "try:\n",
                          "def fib(n):\n", "with open(path) as f:\n", "from typing import List\n", "return None\n"};

std::string input_jsonl() {
  std::string s;
  int i = 0;
  for (auto p : kPrompts) {
    nlohmann::json j = {{"id", "r" + std::to_string(i)}, {"prompt", p}};
    if (i % 3 == 0) j["seed"] = 100 + i;
    if (i % 4 == 1) j["temperature"] = 0;
    s += j.dump() + "\n";
    i++;
  }
  return s;
}

std::map<std::string, nlohmann::json> by_id(const std::string& jsonl) {
  std::map<std::string, nlohmann::json> m;
  std::istringstream ss(jsonl);
  std::string line;
  while (std::getline(ss, line)) {
    auto j = nlohmann::json::parse(line);
    INFO("duplicate id " << j["id"]);
    REQUIRE(m.count(j["id"].dump()) == 0);
    m[j["id"].dump()] = j;
  }
  return m;
}

std::vector<std::string> batch_args(const std::string& model, const std::string& in, const std::string& out) {
  return {"batch", "-m", model, in, "-o", out, "--template", "raw", "-n", "10", "--seed", "5", "--temp", "0.9"};
}

}  // namespace

TEST_CASE("batch: killed midway and resumed, every id exactly once, same results", "[batch]") {
  TempDir d("r1batch");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  write_file(d / "in.jsonl", input_jsonl());
  auto full = run_r1(batch_args(model, d / "in.jsonl", d / "full.jsonl"));
  INFO(full.err);
  REQUIRE(full.code == 0);
  auto want = by_id(slurp(d / "full.jsonl"));
  REQUIRE(want.size() == 12);

  // kill at a few points, then resume; a partial last line from a kill is dropped
  pid_t pid = spawn_r1(batch_args(model, d / "in.jsonl", d / "out.jsonl"), d / "o1", d / "e1");
  for (int i = 0; i < 400 && count_lines(fs::exists(d / "out.jsonl") ? slurp(d / "out.jsonl") : "") < 4; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::string partial = slurp(d / "out.jsonl");
  CHECK(count_lines(partial) < 12);
  write_file(d / "out.jsonl", partial + "{\"id\": \"r1");  // as if cut mid-line
  auto resumed = run_r1(batch_args(model, d / "in.jsonl", d / "out.jsonl"));
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  auto got = by_id(slurp(d / "out.jsonl"));
  CHECK(got.size() == 12);
  for (auto& [id, j] : want) {
    REQUIRE(got.count(id));
    CHECK(got[id]["answer"] == j["answer"]);
    CHECK(got[id]["completion_tokens"] == j["completion_tokens"]);
  }
  // a third run has nothing to do
  auto again = run_r1(batch_args(model, d / "in.jsonl", d / "out.jsonl"));
  CHECK(again.code == 0);
  CHECK(count_lines(slurp(d / "out.jsonl")) == 12);
}

TEST_CASE("batch: shards 0/3, 1/3, 2/3 together are the whole run", "[batch]") {
  TempDir d("r1shard");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  write_file(d / "in.jsonl", input_jsonl());
  REQUIRE(run_r1(batch_args(model, d / "in.jsonl", d / "full.jsonl")).code == 0);
  std::string merged;
  for (int i = 0; i < 3; i++) {
    auto args = batch_args(model, d / "in.jsonl", d / ("s" + std::to_string(i)));
    args.push_back("--shard");
    args.push_back(std::to_string(i) + "/3");
    REQUIRE(run_r1(args).code == 0);
    std::string s = slurp(d / ("s" + std::to_string(i)));
    CHECK(count_lines(s) == 4);
    merged += s;
  }
  auto a = by_id(merged), b = by_id(slurp(d / "full.jsonl"));
  REQUIRE(a.size() == b.size());
  for (auto& [id, j] : b) CHECK(a[id]["answer"] == j["answer"]);
}

TEST_CASE("batch: greedy results equal r1 run; plain-text input", "[batch]") {
  TempDir d("r1greedy");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  write_file(d / "in.txt", "def add(a, b):\nimport numpy as np\n\nclass Tree:\n");
  auto r = run_r1({"batch", "-m", model, d / "in.txt", "-o", d / "out.jsonl", "--template", "raw", "-n", "12", "--temp", "0"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto got = by_id(slurp(d / "out.jsonl"));
  REQUIRE(got.size() == 3);
  const std::pair<const char*, const char*> cases[] = {{"1", "def add(a, b):"}, {"2", "import numpy as np"}, {"4", "class Tree:"}};
  for (auto [id, prompt] : cases) {
    auto one = run_r1({"run", "-m", model, "--raw", "-p", prompt, "-n", "12", "--temp", "0", "--json"});
    REQUIRE(one.code == 0);
    CHECK(got[id]["answer"] == nlohmann::json::parse(one.out)["answer"]);
  }
}

TEST_CASE("batch: malformed input and a full disk fail cleanly", "[batch]") {
  TempDir d("r1bad");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  write_file(d / "bad.jsonl", "{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 2, \"prompt\": \n");
  auto r = run_r1({"batch", "-m", model, d / "bad.jsonl", "-o", d / "out.jsonl"});
  CHECK(r.code == 2);
  CHECK(r.err.find("line 2") != std::string::npos);
  write_file(d / "dup.jsonl", "{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 1, \"prompt\": \"b\"}\n");
  CHECK(run_r1({"batch", "-m", model, d / "dup.jsonl", "-o", d / "out.jsonl"}).code == 2);
  CHECK(run_r1({"batch", "-m", model, d / "bad.jsonl", "-o", d / "out.jsonl", "--shard", "3/3"}).code == 1);

  // a file-size limit stands in for a full disk: the run fails with a clear error and the
  // output holds only whole lines, so the same command resumes once there is room
  write_file(d / "in.jsonl", input_jsonl());
  std::string cmd = "ulimit -f 1; " + shell_quote(R1_BIN);
  for (auto& a : batch_args(model, d / "in.jsonl", d / "out2.jsonl")) cmd += " " + shell_quote(a);
  cmd += " 2>" + shell_quote(d / "err") + " >/dev/null";
  int st = std::system(("bash -c " + shell_quote(cmd)).c_str());
  CHECK(WEXITSTATUS(st) == 2);
  CHECK(slurp(d / "err").find("resumable") != std::string::npos);
  std::string partial = slurp(d / "out2.jsonl");
  CHECK(partial.size() <= 1024);
  CHECK((partial.empty() || partial.back() == '\n'));
  auto resumed = run_r1(batch_args(model, d / "in.jsonl", d / "out2.jsonl"));
  CHECK(resumed.code == 0);
  CHECK(count_lines(slurp(d / "out2.jsonl")) == 12);
}
