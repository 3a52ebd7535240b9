#include "core/membench.h"

#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"

namespace r1 {

namespace {

// `streams` contiguous parts of [p, p + bytes) read in lockstep, 256 bytes of each per step
// (16-byte loads: baseline x86-64, enough to keep the loads from being the limit); with a
// software prefetch `pf` bytes ahead when pf > 0.
template <int S>
uint64_t scan(const uint8_t* p, uint64_t bytes, uint64_t pf) {
  const uint64_t per = bytes / S / 256 * 256;
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (uint64_t off = 0; off < per; off += 256)
    for (int s = 0; s < S; s++) {
      const uint8_t* q = p + s * per + off;
      if (pf)
        for (int l = 0; l < 4; l++) _mm_prefetch(reinterpret_cast<const char*>(q + pf + 64 * l), _MM_HINT_T0);
      for (int i = 0; i < 256; i += 64) {
        a0 = _mm_add_epi64(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(q + i)));
        a1 = _mm_add_epi64(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(q + i + 16)));
        a2 = _mm_add_epi64(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(q + i + 32)));
        a3 = _mm_add_epi64(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(q + i + 48)));
      }
    }
  return uint64_t(_mm_cvtsi128_si64(_mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3))));
}

// The probe r1 had before these ways (one stream, four 8-byte sums), kept as one of them.
uint64_t scan_words(const uint8_t* p, uint64_t bytes) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (uint64_t i = 0; i + 4 <= bytes / 8; i += 4) {
    a0 += w[i];
    a1 += w[i + 1];
    a2 += w[i + 2];
    a3 += w[i + 3];
  }
  return a0 + a1 + a2 + a3;
}

struct Way {
  const char* name;
  int streams;   // 0: scan_words
  uint64_t pf;   // prefetch distance, bytes
};
constexpr Way kWays[] = {{"1 stream, 8-byte loads (old probe)", 0, 0},
                         {"1 stream", 1, 0},
                         {"2 streams", 2, 0},
                         {"4 streams", 4, 0},
                         {"1 stream, prefetch 4 KB", 1, 4096},
                         {"2 streams, prefetch 4 KB", 2, 4096},
                         {"4 streams, prefetch 1 KB", 4, 1024}};

uint64_t read_part(const Way& w, const uint8_t* p, uint64_t bytes) {
  switch (w.streams) {
    case 0: return scan_words(p, bytes);
    case 1: return scan<1>(p, bytes, w.pf);
    case 2: return scan<2>(p, bytes, w.pf);
    default: return scan<4>(p, bytes, w.pf);
  }
}

}  // namespace

double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes, int reps, std::vector<ReadVariant>* detail) {
  const int T = pool.size();
  bytes = bytes / (uint64_t(4096) * uint64_t(T)) * 4096 * uint64_t(T);  // whole pages per thread
  if (bytes == 0) fail_input("bandwidth test: buffer too small");
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
  if (!buf) fail_input("bandwidth test: cannot allocate " + std::to_string(bytes >> 20) + " MiB");
  const uint64_t part = bytes / uint64_t(T);
  // Each thread writes the part it later reads (first touch puts the pages near it).
  pool.parallel_each([&](int t) { std::memset(buf + uint64_t(t) * part, t + 1, part); });
  constexpr int kN = int(sizeof kWays / sizeof kWays[0]);
  std::vector<uint64_t> sink(size_t(T) * 8);  // one cache line per thread: results kept
  double best[kN] = {};
  for (int r = 0; r < reps; r++)
    for (int v = 0; v < kN; v++) {  // ways alternate, so a slow minute does not favour one
      const auto t0 = std::chrono::steady_clock::now();
      pool.parallel_each([&](int t) { sink[size_t(t) * 8] += read_part(kWays[v], buf + uint64_t(t) * part, part); });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best[v] = std::max(best[v], double(bytes) / s / 1e9);
    }
  std::free(buf);
  if (detail) {
    detail->clear();
    for (int v = 0; v < kN; v++) detail->push_back({kWays[v].name, best[v]});
  }
  return *std::max_element(best, best + kN);
}

double measure_read_bandwidth_apart(int threads, uint64_t bytes, int reps) {
  int fd[2];
  if (pipe(fd) != 0) return 0;
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return 0;
  }
  if (pid == 0) {  // child: measure, report, leave without running the parent's exit handlers
    close(fd[0]);
    double bw = 0;
    try {
      ThreadPool pool(threads);
      bw = measure_read_bandwidth(pool, bytes, reps);
    } catch (...) {
    }
    const ssize_t w = write(fd[1], &bw, sizeof bw);
    _exit(w == ssize_t(sizeof bw) ? 0 : 1);
  }
  close(fd[1]);
  double bw = 0;
  if (read(fd[0], &bw, sizeof bw) != ssize_t(sizeof bw)) bw = 0;
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return bw;
}

}  // namespace r1
