// Memory read bandwidth measured on the spot: the ceiling decode speed is compared against
// (decode reads every weight byte once per token).
#pragma once
#include <cstdint>
#include <vector>

#include "core/threadpool.h"

namespace r1 {

// One way of reading the buffer, and the best rate it reached.
struct ReadVariant {
  const char* name;
  double gbs = 0;
};

// Streaming read of a `bytes` buffer (default 1 GiB, far larger than any LLC), every thread of
// the pool at once on its own part, in several ways: 1, 2 or 4 streams per thread, with and
// without software prefetch, and the plain 8-byte loop r1 used before (a core's read rate
// depends on how many lines are in flight, which these change). Variants alternate, best of
// `reps` passes each; returns the best variant's GB/s (1e9 bytes/s), the ceiling. `detail`
// receives every variant. The buffer is written first (all pages resident) and freed before
// returning.
double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes = uint64_t(1) << 30, int reps = 3,
                              std::vector<ReadVariant>* detail = nullptr);

// The same in a short-lived child process with its own pool of `threads`, so that the buffer
// never counts toward this process's peak RSS (a benchmark can then measure before its runs as
// well as after). Call it before this process starts threads. 0 when it cannot be measured.
double measure_read_bandwidth_apart(int threads, uint64_t bytes = uint64_t(1) << 30, int reps = 3);

}  // namespace r1
