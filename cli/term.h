// Terminal output: colors only on a terminal that wants them (NO_COLOR, TERM=dumb), and writes
// that notice a closed pipe (`r1 run | head`) so the command can stop quietly, or a failed write
// (a full disk) so that it does not end with exit 0 and a short file.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>

namespace r1::cli {

struct PipeClosed {};  // thrown by out() when the reader went away; main exits 0 quietly
// Thrown by out() when stdout cannot be written for another reason: the command ends, exit 2.
struct OutputFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool is_tty(FILE* f);
bool use_color(FILE* f);
const char* dim(bool on);    // "\033[2m" or ""
const char* reset(bool on);  // "\033[0m" or ""
// Writes and flushes; throws PipeClosed on EPIPE, OutputFailed on another error of stdout
// (one of stderr has nowhere to be reported).
void out(FILE* f, const std::string& s, bool flush = true);
// The end of every command: flushes and closes stdout, where a write error shows at the latest.
// PipeClosed or OutputFailed as out() does.
void close_stdout();

}  // namespace r1::cli
