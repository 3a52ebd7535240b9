// A test that cannot run on this machine says so and returns: "SKIPPED:" makes ctest list it as
// skipped (CMakeLists.txt, SKIP_REGULAR_EXPRESSION), never as a pass that checked nothing.
#pragma once
#include <catch2/catch.hpp>

#define R1_SKIP_UNLESS(cond, why)     \
  do {                                \
    if (!(cond)) {                    \
      WARN("SKIPPED: " << why);       \
      return;                         \
    }                                 \
  } while (0)
