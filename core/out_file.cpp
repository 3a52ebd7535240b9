#include "core/out_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace r1 {
namespace fs = std::filesystem;

static std::string dir_of(const std::string& p) {
  const fs::path parent = fs::path(p).parent_path();
  return parent.empty() ? "." : parent.string();
}

const char* file_kind(unsigned m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  if (S_ISFIFO(m)) return "a fifo";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

std::string output_target(const std::string& path) {
  if (path.empty()) fail_usage("the output file name is empty");
  // Follow the chain of links by hand: realpath() fails on a link to a file not yet made.
  std::string target = path;
  struct stat st;
  for (int hops = 0; ::lstat(target.c_str(), &st) == 0 && S_ISLNK(st.st_mode); hops++) {
    if (hops == 40) fail_input(path + ": too many levels of symbolic links");
    std::string link(size_t(st.st_size > 0 ? st.st_size : 4096) + 1, '\0');
    const ssize_t n = ::readlink(target.c_str(), link.data(), link.size());
    if (n < 0) fail_input(path + ": " + std::strerror(errno));
    link.resize(size_t(n));
    target = link[0] == '/' ? link : (fs::path(dir_of(target)) / link).string();
  }
  if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    fail_input(path + (target == path ? "" : " (-> " + target + ")") + " is " + file_kind(st.st_mode) +
               "; give the name of a file to write");
  const std::string dir = dir_of(target);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    fail_input(path + ": cannot write there: " + dir + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) fail_input(path + ": cannot write in " + dir + ": " + std::strerror(errno));
  return target;
}

std::string temp_path(const std::string& target) { return target + ".tmp." + std::to_string(::getpid()); }

void remove_stale_temps(const std::string& target) {
  const fs::path t(target);
  const std::string prefix = t.filename().string() + ".tmp.";
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir_of(target), ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t p = pid_t(std::stol(pid));
    // Only a process that is gone: a live one (or one we may not signal) may still be writing.
    if (p > 0 && p != ::getpid() && ::kill(p, 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
  }
}

namespace {
// An async-signal-safe list of paths. A slot is claimed (kClaimed) while its path is copied in
// and only then published (kReady): the handler must never see a half-copied path, or the stale
// path of an earlier writer.
constexpr int kMaxTmp = 16;
enum : int { kFree = 0, kClaimed = 1, kReady = 2 };
char g_tmp_paths[kMaxTmp][4096];
std::atomic<int> g_tmp_state[kMaxTmp];
static_assert(std::atomic<int>::is_always_lock_free, "used from a signal handler");
}  // namespace

int register_temp(const std::string& p) {
  if (p.size() >= sizeof g_tmp_paths[0]) return -1;
  for (int i = 0; i < kMaxTmp; i++) {
    int expected = kFree;
    if (g_tmp_state[i].compare_exchange_strong(expected, kClaimed)) {
      std::memcpy(g_tmp_paths[i], p.c_str(), p.size() + 1);
      g_tmp_state[i].store(kReady);
      return i;
    }
  }
  return -1;
}
void unregister_temp(int slot) {
  if (slot >= 0) g_tmp_state[slot].store(kFree);
}
void remove_registered_temps() {
  for (int i = 0; i < kMaxTmp; i++)
    if (g_tmp_state[i].load() == kReady) ::unlink(g_tmp_paths[i]);
}

namespace {
void on_fatal_signal(int sig) {
  remove_registered_temps();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace

void install_cleanup_handlers() {
  static bool done = false;
  if (done) return;
  done = true;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) std::signal(s, on_fatal_signal);
}

void write_file_atomic(const std::string& path, std::string_view data) {
  const std::string target = output_target(path);
  remove_stale_temps(target);
  struct Temp {  // removed (and forgotten by the signal handlers) unless renamed into place
    std::string path;
    int slot, fd = -1;
    bool kept = false;
    ~Temp() {
      if (fd >= 0) ::close(fd);
      if (!kept) ::unlink(path.c_str());
      unregister_temp(slot);
    }
  } t{temp_path(target), register_temp(temp_path(target))};
  auto fail = [&](const char* what, int err) { fail_input(path + ": " + what + ": " + std::strerror(err)); };
  t.fd = ::open(t.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (t.fd < 0) fail("cannot write", errno);
  for (size_t done = 0; done < data.size();) {
    const ssize_t w = ::write(t.fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write failed", w < 0 ? errno : ENOSPC);
    done += size_t(w);
  }
  if (::fsync(t.fd) != 0) fail("write failed", errno);
  const int fd = t.fd;
  t.fd = -1;
  if (::close(fd) != 0) fail("write failed", errno);
  if (::rename(t.path.c_str(), target.c_str()) != 0) fail("cannot replace", errno);
  t.kept = true;
}

}  // namespace r1
