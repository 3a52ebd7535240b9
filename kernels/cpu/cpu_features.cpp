// CPU feature detection. Not an *avx2* file: compiled for baseline x86-64, so a CPU without
// AVX2 runs it safely (the kernels' files are built with -mavx2).
#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace r1 {

// cpuid directly: clang's __builtin_cpu_supports does not know "f16c". The OS must also save
// the vector registers (XCR0) for the ISA to be usable.
namespace {
struct CpuFeatures {
  bool avx2 = false, vnni = false, amx = false;
  CpuFeatures() {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool fma = c & (1u << 12), f16c = c & (1u << 29), osxsave = c & (1u << 27);
    if (!osxsave) return;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const bool os_avx = (lo & 6u) == 6u, os_avx512 = (lo & 0xe6u) == 0xe6u;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    avx2 = os_avx && fma && f16c && (b & (1u << 5));
    // vnni + vl for vpdpbusd on ymm; bw (byte masks) and bmi2 (pext) for q5's fifth bits
    vnni = avx2 && os_avx512 && (c & (1u << 11)) && (b & (1u << 31)) && (b & (1u << 30)) && (b & (1u << 8));
    // amx-tile (edx 24) + amx-int8 (edx 25); the OS enables tile config and data in XCR0
    // (bits 17, 18), and grants the data state per process (amx_request_permission)
    const bool os_amx = (lo & (3u << 17)) == (3u << 17);
    amx = vnni && os_amx && (d & (1u << 24)) && (d & (1u << 25));
  }
};
const CpuFeatures& features() {
  static const CpuFeatures f;
  return f;
}
}  // namespace

bool cpu_has_avx2() { return features().avx2; }
bool cpu_has_vnni() { return features().vnni; }
bool cpu_has_amx() { return features().amx; }

bool amx_request_permission(std::string* why) {
  static std::once_flag once;
  static bool ok = false;
  static std::string reason;
  std::call_once(once, [] {
    constexpr long kGetPerm = 0x1022, kReqPerm = 0x1023, kXtileData = 18;  // <asm/prctl.h>
    if (syscall(SYS_arch_prctl, kReqPerm, kXtileData) != 0) {
      reason = std::string("the kernel refused the AMX tile state (arch_prctl: ") + std::strerror(errno) + ")";
      return;
    }
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, kGetPerm, &perm) != 0 || !(perm & (1ul << kXtileData))) {
      reason = "the kernel did not grant the AMX tile state";
      return;
    }
    ok = true;
  });
  if (!ok && why) *why = reason;
  return ok;
}

}  // namespace r1
