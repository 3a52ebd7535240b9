// Memory read bandwidth measured on the spot: the ceiling decode speed is compared against
// (decode reads every weight byte once per token).
#pragma once
#include <cstdint>

#include "kernels/cpu/threadpool.h"

namespace r1 {

// Streaming read of a `bytes` buffer (default 1 GiB, far larger than any LLC) split over the
// pool's threads, one contiguous part each; best of `reps` passes, in GB/s (1e9 bytes/s).
// The buffer is written first (all pages resident) and freed before returning.
double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes = uint64_t(1) << 30, int reps = 5);

// The same in a short-lived child process with its own pool of `threads`, so that the buffer
// never counts toward this process's peak RSS (a benchmark can then measure before its runs as
// well as after). Call it before this process starts threads. 0 when it cannot be measured.
double measure_read_bandwidth_apart(int threads, uint64_t bytes = uint64_t(1) << 30, int reps = 5);

}  // namespace r1
