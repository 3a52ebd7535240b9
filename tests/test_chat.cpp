// `r1 chat`: a second turn prefills only what is new; a scripted (non-terminal) session prints
// answers only; and, driven under tmux like a person would, every slash command, Ctrl-C during a
// long answer, /save and /load in a new process (same next-token logits: R1_CHAT_DUMP_LOGITS).
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "core/generate.h"
#include "models/cpu_backend.h"
#include "models/runtime.h"
#include "fixture_models.h"
#include "test_util.h"

using r1::test::shell_quote;
using r1::test::slurp;
using r1::test::TempDir;

namespace {

// A private tmux server running one r1 chat in a 120x50 window.
class Tmux {
 public:
  explicit Tmux(const std::string& tag) : sock_("r1test-" + std::to_string(::getpid()) + "-" + tag) {}
  ~Tmux() { sh("kill-server"); }
  int sh(const std::string& args) const {
    return std::system(("tmux -L " + sock_ + " " + args + " >/dev/null 2>&1").c_str());
  }
  // Runs cmd in the window; its exit code goes to exit_file.
  void start(const std::string& cmd, const std::string& exit_file) {
    // The shell ignores SIGINT so that a Ctrl-C reaches only r1 (which installs its own handler).
    std::string inner = "trap '' INT; " + cmd + "; echo $? > " + shell_quote(exit_file) + "; sleep 60";
    REQUIRE(sh("-f /dev/null new-session -d -s t -x 120 -y 50 " + shell_quote(inner)) == 0);
    sh("set-option -t t history-limit 5000");
  }
  void type(const std::string& text) const { sh("send-keys -t t -l " + shell_quote(text)); }
  void key(const std::string& k) const { sh("send-keys -t t " + k); }
  void line(const std::string& text) const {
    type(text);
    key("Enter");
  }
  std::string screen() const {
    std::string f = "/tmp/r1tmux-" + sock_ + ".txt";
    std::system(("tmux -L " + sock_ + " capture-pane -p -J -S -5000 -t t > " + shell_quote(f) + " 2>/dev/null").c_str());
    std::string s;
    try {
      s = slurp(f);
    } catch (...) {
    }
    std::remove(f.c_str());
    return s;
  }
  // Waits until pred(screen) holds; returns the screen.
  template <class Pred>
  std::string wait(Pred pred, double seconds, const char* what) const {
    auto t0 = std::chrono::steady_clock::now();
    std::string s;
    for (;;) {
      s = screen();
      if (pred(s)) return s;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
        FAIL("timed out waiting for " << what << "; screen:\n" << s);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::string wait_for(const std::string& text, double seconds = 20) const {
    return wait([&](const std::string& s) { return s.find(text) != std::string::npos; }, seconds, text.c_str());
  }
  // Waits for a fresh prompt: the n-th prompt line, and nothing typed after it yet.
  std::string wait_prompt(int n, double seconds = 30) const {
    return wait([&](const std::string& s) { return prompts(s) >= n && last_line(s) == ">"; }, seconds, "the prompt");
  }
  static int prompts(const std::string& s) {
    int n = 0;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) n += l == ">" || l.rfind("> ", 0) == 0;
    return n;
  }
  static std::string last_line(const std::string& s) {
    std::istringstream in(s);
    std::string last;
    for (std::string l; std::getline(in, l);)
      if (l.find_first_not_of(' ') != std::string::npos) last = l;
    while (!last.empty() && last.back() == ' ') last.pop_back();
    return last;
  }

 private:
  std::string sock_;
};

int wait_exit(const std::string& exit_file, double seconds = 20) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    std::error_code ec;
    if (std::filesystem::exists(exit_file, ec)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::string s = slurp(exit_file);
      if (!s.empty()) return std::stoi(s);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1;
}

std::string chat_cmd(const TempDir& dir, const std::string& model, const std::string& extra) {
  return "env -u NO_COLOR TERM=screen XDG_STATE_HOME=" + shell_quote(dir / "state") + " R1_CHAT_DUMP_LOGITS=" + shell_quote(dir / "logits") +
         " " + shell_quote(R1_BIN) + " chat -m " + shell_quote(model) + " --threads 2 " + extra;
}

}  // namespace

TEST_CASE("a second chat turn prefills only the new tokens", "[chat]") {
  r1::Runtime rt = r1::Runtime::load(r1test::packed("tiny-qwen2", "q8"));
  r1::ThreadPool pool(2);
  r1::CpuSession s(*rt.model, 512, r1::KvFormat::F16, pool);
  r1::Generator gen(s, *rt.tok);
  r1::ChatTemplate t = rt.chat_template();
  r1::GenOptions opt;
  opt.max_new = 12;
  opt.think_budget = 4;
  opt.sampling.temperature = 0;
  opt.starts_in_think = t.prompt_opens_think();
  opt.stop_ids = rt.stop_ids;

  std::vector<r1::Message> msgs{{"user", "What is 2+2?"}};
  auto ids1 = rt.tok->encode(t.render(msgs, true));
  r1::GenResult r1 = gen.generate(ids1, opt);
  CHECK(r1.stats.prefilled_tokens == int64_t(ids1.size()));
  msgs.push_back({"assistant", r1.answer});
  msgs.push_back({"user", "And 3+3?"});
  auto ids2 = rt.tok->encode(t.render(msgs, true));
  // The cache holds turn 1's prompt and its reasoning; the template drops the reasoning, so the
  // reusable prefix is the first prompt (up to the assistant tag).
  size_t common = 0;
  while (common < ids2.size() && common < gen.cached().size() && ids2[common] == gen.cached()[common]) common++;
  CHECK(common >= ids1.size() - 2);  // "<｜Assistant｜><think>\n": the tag is shared, "<think>\n" is not
  r1::GenResult r2 = gen.generate(ids2, opt);
  CHECK(r2.stats.prompt_tokens == int64_t(ids2.size()));
  CHECK(r2.stats.prefilled_tokens == int64_t(ids2.size() - common));
}

TEST_CASE("r1 chat reads a script from stdin and prints the answers", "[chat]") {
  TempDir dir("r1chat");
  std::string model = r1test::packed("tiny-qwen2-py", "q8");
  r1::test::write_file(dir / "in",
                       "Write a function that adds two numbers.\n"
                       "\"\"\"\nNow one that\nmultiplies them.\n\"\"\"\n"
                       "/set temp lots\n"
                       "/bogus\n"
                       "/stats\n");
  std::string cmd = shell_quote(R1_BIN) + " chat -q --threads 2 --temp 0 -n 24 --think-budget 4 -m " + shell_quote(model) +
                    " <" + shell_quote(dir / "in") + " >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  int st = std::system(cmd.c_str());
  std::string out = slurp(dir / "out"), err = slurp(dir / "err");
  INFO("stdout:\n" << out << "\nstderr:\n" << err);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(out.find("<think>") == std::string::npos);  // no reasoning in a script unless --think show
  CHECK(err.find("not a number") != std::string::npos);
  CHECK(err.find("unknown command /bogus") != std::string::npos);
  // /stats after two turns: the second reused the first prompt.
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(prompt (\d+) tokens \((\d+) prefilled, (\d+) reused\))")));
  CHECK(std::stoi(m[3]) > 10);
  CHECK(std::stoi(m[2]) < std::stoi(m[1]));
  CHECK(out.find("context ") != std::string::npos);

  // --think show puts the reasoning between tags.
  r1::test::write_file(dir / "in", "hello\n");
  cmd = shell_quote(R1_BIN) + " chat -q --threads 2 --temp 0 -n 8 --think show -m " + shell_quote(model) + " <" +
        shell_quote(dir / "in") + " >" + shell_quote(dir / "out") + " 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(slurp(dir / "out").rfind("<think>\n", 0) == 0);
}

TEST_CASE("r1 chat under a terminal: commands, Ctrl-C, /save and /load", "[chat]") {
  TempDir dir("r1chat");
  const std::string model = r1test::packed("tiny-qwen2-py", "q8");
  // --on-loop off: the long answer below must run until Ctrl-C, not until the loop guard stops it
  const std::string common_flags = "--temp 0 --ctx 4096 -n 24 --think-budget 4 --on-loop off";
  {
    Tmux tm("a");
    tm.start(chat_cmd(dir, model, common_flags), dir / "exit1");
    tm.wait_for("/help lists the commands");
    tm.wait_prompt(1);
    tm.line("/help");
    tm.wait_for("/save FILE");
    tm.wait_prompt(2);
    tm.line("Hello there");
    tm.wait_for("thought for 4 tokens");
    tm.wait_prompt(3);
    tm.line("/think fold");
    tm.wait_prompt(4);
    tm.line("And once more\\");  // a trailing backslash continues the message
    tm.line("on two lines");
    std::string s = tm.wait_prompt(5);
    CHECK(s.find("/think last shows it") != std::string::npos);
    tm.line("/think last");
    tm.wait_prompt(6);
    tm.line("/think hide");
    tm.wait_prompt(7);
    // A bracketed paste of two lines is one message (one prompt, one continuation line).
    tm.sh("set-buffer -b p " + shell_quote("first pasted line\nsecond pasted line"));
    tm.sh("paste-buffer -p -d -b p -t t");
    tm.key("Enter");
    s = tm.wait_prompt(8);
    CHECK(s.find(". second pasted line") != std::string::npos);
    CHECK(s.find("> second pasted line") == std::string::npos);
    tm.line("/stats");
    s = tm.wait_for(" messages\n");
    CHECK(std::regex_search(s, std::regex(R"(\(\d+ prefilled, [1-9]\d* reused\))")));
    CHECK(s.find("| 6 messages") != std::string::npos);
    tm.wait_prompt(9);
    int n = 9;
    for (const char* c : {"/set temp 0", "/set top_p 0.9", "/set top_k 40", "/set min_p 0.01", "/set seed 7",
                          "/set think_budget 3", "/set max_tokens 20", "/system Be brief.", "/system",
                          "/think show", "/set temp -1", "/set top_k x", "/set nope 1", "/frobnicate", "/think maybe",
                          "/clear", "/set max_tokens off", "/set think_budget off"}) {
      tm.line(c);  // one at a time: keys typed during a command would be echoed out of place
      s = tm.wait_prompt(++n);
    }
    CHECK(s.find("[top_k = 40]") != std::string::npos);
    CHECK(s.find("[system prompt set]") != std::string::npos);
    CHECK(s.find("unknown command /frobnicate") != std::string::npos);
    CHECK(s.find("unknown setting 'nope'") != std::string::npos);
    CHECK(s.find("not a number") != std::string::npos);
    CHECK(s.find("[conversation cleared]") != std::string::npos);
    // A long answer (greedy, this prompt runs to the context limit), stopped with Ctrl-C: the
    // partial turn stays.
    auto count = [](const std::string& hay, const std::string& needle) {
      size_t k = 0;
      for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) k++;
      return k;
    };
    const size_t marks = count(s, "┌ thinking");
    tm.line("Tell me a very long story");
    tm.wait([&](const std::string& sc) { return count(sc, "┌ thinking") > marks; }, 30, "the reasoning to start");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    tm.key("C-c");
    s = tm.wait_for("[interrupted]");
    tm.wait_prompt(++n);
    std::filesystem::copy_file(dir / "logits", dir / "logits.before");
    tm.line("/save " + (dir / "chat.r1s"));
    tm.wait_for("cached tokens to");
    tm.wait_prompt(++n);
    tm.line("/exit");
    CHECK(wait_exit(dir / "exit1") == 0);
    CHECK(std::filesystem::exists(dir / "state/r1/chat_history"));
  }
  {
    // A new process resumes from the snapshot: the next token's logits are exactly those before.
    Tmux tm("b");
    tm.start(chat_cmd(dir, model, common_flags + " -q"), dir / "exit2");
    tm.wait_prompt(1);
    tm.line("/load " + (dir / "chat.r1s"));
    std::string s = tm.wait_for("cached tokens from");
    tm.wait_prompt(2);
    CHECK(slurp(dir / "logits") == slurp(dir / "logits.before"));
    tm.line("Thanks");
    tm.wait_prompt(3);
    tm.line("/stats");
    s = tm.wait_for(" messages\n");
    CHECK(std::regex_search(s, std::regex(R"(\(\d+ prefilled, [1-9]\d* reused\))")));
    tm.wait_prompt(4);
    tm.line("/clear");
    tm.wait_for("[conversation cleared]");
    tm.wait_prompt(5);
    tm.type("half a line");
    tm.key("C-c");  // drops the line
    tm.wait_prompt(6);
    tm.key("C-c");
    tm.wait_for("Ctrl-C again");
    tm.key("C-c");
    CHECK(wait_exit(dir / "exit2") == 0);
  }
  {
    // Another model, or a damaged file, is refused with a message; Ctrl-D leaves.
    std::string s = slurp(dir / "chat.r1s");
    r1::test::write_file(dir / "cut.r1s", s.substr(0, s.size() / 2));
    Tmux tm("c");
    tm.start(chat_cmd(dir, r1test::packed("tiny-qwen2", "q8"), "-q"), dir / "exit3");
    tm.wait_prompt(1);
    tm.line("/load " + (dir / "chat.r1s"));
    tm.wait_for("different model");
    tm.line("/load " + (dir / "cut.r1s"));
    tm.wait_for("truncated");
    tm.wait_prompt(3);
    tm.key("C-d");
    CHECK(wait_exit(dir / "exit3") == 0);
  }
}

TEST_CASE("r1 chat under a terminal: an empty Enter re-prompts; a paste keeps its blank lines", "[chat]") {
  TempDir dir("r1chat");
  const std::string model = r1test::packed("tiny-qwen2-py", "q8");
  Tmux tm("e");
  tm.start(chat_cmd(dir, model, "--temp 0 -n 6 --think-budget 2 -q"), dir / "exit");
  tm.wait_prompt(1);
  tm.key("Enter");  // an empty line: a new prompt, not the end of the chat
  tm.wait_prompt(2);
  tm.type("   ");
  tm.key("Enter");
  tm.wait_prompt(3);
  CHECK_FALSE(std::filesystem::exists(dir / "exit"));
  // A bracketed paste with a blank line inside: one message, the blank line kept.
  tm.sh("set-buffer -b p " + shell_quote("first line\n\nthird line"));
  tm.sh("paste-buffer -p -d -b p -t t");
  tm.key("Enter");
  std::string s = tm.wait_prompt(4);
  INFO(s);
  CHECK(std::regex_search(s, std::regex(R"(\n> first line\n\. ?\n\. third line\n)")));  // one prompt, two continuations
  tm.line("/stats");
  s = tm.wait_for(" messages\n");
  CHECK(s.find("| 2 messages") != std::string::npos);
  tm.wait_prompt(5);
  // The history holds the message as it was sent (libedit's vis encoding: \012 is a newline).
  CHECK(slurp(dir / "state/r1/chat_history").find("first\\040line\\012\\012third\\040line") != std::string::npos);
  tm.key("C-d");
  CHECK(wait_exit(dir / "exit") == 0);
}

TEST_CASE("r1 chat /load of a directory/device/fifo/huge file: one line each and the chat goes on", "[chat]") {
  TempDir dir("r1load");
  std::filesystem::create_directory(dir / "dir");
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0644) == 0);
  {  // 1 GB of zeros (sparse): only its header may be read
    std::ofstream(dir / "huge.r1s").close();
    std::filesystem::resize_file(dir / "huge.r1s", uint64_t(1) << 30);
  }
  r1::test::write_file(dir / "in", "/load " + (dir / "dir") + "\n/load /dev/zero\n/load " + (dir / "fifo") + "\n/load " +
                                       (dir / "huge.r1s") + "\n/stats\n");
  // `timeout`: before the fix, /load /dev/zero read without end
  const std::string cmd = "timeout 60 " + shell_quote(R1_BIN) + " chat -q --threads 1 -m " +
                          shell_quote(r1test::packed("tiny-qwen2", "q8")) + " <" + shell_quote(dir / "in") + " >" +
                          shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  const auto t0 = std::chrono::steady_clock::now();
  const int st = std::system(cmd.c_str());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string err = slurp(dir / "err");
  INFO(err);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(err == "r1 chat: " + (dir / "dir") + " is a directory, not a saved chat\n"
               "r1 chat: /dev/zero is a device, not a saved chat\n"
               "r1 chat: " + (dir / "fifo") + " is a fifo, not a saved chat\n"
               "r1 chat: " + (dir / "huge.r1s") + ": not a usable r1 chat snapshot: wrong magic (not a snapshot)\n");
  CHECK(slurp(dir / "out").find("no turn yet") != std::string::npos);  // /stats ran: the chat went on
  CHECK(secs < 20);
}

TEST_CASE("r1 chat under a terminal: SIGTERM ends it at once at the prompt or mid-answer", "[chat]") {
  TempDir dir("r1term");
  const std::string model = r1test::packed("tiny-qwen2-py", "q8");
  for (const bool mid_answer : {false, true}) {
    Tmux tm(mid_answer ? "ta" : "tp");
    std::error_code ec;
    std::filesystem::remove(dir / "pid", ec);
    std::filesystem::remove(dir / "exit", ec);
    // r1 runs as the shell it replaces (exec), so $$ is its pid; after it ends, the terminal's
    // settings are recorded: the line editor's raw mode must not outlive it.
    const std::string chat = "sh -c " + shell_quote("echo $$ > " + shell_quote(dir / "pid") + "; exec " +
                                                    chat_cmd(dir, model, "--temp 0 --ctx 4096 -q"));
    tm.start(chat + "; st=$?; stty -a > " + shell_quote(dir / "stty") + "; (exit $st)", dir / "exit");
    tm.wait_prompt(1);
    if (mid_answer) {
      tm.line("Tell me a very long story");  // greedy: runs to the context limit
      tm.wait_for("┌ thinking");
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    const pid_t pid = std::stoi(slurp(dir / "pid"));
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(::kill(pid, SIGTERM) == 0);
    const int code = wait_exit(dir / "exit", 10);
    INFO((mid_answer ? "mid-answer" : "at the prompt") << "; screen:\n" << tm.screen());
    CHECK(code == 128 + SIGTERM);
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5);
    const std::string stty = slurp(dir / "stty");
    CHECK(stty.find("-icanon") == std::string::npos);
    CHECK(stty.find("-echo ") == std::string::npos);
  }
}
