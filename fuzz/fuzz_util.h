// Shared by the libFuzzer targets: run a parser, accept r1::Error (a clean rejection) and
// nothing else. A crash, sanitizer report or other exception is a finding.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace r1fuzz {

template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const r1::Error&) {
  }
}

// The parsers of file formats take a path: give them an in-memory file.
inline std::string memfile(const uint8_t* data, size_t size) {
  static int fd = -1;
  if (fd < 0) fd = memfd_create("r1fuzz", 0);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) __builtin_trap();
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace r1fuzz
