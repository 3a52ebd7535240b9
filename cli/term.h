// Terminal output: colors only on a terminal that wants them (NO_COLOR, TERM=dumb), and writes
// that notice a closed pipe (`r1 run | head`) so the command can stop quietly.
#pragma once
#include <cstdio>
#include <string>

namespace r1::cli {

struct PipeClosed {};  // thrown by out() when the reader went away; main exits 0 quietly

bool is_tty(FILE* f);
bool use_color(FILE* f);
const char* dim(bool on);    // "\033[2m" or ""
const char* reset(bool on);  // "\033[0m" or ""
// Writes and flushes; throws PipeClosed on EPIPE.
void out(FILE* f, const std::string& s, bool flush = true);

}  // namespace r1::cli
