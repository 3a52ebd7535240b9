// The command line as people expect it from ollama and llama.cpp: a mistyped command or flag
// gets the nearest one and the right --help; every command that takes a model takes -m; r1 run
// takes its prompt as arguments.
#include <catch2/catch.hpp>
#include <ctime>

#include "fixture_models.h"
#include "test_util.h"

using namespace r1::test;

TEST_CASE("a mistyped command or option is named with the nearest one and the right --help", "[cli]") {
  CliResult c = run_r1({"chta"});
  CHECK(c.code == 1);
  CHECK(c.err == "r1: unknown command 'chta'; did you mean chat? (r1 --help lists the commands)\n");
  CliResult far = run_r1({"frobnicate"});
  CHECK(far.code == 1);
  CHECK(far.err == "r1: unknown command 'frobnicate' (r1 --help lists the commands)\n");
  CliResult none = run_r1({});
  CHECK(none.code == 1);
  CHECK(none.err.rfind("r1: no command given", 0) == 0);

  const std::string m = r1test::packed("tiny-qwen2", "q8");
  CliResult o = run_r1({"run", "-m", m, "-p", "hi", "--tmep", "0"});
  CHECK(o.code == 1);
  CHECK(o.err == "r1 run: usage error: unknown option --tmep; did you mean --temp? (see r1 run --help)\n");
  CliResult b = run_r1({"batch", "-m", m, "in.jsonl", "-o", "out.jsonl", "--max-concurent", "2"});
  CHECK(b.code == 1);
  CHECK(b.err == "r1 batch: usage error: unknown option --max-concurent; did you mean --max-concurrent? (see r1 batch --help)\n");
  CliResult v = run_r1({"run", "-m", m, "-p", "hi", "-n", "x"});  // any usage error points to the command's help
  CHECK(v.code == 1);
  CHECK(v.err.find("(see r1 run --help)\n") != std::string::npos);
}

TEST_CASE("info and verify take -m like every command with a model; run takes the prompt as arguments", "[cli]") {
  const std::string m = r1test::packed("tiny-qwen2-py", "q8");
  for (const char* cmd : {"info", "verify"}) {
    CliResult pos = run_r1({cmd, m}), opt = run_r1({cmd, "-m", m}), lng = run_r1({cmd, "--model", m});
    INFO(cmd << ": " << opt.err);
    CHECK(pos.code == 0);
    CHECK(opt.code == 0);
    CHECK(lng.code == 0);
    CHECK(opt.out == pos.out);
    CHECK(lng.out == pos.out);
    CliResult missing = run_r1({cmd});
    CHECK(missing.code == 1);
    CHECK(missing.err.find(std::string("(see r1 ") + cmd + " --help)") != std::string::npos);
  }
  const std::vector<std::string> base{"run", "-m", m, "--raw", "--temp", "0", "-n", "8"};
  std::vector<std::string> with_p = base, words = base, quoted = base;
  with_p.insert(with_p.end(), {"-p", "def fib(n):"});
  words.insert(words.end(), {"def", "fib(n):"});
  quoted.push_back("def fib(n):");
  CliResult a = run_r1(with_p), b = run_r1(words), c = run_r1(quoted);
  INFO(b.err);
  REQUIRE(a.code == 0);
  CHECK(b.code == 0);
  CHECK(c.code == 0);
  CHECK(b.out == a.out);
  CHECK(c.out == a.out);
  std::vector<std::string> both = with_p;
  both.push_back("more");
  CHECK(run_r1(both).code == 1);  // -p and words: which one was meant?
}

TEST_CASE("run and chat share one --think vocabulary: show, hide, fold, stderr", "[cli]") {
  TempDir d("r1think");
  const std::string m = r1test::packed("tiny-qwen2", "q8");
  for (const char* mode : {"show", "hide", "fold", "stderr"}) {
    CliResult run = run_r1_input({"run", "-m", m, "-n", "4", "--think", mode}, "hi\n");
    CliResult chat = run_r1_input({"chat", "-q", "-m", m, "-n", "4", "--think", mode}, "hi\n/think " + std::string(mode) + "\n");
    INFO(mode << ": " << run.err << chat.err);
    CHECK(run.code == 0);
    CHECK(chat.code == 0);
    CHECK(chat.err.find("/think") == std::string::npos);  // /think MODE accepted too
  }
  CliResult bad_run = run_r1({"run", "-m", m, "-p", "hi", "--think", "loud"});
  CliResult bad_chat = run_r1({"chat", "-m", m, "--think", "loud"});
  CHECK(bad_run.code == 1);
  CHECK(bad_chat.code == 1);
  auto choices = [](const std::string& e) { return e.substr(e.find("--think"), e.find(" (see") - e.find("--think")); };
  INFO(bad_run.err << bad_chat.err);
  CHECK(choices(bad_run.err) == choices(bad_chat.err));
  CHECK(choices(bad_run.err).find("show,hide,fold,stderr") != std::string::npos);

  // chat --think stderr: the same (greedy) reasoning as r1 run's on stderr, and none on stdout
  CliResult run = run_r1_input({"run", "-m", m, "-n", "6", "--temp", "0", "--json"}, "What is 2+2?\n");
  REQUIRE(run.code == 0);
  const std::string reasoning = nlohmann::json::parse(run.out)["reasoning"].get<std::string>();
  REQUIRE_FALSE(reasoning.empty());
  CliResult chat = run_r1_input({"chat", "-q", "-m", m, "-n", "6", "--temp", "0", "--think", "stderr"}, "What is 2+2?\n");
  CHECK(chat.code == 0);
  CHECK(chat.err == reasoning + "\n");
  CHECK(chat.out.find(reasoning) == std::string::npos);

  // run --think fold on a terminal: a live count that ends its line when the cap stops it
  const std::string r1 = shell_quote(R1_BIN) + " run --threads 1 -m " + shell_quote(m) + " -p 'What is 2+2?' -n 9 --seed 1 --think fold";
  std::system(("env -u NO_COLOR TERM=xterm script -qec " + shell_quote(r1) + " /dev/null > " + shell_quote(d / "tty")).c_str());
  const std::string tty = slurp(d / "tty");
  INFO(tty);
  CHECK(tty.find("\r\033[2mthinking… 1 tokens\033[0m\r\033[2mthinking… ") == 0);  // counted as the tokens come, on one line
  CHECK(tty.find("tokens\033[0m\r\nr1 run: the -n cap") != std::string::npos);
}

TEST_CASE("r1 info names the chat template, dates the pack and counts parameters in M", "[cli]") {
  TempDir d("r1info");
  const std::string m = r1test::packed("tiny-qwen2", "q8");
  CliResult j = run_r1({"info", "--json", m});
  REQUIRE(j.code == 0);
  const auto info = nlohmann::json::parse(j.out);
  CliResult r = run_r1({"info", m});
  REQUIRE(r.code == 0);
  char params[64];
  std::snprintf(params, sizeof params, "  parameters     %.1f M\n", double(info["parameters"].get<uint64_t>()) / 1e6);
  CHECK(r.out.find(params) != std::string::npos);
  CHECK(r.out.find("  chat template  r1 (DeepSeek-R1)\n") != std::string::npos);
  CHECK(info["chat_template_kind"] == "r1");
  // the date it was packed, in UTC, from the Unix time stored
  const std::time_t t = std::time_t(info["provenance"]["created_unix"].get<int64_t>());
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  CHECK(r.out.find(std::string("  packed         ") + date + " by r1 ") != std::string::npos);
  CHECK(r.out.find("created_unix") == std::string::npos);
  CHECK(r.out.find("  recipe         q8") != std::string::npos);

  // a checkpoint without a chat template: said so, with what to do
  copy_dir(fixture_model("tiny-qwen2"), d / "ckpt");
  auto tc = read_json(d / "ckpt/tokenizer_config.json");
  tc.erase("chat_template");
  write_json(d / "ckpt/tokenizer_config.json", tc);
  REQUIRE(run_r1({"pack", d / "ckpt", "-o", d / "m.r1m", "--quant", "q8", "-q"}).code == 0);
  CliResult none = run_r1({"info", d / "m.r1m"});
  CHECK(none.out.find("  chat template  none (use --template)\n") != std::string::npos);
}

TEST_CASE("make run MODEL=... PROMPT=... uses the chat template and keeps quotes and $ as typed", "[cli]") {
  const std::string src = std::string(R1_FIXTURES) + "/../..", build = fs::path(R1_BIN).parent_path().string();
  const std::string m = r1test::packed("tiny-qwen2", "q8"), prompt = "it's \"quoted\", $HOME and `x`";
  const std::string flags = "--temp 0 -n 6 --json";
  TempDir d("r1make");
  // -o all -o configure: the binary is already built (this is its test)
  const std::string cmd = "make -s -C " + shell_quote(src) + " -o all -o configure run BUILD=" + shell_quote(build) +
                          " MODEL=" + shell_quote(m) + " PROMPT=" + shell_quote(prompt) + " ARGS=" + shell_quote(flags) +
                          " >" + shell_quote(d / "out") + " 2>" + shell_quote(d / "err");
  REQUIRE(std::system(cmd.c_str()) == 0);
  const auto via_make = nlohmann::json::parse(slurp(d / "out"));
  CliResult direct = run_r1({"run", "-m", m, "-p", prompt, "--temp", "0", "-n", "6", "--json"});
  CliResult raw = run_r1({"run", "-m", m, "-p", prompt, "--temp", "0", "-n", "6", "--json", "--raw"});
  REQUIRE(direct.code == 0);
  const auto want = nlohmann::json::parse(direct.out);
  CHECK(via_make["prompt_tokens"] == want["prompt_tokens"]);
  CHECK(via_make["reasoning"] == want["reasoning"]);
  CHECK(via_make["prompt_tokens"] != nlohmann::json::parse(raw.out)["prompt_tokens"]);
}

// R1_PREFETCH moves the weight rows' prefetch between L1 and L2 (kernels/cpu/avx2.h): it changes
// where bytes wait, never what is computed; an unknown value is named on stderr and ignored.
TEST_CASE("R1_PREFETCH=l1 and l2 give the default's tokens; another value is named and ignored", "[cli]") {
  const std::string model = r1test::packed("tiny-qwen2-py", "q4");
  auto run = [&](const char* pf) {
    if (pf) ::setenv("R1_PREFETCH", pf, 1);
    auto r = run_r1({"run", "-m", model, "--raw", "-p", "def parse(line):\n", "-n", "16", "--temp", "0", "--json", "--device", "cpu"});
    ::unsetenv("R1_PREFETCH");
    INFO(r.err);
    REQUIRE(r.code == 0);
    return r;
  };
  const auto base = nlohmann::json::parse(run(nullptr).out);
  const auto text = base["answer"];
  REQUIRE(base["answer_tokens"] == 16);
  for (const char* pf : {"l1", "l2"}) {
    const auto r = run(pf);
    CHECK(nlohmann::json::parse(r.out)["answer"] == text);
    CHECK(r.err.find("R1_PREFETCH") == std::string::npos);
  }
  const auto odd = run("L3");
  CHECK(nlohmann::json::parse(odd.out)["answer"] == text);
  CHECK(odd.err.find("R1_PREFETCH=L3 ignored: it takes l1, l2 or auto") != std::string::npos);
}
