#pragma once
// What this CPU and OS can run: which kernel sets (kernels/cpu/cpu.cpp) may be chosen. Compiled
// without -mavx2 so the detection itself runs on any x86-64.
#include <string>

namespace r1 {

bool cpu_has_avx2();  // avx2 && fma && f16c
bool cpu_has_vnni();  // avx512vnni && avx512vl (256-bit vpdpbusd), avx512bw, bmi2
bool cpu_has_amx();   // amx-tile + amx-int8, and the OS saves tile state (XCR0)
// Asks the kernel for the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM), once per process;
// false with the reason in *why when refused.
bool amx_request_permission(std::string* why);

}  // namespace r1
