#include "core/membench.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"

namespace r1 {

double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes, int reps) {
  bytes = bytes / 4096 * 4096;
  auto* buf = static_cast<uint64_t*>(std::aligned_alloc(4096, bytes));
  if (!buf) fail_input("bandwidth test: cannot allocate " + std::to_string(bytes >> 20) + " MiB");
  const int64_t n = int64_t(bytes / 8);
  // Each thread writes the part it later reads (first touch puts the pages near it).
  pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; i++) buf[i] = uint64_t(i);
  }, 4096);
  std::vector<uint64_t> sink(size_t(pool.size()) * 8);  // one cache line per thread: results kept
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, [&](int64_t b, int64_t e, int tid) {
      // four independent sums so the loop is bound by loads, not by the add chain
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (int64_t i = b; i < e; i += 4) {
        a0 += buf[i];
        a1 += buf[i + 1];
        a2 += buf[i + 2];
        a3 += buf[i + 3];
      }
      sink[size_t(tid) * 8] += a0 + a1 + a2 + a3;
    }, 4096);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::free(buf);
  return double(bytes) / best / 1e9;
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
