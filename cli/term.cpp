#include "cli/term.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace r1::cli {

bool is_tty(FILE* f) { return isatty(fileno(f)) == 1; }

bool use_color(FILE* f) {
  if (std::getenv("NO_COLOR") && *std::getenv("NO_COLOR")) return false;
  const char* term = std::getenv("TERM");
  if (term && std::strcmp(term, "dumb") == 0) return false;
  return is_tty(f);
}

const char* dim(bool on) { return on ? "\033[2m" : ""; }
const char* reset(bool on) { return on ? "\033[0m" : ""; }

[[noreturn]] static void write_failed(int err) {
  if (err == EPIPE) throw PipeClosed{};
  throw OutputFailed(std::string("writing the output: ") + std::strerror(err));
}

void out(FILE* f, const std::string& s, bool flush) {
  errno = 0;
  bool ok = s.empty() || std::fwrite(s.data(), 1, s.size(), f) == s.size();
  if (ok && flush) ok = std::fflush(f) == 0;
  if (ok && !std::ferror(f)) return;
  const int err = errno ? errno : EIO;
  if (f == stderr && err != EPIPE) return;
  write_failed(err);
}

void close_stdout() {
  errno = 0;
  const bool ok = std::fflush(stdout) == 0 && !std::ferror(stdout);
  const int err = errno ? errno : EIO;
  // EBADF: there was no stdout (`>&-`) and nothing was written to it.
  if (std::fclose(stdout) != 0 && ok && errno != EBADF) write_failed(errno ? errno : EIO);
  if (!ok) write_failed(err);
}

}  // namespace r1::cli
