// The AMX GEMM (kernels/cpu/qgemm_amx.h) built on a scalar model of the tile instructions, for
// the [amx] tests: on a CPU without AMX this checks everything but the instructions themselves
// (the B-tile layout, the activation rows, slots and lanes, the float epilogue, masking). The
// model follows the pseudo-code of Intel's SDM (LDTILECFG, TILELOADD, TILEZERO, TDPBSSD,
// TILESTORED) and refuses shapes the hardware would fault on.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <immintrin.h>

#include "kernels/cpu/avx2.h"
#include "quant/formats.h"

#include "kernels/cpu/vnni_begin.h"

#define R1_VNNI 1
#include "kernels/cpu/qtile_avx2.h"

namespace r1::amx_emu {
namespace {

struct Tiles {
  bool configured = false;
  int rows[8] = {}, colsb[8] = {};
  uint8_t t[8][16][64] = {};
};
thread_local Tiles tiles;

[[noreturn]] void fault(const char* what) {
  std::fprintf(stderr, "emulated AMX: %s (the hardware would fault)\n", what);
  std::abort();
}
void check(int i) {
  if (!tiles.configured) fault("tile used before ldtilecfg");
  if (i < 0 || i > 7 || tiles.rows[i] == 0) fault("tile not configured");
}

void loadcfg(const void* cfg) {
  const auto* c = static_cast<const uint8_t*>(cfg);
  if (c[0] != 1) fault("palette is not 1");
  for (int i = 0; i < 8; i++) {
    uint16_t cb;
    std::memcpy(&cb, c + 16 + 2 * i, 2);
    tiles.colsb[i] = cb;
    tiles.rows[i] = c[48 + i];
    if (tiles.rows[i] > 16 || tiles.colsb[i] > 64) fault("tile shape past 16 x 64");
  }
  tiles.configured = true;
  std::memset(tiles.t, 0, sizeof tiles.t);
}
void zero(int i) {
  check(i);
  std::memset(tiles.t[i], 0, sizeof tiles.t[i]);
}
void load(int i, const void* base, int64_t stride) {
  check(i);
  std::memset(tiles.t[i], 0, sizeof tiles.t[i]);
  for (int r = 0; r < tiles.rows[i]; r++)
    std::memcpy(tiles.t[i][r], static_cast<const uint8_t*>(base) + r * stride, size_t(tiles.colsb[i]));
}
void store(int i, void* base, int64_t stride) {
  check(i);
  for (int r = 0; r < tiles.rows[i]; r++)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, tiles.t[i][r], size_t(tiles.colsb[i]));
}
// TDPBSSD c, a, b: c[m].dword[n] += sum over k < a.colsb / 4 of the 4 signed byte products of
// a[m].dword[k] and b[k].dword[n].
void dpbssd(int c, int a, int b) {
  check(c), check(a), check(b);
  if (tiles.rows[a] != tiles.rows[c] || tiles.colsb[a] / 4 != tiles.rows[b] || tiles.colsb[b] != tiles.colsb[c])
    fault("tdpbssd shapes do not match");
  for (int m = 0; m < tiles.rows[c]; m++)
    for (int n = 0; n < tiles.colsb[c] / 4; n++) {
      int32_t acc;
      std::memcpy(&acc, &tiles.t[c][m][4 * n], 4);
      for (int k = 0; k < tiles.colsb[a] / 4; k++)
        for (int i = 0; i < 4; i++)
          acc += int32_t(int8_t(tiles.t[a][m][4 * k + i])) * int32_t(int8_t(tiles.t[b][k][4 * n + i]));
      std::memcpy(&tiles.t[c][m][4 * n], &acc, 4);
    }
}
void release() { tiles = Tiles{}; }

}  // namespace
}  // namespace r1::amx_emu

#define R1_TILE_LOADCFG(cfg) ::r1::amx_emu::loadcfg(cfg)
#define R1_TILE_ZERO(t) ::r1::amx_emu::zero(t)
#define R1_TILE_LOAD(t, p, stride) ::r1::amx_emu::load(t, p, stride)
#define R1_TILE_DP(c, a, b) ::r1::amx_emu::dpbssd(c, a, b)
#define R1_TILE_STORE(t, p, stride) ::r1::amx_emu::store(t, p, stride)
#define R1_TILE_RELEASE() ::r1::amx_emu::release()
#include "kernels/cpu/qgemm_amx.h"

namespace r1::amx_emu {
// avx2::qgemm_amx's contract, on the emulated tiles.
void qgemm_amx(const WeightView& W, const uint8_t* act, int64_t n, float* Y, int64_t ldy, int64_t r0, int64_t r1,
               void* scratch) {
  avx2::amx_dispatch(W, act, n, Y, ldy, r0, r1, scratch);
}
}  // namespace r1::amx_emu

#include "kernels/cpu/vnni_end.h"
