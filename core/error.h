// Errors that reach the user. Every failure r1 reports is one line on stderr and an exit code:
// 1 for a usage error (bad flags), 2 for bad input or a bad model file.
#pragma once
#include <stdexcept>
#include <cstdint>
#include <string>

namespace r1 {

enum class ErrorKind { Usage = 1, Input = 2 };

struct Error : std::runtime_error {
  ErrorKind kind;
  Error(ErrorKind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

[[noreturn]] inline void fail_usage(const std::string& msg) { throw Error(ErrorKind::Usage, msg); }
[[noreturn]] inline void fail_input(const std::string& msg) { throw Error(ErrorKind::Input, msg); }

// Checked a + b and a * b for sizes read from files: an overflow is a corrupt file, not a wrap.
inline uint64_t checked_add(uint64_t a, uint64_t b, const char* what) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail_input(std::string("size overflow in ") + what);
  return r;
}
inline uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail_input(std::string("size overflow in ") + what);
  return r;
}

}  // namespace r1
