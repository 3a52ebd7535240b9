// The thread pool: every item of a parallel_for runs exactly once, on aligned ranges, whatever
// the split; a thread that stalls has its pieces taken by the others; parallel_each runs on
// every thread, also for a job published before the workers have started.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "core/threadpool.h"

using namespace r1;

TEST_CASE("parallel_for runs every item once, on aligned ranges", "[threadpool]") {
  std::mt19937 g(5);
  for (int nt : {1, 2, 3, 5}) {
    ThreadPool pool(nt);
    for (int it = 0; it < 3000; it++) {
      const int64_t n = int64_t(g() % 2000) + 1, align = int64_t(g() % 24) + 1;
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<bool> misaligned{false};
      pool.parallel_for(n, [&](int64_t b, int64_t e, int tid) {
        if (b % align != 0 || (e % align != 0 && e != n) || b >= e || tid < 0 || tid >= nt) misaligned = true;
        for (int64_t i = b; i < e; i++) hits[size_t(i)]++;
      }, align);
      INFO(nt << " threads, n " << n << ", align " << align);
      REQUIRE_FALSE(misaligned.load());
      for (int64_t i = 0; i < n; i++) REQUIRE(hits[size_t(i)].load() == 1);
    }
  }
}

TEST_CASE("a stalled thread's pieces are run by the others", "[threadpool]") {
  // Thread 1's first piece sleeps: the rest of its range must not wait for it.
  ThreadPool pool(2);
  const int64_t n = 64;
  std::vector<int> owner(size_t(n), -1);
  std::atomic<bool> slept{false};
  pool.parallel_for(n, [&](int64_t b, int64_t e, int tid) {
    if (tid == 1 && !slept.exchange(true)) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (int64_t i = b; i < e; i++) owner[size_t(i)] = tid;
  });
  int by_caller = 0;
  for (int64_t i = 0; i < n; i++) {
    REQUIRE(owner[size_t(i)] >= 0);
    by_caller += owner[size_t(i)] == 0;
  }
  // Without stealing the caller runs exactly its half. If thread 1 never started, the caller
  // ran everything (also fine); either way more than its half.
  CHECK(by_caller > n / 2);
}

TEST_CASE("parallel_each runs once on every thread, also right after construction", "[threadpool]") {
  for (int rep = 0; rep < 40; rep++) {
    const int nt = 1 + rep % 4;
    ThreadPool pool(nt);  // the job below may be published before any worker has run
    std::vector<std::atomic<int>> ran(static_cast<size_t>(nt));
    std::atomic<int> inside{0}, most{0};
    pool.parallel_each([&](int tid) {
      ran[size_t(tid)]++;
      const int now = ++inside;
      for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
      }
      // stay until every thread has arrived (they run at the same time), at most 2 s
      const auto t0 = std::chrono::steady_clock::now();
      while (most.load() < nt && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2))
        std::this_thread::yield();
      --inside;
    });
    for (int t = 0; t < nt; t++) REQUIRE(ran[size_t(t)].load() == 1);
    CHECK(most.load() == nt);
  }
}
