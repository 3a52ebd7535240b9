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

void out(FILE* f, const std::string& s, bool flush) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), f) != s.size() && errno == EPIPE) throw PipeClosed{};
  if (flush && std::fflush(f) != 0 && errno == EPIPE) throw PipeClosed{};
  if (std::ferror(f) && errno == EPIPE) throw PipeClosed{};
}

}  // namespace r1::cli
