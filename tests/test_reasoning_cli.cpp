// The reasoning kept in bounds from the shell, on the fixture models with the R1 template: a think
// budget of N gives exactly N reasoning tokens, the message and </think>, then an answer, in run,
// batch (the same in a batch of 8 as alone) and chat, with both R1 template variants; the loop
// guard on the trained model, which loops when greedy; DeepSeek's advice; the DRY flags.
#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <sstream>

#include "core/tokenizer.h"
#include "core/tokenizer_load.h"
#include "fixture_models.h"
#include "loop_reference.h"
#include "test_util.h"

using namespace r1::test;

namespace {

std::vector<int32_t> ids_of(const std::string& printed) {
  std::vector<int32_t> ids;
  std::istringstream in(printed);
  for (int32_t t; in >> t;) ids.push_back(t);
  return ids;
}

std::vector<int32_t> slice(const std::vector<int32_t>& v, size_t b, size_t e) {
  return std::vector<int32_t>(v.begin() + int64_t(std::min(b, v.size())), v.begin() + int64_t(std::min(e, v.size())));
}

// r1 run with the given flags after -m MODEL -p PROMPT (-q: no advice; one thread, as the tiny
// models gain nothing from more and a busy machine slows a thread pool down); stdout.
std::string run(const std::string& model, const std::string& prompt, std::vector<std::string> flags) {
  std::vector<std::string> args{"run", "-m", model, "-p", prompt, "-q", "--threads", "1"};
  args.insert(args.end(), flags.begin(), flags.end());
  CliResult r = run_r1(args);
  INFO(r.err);
  REQUIRE(r.code == 0);
  return r.out;
}

nlohmann::json run_json(const std::string& model, const std::string& prompt, std::vector<std::string> flags) {
  flags.push_back("--json");
  auto j = nlohmann::json::parse(run(model, prompt, flags));
  j.erase("prefill_tok_s");  // speeds differ from run to run
  j.erase("decode_tok_s");
  return j;
}

struct Model {
  std::string path;
  r1::Tokenizer tok;
  explicit Model(const std::string& name)
      : path(r1test::packed(name, "q8")), tok(r1::Tokenizer::load(r1::load_tokenizer_source(r1test::fixture_dir(name)))) {}
  // What r1 writes to close the reasoning: "\n\n" message "\n", then </think>.
  std::vector<int32_t> closing(const std::string& message = "Time is up; answering now.") const {
    auto ids = tok.encode("\n\n" + message + "\n");
    ids.push_back(tok.token_id("</think>"));
    return ids;
  }
};

}  // namespace

TEST_CASE("r1 run --think-budget N: N reasoning tokens, the message and </think>, then the answer", "[reasoning]") {
  Model m("tiny-qwen2");
  const std::string q = "What is 2+2?";
  // Greedy without a budget: the random model reasons for over a thousand tokens.
  const auto free = ids_of(run(m.path, q, {"--temp", "0", "-n", "80", "--print-ids"}));
  REQUIRE(free.size() == 80);
  REQUIRE(std::find(free.begin(), free.end(), m.tok.token_id("</think>")) == free.end());
  for (int n : {0, 1, 7, 30}) {
    INFO("budget " << n);
    const std::vector<std::string> f = {"--temp", "0", "-n", "80", "--think-budget", std::to_string(n)};
    auto flags = f;
    flags.push_back("--print-ids");
    const auto ids = ids_of(run(m.path, q, flags));
    const auto close = m.closing();
    REQUIRE(ids.size() == 80);
    CHECK(slice(ids, 0, size_t(n)) == slice(free, 0, size_t(n)));  // the model's own, unchanged
    CHECK(slice(ids, size_t(n), size_t(n) + close.size()) == close);
    auto j = run_json(m.path, q, f);
    CHECK(j["reasoning_tokens"] == n);
    CHECK(j["reasoning_finish"] == "think_budget");
    CHECK(j["answer_tokens"] == 80 - n - int(close.size()));
    CHECK(j["completion_tokens"] == 80);
    CHECK(j["finish_reason"] == "length");
    CHECK(j["answer"] != "");
    const std::string r = j["reasoning"];
    CHECK(r.substr(r.size() - 29) == "\n\nTime is up; answering now.\n");
  }
  // another message
  const auto ids = ids_of(run(m.path, q, {"--temp", "0", "-n", "40", "--think-budget", "5", "--think-budget-message",
                                          "Enough; the answer.", "--print-ids"}));
  CHECK(slice(ids, 5, 5 + m.closing("Enough; the answer.").size()) == m.closing("Enough; the answer."));
  // --max-answer-tokens: the answer's own cap inside -n
  auto j = run_json(m.path, q, {"--temp", "0", "-n", "80", "--think-budget", "4", "--max-answer-tokens", "6"});
  CHECK(j["answer_tokens"] == 6);
  CHECK(j["completion_tokens"] == 4 + int(m.closing().size()) + 6);
  CHECK(j["finish_reason"] == "length");
}

TEST_CASE("both R1 template variants (with and without the trailing <think>) behave the same", "[reasoning]") {
  // The first R1 template's generation prompt stops at the Assistant tag; r1 opens the reasoning
  // there as the newer template does.
  TempDir d("r1tpl");
  copy_dir(r1test::fixture_dir("tiny-qwen2"), d / "older");
  auto cfg = read_json(d / "older/tokenizer_config.json");
  std::string tpl = cfg["chat_template"];
  const std::string newer = "<｜Assistant｜><think>\\n";
  REQUIRE(tpl.find(newer) != std::string::npos);
  tpl.replace(tpl.find(newer), newer.size(), "<｜Assistant｜>");
  REQUIRE(tpl.find(newer) == std::string::npos);
  cfg["chat_template"] = tpl;
  write_json(d / "older/tokenizer_config.json", cfg);
  r1::PackOptions o;
  o.src = d / "older";
  o.out = d / "older.r1m";
  REQUIRE(r1::parse_format("q8", &o.quant));
  r1::pack_checkpoint(o);
  const std::string now = r1test::packed("tiny-qwen2", "q8");

  // the files differ in what their templates render ...
  auto render = [&](const std::string& model) {
    std::string cmd = "echo '[{\"role\":\"user\",\"content\":\"hi\"}]' | " + shell_quote(R1_BIN) + " template -m " +
                      shell_quote(model) + " >" + shell_quote(d / "t") + " 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return slurp(d / "t");
  };
  CHECK(render(now).size() == render(d / "older.r1m").size() + std::string("<think>\n").size());
  // ... and generate the same: greedy; sampled with a budget; a budget of 0
  for (auto flags : std::vector<std::vector<std::string>>{{"--temp", "0", "--seed", "1", "-n", "30"},
                                                          {"--temp", "0.7", "--seed", "3", "-n", "40", "--think-budget", "9"},
                                                          {"--temp", "0", "--seed", "1", "-n", "20", "--think-budget", "0"}}) {
    auto a = run_json(now, "What is 2+2?", flags), b = run_json(d / "older.r1m", "What is 2+2?", flags);
    CHECK(a == b);
    CHECK(a["reasoning_finish"] != nullptr);  // both reasoned
  }
}

TEST_CASE("r1 batch: budgets and the loop guard, the same in a batch of 8 as alone and as r1 run", "[reasoning]") {
  // The trained model with the R1 template: greedy, "What is 2+2?" loops inside the reasoning.
  Model m("tiny-qwen2-py");
  TempDir d("r1bbud");
  struct Rec {
    std::string id, prompt;
    int budget;  // -1: the run's --think-budget 12
    double temp;
  };
  const std::vector<Rec> recs = {{"a", "What is 2+2?", -1, 0},          {"b", "What is 2+2?", 0, 0},
                                 {"c", "def fibonacci(n):", 5, 0.7},     {"d", "import os", 40, 0.9},
                                 {"e", "class Stack:", 3, 0},            {"f", "Explain recursion.", 25, 0.6},
                                 {"g", "What is 2+2?", 1000000, 0},      {"h", "for i in range(10):", -1, 0.8}};
  std::string all;
  for (size_t i = 0; i < recs.size(); i++) {
    nlohmann::json j = {{"id", recs[i].id}, {"prompt", recs[i].prompt}, {"temperature", recs[i].temp}, {"seed", 10 + i}};
    if (recs[i].budget >= 0) j["think_budget"] = recs[i].budget;
    write_file(d / (recs[i].id + ".jsonl"), j.dump() + "\n");
    all += j.dump() + "\n";
  }
  write_file(d / "all.jsonl", all);
  auto batch = [&](const std::string& in, const std::string& out, const char* mc) {
    CliResult r = run_r1({"batch", "-m", m.path, in, "-o", out, "-n", "300", "--think-budget", "12", "--max-concurrent", mc,
                          "--threads", "1"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    std::map<std::string, nlohmann::json> by;
    std::istringstream ss(slurp(out));
    for (std::string l; std::getline(ss, l);) {
      auto j = nlohmann::json::parse(l);
      by[j["id"]] = j;
    }
    return by;
  };
  auto together = batch(d / "all.jsonl", d / "all.out", "8");
  REQUIRE(together.size() == recs.size());
  for (size_t i = 0; i < recs.size(); i++) {
    const Rec& r = recs[i];
    INFO("record " << r.id);
    auto alone = batch(d / (r.id + ".jsonl"), d / (r.id + ".out"), "1");
    CHECK(alone[r.id] == together[r.id]);
    const auto& j = together[r.id];
    const int budget = r.budget < 0 ? 12 : r.budget;
    if (budget < 1000) {
      CHECK(j["reasoning_tokens"] == budget);
      CHECK(j["reasoning_finish"] == "think_budget");
    }
    CHECK(j["seed"] == 10 + i);
    auto one = run_json(m.path, r.prompt, {"-n", "300", "--think-budget", std::to_string(budget), "--temp",
                                           std::to_string(r.temp), "--seed", std::to_string(10 + i)});
    for (const char* k : {"reasoning", "answer", "finish_reason", "reasoning_finish", "reasoning_tokens",
                          "answer_tokens", "completion_tokens", "prompt_tokens", "seed"})
      CHECK(one[k] == j[k]);
  }
  // the unbudgeted greedy record loops: the guard closed its reasoning
  CHECK(together["g"]["reasoning_finish"] == "loop");
  CHECK(together["g"]["answer_tokens"].get<int>() > 0);
}

TEST_CASE("r1 chat --think-budget: N reasoning tokens, the message, then the answer; /stats accounts; /set on_loop", "[reasoning]") {
  Model m("tiny-qwen2");
  TempDir d("r1cbud");
  write_file(d / "in", "What is 2+2?\n/stats\n");
  std::string cmd = shell_quote(R1_BIN) + " chat -q --threads 1 --temp 0 -n 60 --think-budget 6 --think show -m " + shell_quote(m.path) +
                    " <" + shell_quote(d / "in") + " >" + shell_quote(d / "out") + " 2>" + shell_quote(d / "err");
  REQUIRE(std::system(cmd.c_str()) == 0);
  const std::string out = slurp(d / "out");
  INFO(out << slurp(d / "err"));
  auto j = run_json(m.path, "What is 2+2?", {"--temp", "0", "-n", "60", "--think-budget", "6"});
  CHECK(j["reasoning_tokens"] == 6);
  const std::string want = "<think>\n" + j["reasoning"].get<std::string>() + "\n</think>\n" + j["answer"].get<std::string>();
  CHECK(out.substr(0, want.size()) == want);
  CHECK(out.find("(6 reasoning, " + std::to_string(j["answer_tokens"].get<int>()) + " answer)") != std::string::npos);
  CHECK(std::regex_search(out, std::regex(R"(seed \d+ \| finish length \| reasoning finish think_budget)")));

  // /set on_loop: stop ends the looping reasoning where r1 run --on-loop stop does
  Model py("tiny-qwen2-py");
  write_file(d / "in", "/set on_loop maybe\n/set on_loop stop\nWhat is 2+2?\n/stats\n");
  cmd = shell_quote(R1_BIN) + " chat -q --threads 1 --temp 0 -n 400 -m " + shell_quote(py.path) + " <" +
        shell_quote(d / "in") + " >" + shell_quote(d / "out") + " 2>" + shell_quote(d / "err");
  REQUIRE(std::system(cmd.c_str()) == 0);
  const std::string out2 = slurp(d / "out"), err2 = slurp(d / "err");
  INFO(out2 << err2);
  auto js = run_json(py.path, "What is 2+2?", {"--temp", "0", "-n", "400", "--on-loop", "stop"});
  REQUIRE(js["finish_reason"] == "loop");
  CHECK(err2.find("/set on_loop: expected answer, stop, off or auto") != std::string::npos);
  CHECK(err2.find("[stopped: the reasoning repeats itself in a loop") != std::string::npos);
  CHECK(out2.find("(" + std::to_string(js["reasoning_tokens"].get<int>()) + " reasoning, 0 answer)") != std::string::npos);
  CHECK(out2.find("finish loop | reasoning finish loop") != std::string::npos);
}

TEST_CASE("the loop guard on a model that loops: --on-loop answer (default), stop, off", "[reasoning]") {
  Model m("tiny-qwen2-py");
  const std::string q = "What is 2+2?";
  // Without the guard: greedy reasoning falls into a loop; where, by the definition.
  const auto free = ids_of(run(m.path, q, {"--temp", "0", "-n", "400", "--on-loop", "off", "--print-ids"}));
  REQUIRE(free.size() == 400);
  const int64_t e = first_loop(free);
  REQUIRE(e > 0);
  REQUIRE(e < 400 - 20);
  // default: the reasoning is closed right there, and the model answers
  const auto ids = ids_of(run(m.path, q, {"--temp", "0", "-n", "400", "--print-ids"}));
  const auto close = m.closing();
  CHECK(slice(ids, 0, size_t(e)) == slice(free, 0, size_t(e)));
  CHECK(slice(ids, size_t(e), size_t(e) + close.size()) == close);
  auto j = run_json(m.path, q, {"--temp", "0", "-n", "400"});
  CHECK(j["reasoning_tokens"] == e);
  CHECK(j["reasoning_finish"] == "loop");
  CHECK(j["answer_tokens"].get<int>() > 0);
  // stop: generation ends with finish_reason loop
  CliResult s = run_r1({"run", "-m", m.path, "-p", q, "-q", "--threads", "1", "--temp", "0", "-n", "400", "--on-loop", "stop", "--json"});
  REQUIRE(s.code == 0);
  auto js = nlohmann::json::parse(s.out);
  CHECK(js["finish_reason"] == "loop");
  CHECK(js["reasoning_finish"] == "loop");
  CHECK(js["completion_tokens"] == e);
  CHECK(s.err.find("repeats itself in a loop") != std::string::npos);
  // a loop in the answer (no reasoning: raw Python completion) stops by default
  const auto raw = ids_of(run(m.path, "def fibonacci(n):", {"--raw", "--temp", "0", "-n", "400", "--on-loop", "off", "--print-ids"}));
  const int64_t ea = first_loop(raw);
  REQUIRE(ea > 0);
  auto ja = run_json(m.path, "def fibonacci(n):", {"--raw", "--temp", "0", "-n", "400"});
  CHECK(ja["finish_reason"] == "loop");
  CHECK(ja["answer_tokens"] == ea);
  CHECK(ja["reasoning_finish"].is_null());
}

TEST_CASE("DeepSeek's temperature advice: once, on stderr, for R1 below 0.5, silenced by -q", "[reasoning]") {
  const std::string m = r1test::packed("tiny-qwen2", "q8");
  auto advice = [&](std::vector<std::string> flags) {
    std::vector<std::string> args{"run", "-m", m, "-p", "hi", "-n", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    CliResult r = run_r1(args);
    REQUIRE(r.code == 0);
    size_t n = 0;
    for (size_t p = r.err.find("DeepSeek recommends"); p != std::string::npos; p = r.err.find("DeepSeek recommends", p + 1)) n++;
    // one line (and r1 run's note that -n 2 stopped it inside the reasoning)
    if (n) CHECK(count_lines(r.err) == 1 + (r.err.find("r1 run: the -n cap") != std::string::npos));
    return n;
  };
  CHECK(advice({"--temp", "0"}) == 1);
  CHECK(advice({"--temp", "0.3"}) == 1);
  CHECK(advice({"--temp", "0", "-q"}) == 0);
  CHECK(advice({"--temp", "0.6"}) == 0);
  CHECK(advice({}) == 0);                      // the file's default, 0.6
  CHECK(advice({"--temp", "0", "--raw"}) == 0);  // not prompted as R1
  // chat: at the start and on /set, once per process
  TempDir d("r1adv");
  write_file(d / "in", "/set temp 0.1\n/set temp 0\n");
  for (auto [flags, want] : {std::pair{"--temp 0", 1}, std::pair{"", 1}, std::pair{"--temp 0 -q", 0}}) {
    std::string cmd = shell_quote(R1_BIN) + " chat -m " + shell_quote(m) + " " + flags + " <" + shell_quote(d / "in") +
                      " >/dev/null 2>" + shell_quote(d / "err");
    REQUIRE(std::system(cmd.c_str()) == 0);
    const std::string err = slurp(d / "err");
    INFO(flags << ": " << err);
    size_t n = 0;
    for (size_t p = err.find("DeepSeek recommends"); p != std::string::npos; p = err.find("DeepSeek recommends", p + 1)) n++;
    CHECK(n == size_t(want));
  }
}

TEST_CASE("DRY and reasoning flags: they act, batch equals run, bad values are usage errors", "[reasoning]") {
  Model m("tiny-qwen2-py");
  const std::vector<std::string> dry = {"--raw", "--temp", "0", "-n", "250", "--on-loop", "off", "--print-ids"};
  auto plain = ids_of(run(m.path, "def fibonacci(n):", dry));
  auto with = dry;
  with.insert(with.end(), {"--dry-multiplier", "0.8"});
  auto d1 = ids_of(run(m.path, "def fibonacci(n):", with));
  CHECK(d1 != plain);
  CHECK(first_loop(plain) > 0);
  CHECK(first_loop(d1) == -1);  // DRY kept this one out of the loop
  // the breakers given replace the defaults; "none" removes them; escapes give a newline
  with.insert(with.end(), {"--dry-sequence-breaker", "none"});
  CHECK(ids_of(run(m.path, "def fibonacci(n):", with)) != d1);
  auto nl = dry;
  nl.insert(nl.end(), {"--dry-multiplier", "0.8", "--dry-sequence-breaker", "\\n", "--dry-sequence-breaker", ":",
                       "--dry-sequence-breaker", "\"", "--dry-sequence-breaker", "*"});
  CHECK(ids_of(run(m.path, "def fibonacci(n):", nl)) == d1);  // the defaults, spelled out

  // batch (breakers made once for all records) = run (made by the sequence)
  TempDir d("r1dry");
  write_file(d / "in.txt", "def fibonacci(n):\n");
  CliResult b = run_r1({"batch", "-m", m.path, d / "in.txt", "-o", d / "out.jsonl", "--template", "raw", "--temp", "0",
                        "-n", "250", "--on-loop", "off", "--dry-multiplier", "0.8", "--threads", "1"});
  REQUIRE(b.code == 0);
  auto jb = nlohmann::json::parse(slurp(d / "out.jsonl"));
  auto jr = run_json(m.path, "def fibonacci(n):", {"--raw", "--temp", "0", "-n", "250", "--on-loop", "off", "--dry-multiplier", "0.8"});
  CHECK(jb["answer"] == jr["answer"]);

  for (auto flags : std::vector<std::vector<std::string>>{{"--dry-base", "0.5"},
                                                          {"--dry-multiplier", "-1"},
                                                          {"--dry-allowed-length", "-1"},
                                                          {"--dry-penalty-last-n", "-2"},
                                                          {"--dry-sequence-breaker", ""},
                                                          {"--on-loop", "maybe"},
                                                          {"--think-budget", "-1"},
                                                          {"--max-answer-tokens", "0"}}) {
    std::vector<std::string> args{"run", "-m", m.path, "-p", "hi", "-n", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    CliResult r = run_r1(args);
    INFO(flags[0] << " " << flags[1] << ": " << r.err);
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) <= 2);
  }
  write_file(d / "bad.jsonl", "{\"id\": 1, \"prompt\": \"a\", \"think_budget\": -3}\n");
  CliResult bad = run_r1({"batch", "-m", m.path, d / "bad.jsonl", "-o", d / "bad.out"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("line 1: \"think_budget\" must be a non-negative integer") != std::string::npos);
}
