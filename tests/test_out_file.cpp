// Output files: a destination that is not a regular file (a device, a directory, a fifo) is
// refused before any work and left alone; a symlink is written through (its target replaced,
// the link kept); temporaries of killed packs are cleaned up by the next pack.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "fixture_models.h"
#include "test_util.h"

using namespace r1::test;

namespace {

bool is_char_device(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

// /dev/full, through a link in `dir`: code that replaced the node instead of refusing it would
// replace the link, not the machine's /dev/full (which it did, as root, before the fix).
std::string dev_full(const TempDir& dir) {
  REQUIRE(is_char_device("/dev/full"));
  fs::create_symlink("/dev/full", dir / "full");
  return dir / "full";
}

// A pid that no process has: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st;
  ::waitpid(p, &st, 0);
  return p;
}

}  // namespace

TEST_CASE("r1 pack -o refuses a device, a directory or a fifo before any work", "[outfile]") {
  TempDir d("r1out");
  const std::string full = dev_full(d);
  fs::create_directory(d / "dir");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
  for (const std::string& out : {full, d / "dir", d / "fifo"}) {
    // The source does not exist: only an output checked first is what the error names.
    CliResult r = run_r1({"pack", d / "no-such-checkpoint", "-o", out, "-q"});
    INFO(out << ": " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(out == full ? full + " (-> /dev/full) is a device" : out + " is a ") != std::string::npos);
    CHECK(count_lines(r.err) == 1);
  }
  CHECK(fs::is_symlink(full));
  CHECK(fs::is_directory(d / "dir"));
  CHECK(fs::is_fifo(d / "fifo"));
  CliResult dash = run_r1({"pack", fixture_model("tiny-qwen2"), "-o", "-", "-q"});
  CHECK(dash.code == 1);
  CHECK_FALSE(fs::exists("-"));
}

TEST_CASE("r1 pack -o through a symlink replaces its target and keeps the link", "[outfile]") {
  TempDir d("r1out");
  fs::create_directory(d / "store");
  write_file(d / "store/m.r1m", "old contents");
  fs::create_symlink("store/m.r1m", d / "link.r1m");        // relative, to an existing file
  fs::create_symlink(d / "store/new.r1m", d / "dangling.r1m");  // absolute, to a file not yet made
  for (const char* link : {"link.r1m", "dangling.r1m"}) {
    CliResult r = run_r1({"pack", fixture_model("tiny-qwen2"), "-o", d / link, "--quant", "q8", "-q"});
    INFO(link << ": " << r.err);
    REQUIRE(r.code == 0);
    CHECK(fs::is_symlink(d / link));
    CHECK(run_r1({"verify", d / link}).code == 0);
  }
  CHECK(slurp(d / "store/m.r1m").size() > 1000);
  CHECK(fs::is_regular_file(d / "store/new.r1m"));
  CHECK(files_containing(d / "store", ".tmp.").empty());
}

TEST_CASE("chat /save refuses a device or a directory with one line and goes on", "[outfile]") {
  TempDir d("r1out");
  const std::string full = dev_full(d);
  fs::create_directory(d / "dir");
  const std::string script = "hello\n/save " + full + "\n/save " + (d / "dir") + "\n/save " + (d / "ok.r1s") + "\n";
  CliResult r = run_r1_input({"chat", "-q", "-m", r1test::packed("tiny-qwen2", "q8"), "-n", "4", "--threads", "1"}, script);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(r.err.find("r1 chat: " + full + " (-> /dev/full) is a device; give the name of a file to write\n") != std::string::npos);
  CHECK(r.err.find("r1 chat: " + (d / "dir") + " is a directory; give the name of a file to write\n") != std::string::npos);
  CHECK(r.err.find("(Success)") == std::string::npos);
  CHECK(fs::is_symlink(full));
  CHECK(fs::is_directory(d / "dir"));
  CHECK(fs::is_regular_file(d / "ok.r1s"));  // the chat went on after the refusals
}

TEST_CASE("a SIGKILLed pack's temporary is removed by the next pack; a live one's is kept", "[outfile]") {
  TempDir d("r1stale");
  const std::string dst = d / "m.r1m";
  // A real kill: tiny-qwen2-py at q4 on one thread packs long enough to be caught mid-write.
  pid_t pid = spawn_r1({"pack", fixture_model("tiny-qwen2-py"), "-o", dst, "--quant", "q4", "--threads", "1", "-q"},
                       d / "out", d / "err");
  const auto t0 = std::chrono::steady_clock::now();
  while (files_containing(d.path(), "m.r1m.tmp.").empty() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ::kill(pid, SIGKILL);
  int st;
  ::waitpid(pid, &st, 0);
  REQUIRE(files_containing(d.path(), "m.r1m.tmp.").size() == 1);
  const std::string killed = files_containing(d.path(), "m.r1m.tmp.")[0];
  // Another of a process long gone, and one of a live process (this one) that may still be writing.
  const std::string gone = "m.r1m.tmp." + std::to_string(dead_pid()), live = "m.r1m.tmp." + std::to_string(::getpid());
  write_file(d / gone, "x");
  write_file(d / live, "x");
  CliResult r = run_r1({"pack", fixture_model("tiny-qwen2"), "-o", dst, "--quant", "q8", "-q"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_FALSE(fs::exists(d / killed));
  CHECK_FALSE(fs::exists(d / gone));
  CHECK(fs::exists(d / live));
}
