// q4/q5/q8 GEMM on AMX int8 tiles (qgemm_amx.h), and the activation layout it reads. Compiled
// for AVX-512 + AMX; only called where cpu_has_amx() and the kernel granted the tile state
// (kernels/cpu/cpu.cpp). Library headers come before the target pragma, as in
// qgemm_vnni_avx2.cpp.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "quant/formats.h"

#if defined(__clang__)
#pragma clang attribute push(                                                                                     \
    __attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512vl,avx512bw,avx512vnni,amx-tile,amx-int8"))), \
    apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,bmi2,avx512f,avx512vl,avx512bw,avx512vnni,amx-tile,amx-int8")
#endif

#define R1_VNNI 1
#include "kernels/cpu/qtile_avx2.h"

// GCC 12's tile intrinsics are asm statements that name no memory: the barriers keep the
// unpacked weights' stores before the loads that read them, and the loads of the tile results
// after the stores that write them.
#define R1_TILE_BARRIER() __asm__ __volatile__("" ::: "memory")
#define R1_TILE_LOADCFG(cfg) _tile_loadconfig(cfg)
#define R1_TILE_ZERO(t) _tile_zero(t)
#define R1_TILE_LOAD(t, p, stride)  \
  do {                              \
    R1_TILE_BARRIER();              \
    _tile_loadd(t, p, stride);      \
  } while (0)
#define R1_TILE_DP(c, a, b) _tile_dpbssd(c, a, b)
#define R1_TILE_STORE(t, p, stride) \
  do {                              \
    _tile_stored(t, p, stride);     \
    R1_TILE_BARRIER();              \
  } while (0)
#define R1_TILE_RELEASE() _tile_release()
#include "kernels/cpu/qgemm_amx.h"

namespace r1::avx2 {

size_t qact_amx_stride(int64_t cols) { return qact_stride(cols) + size_t(a64(cols)); }

// The GEMV's layout, then the codes in natural order (the GEMV's pair-interleaved chunks undone;
// tail groups are natural already).
void quantize_act_amx(const float* x, int64_t cols, uint8_t* out) {
  quantize_act(x, cols, out);
  const Act a = act_at(out, cols);
  int8_t* nat = reinterpret_cast<int8_t*>(out + qact_stride(cols));
  const int64_t G = cols / kGroup, G8 = G / 8;
  for (int64_t c = 0; c < G8; c++)
    for (int j = 0; j < 8; j++) {
      const int8_t* lo = a.q + c * 256 + (j / 2) * 64 + (j % 2) * 16;
      std::memcpy(nat + (c * 8 + j) * 32, lo, 16);
      std::memcpy(nat + (c * 8 + j) * 32 + 16, lo + 32, 16);
    }
  std::memcpy(nat + G8 * 256, a.q + G8 * 256, size_t((G - G8 * 8) * 32));
}

size_t qgemm_amx_scratch_bytes(int64_t cols) { return size_t(amx_scratch_size(cols)); }

void qgemm_amx(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
               void* scratch) {
  amx_dispatch(W, act, n, Y, ldy, r0, r1, scratch);
}

}  // namespace r1::avx2

#if defined(__clang__)
#pragma clang attribute pop
#endif
