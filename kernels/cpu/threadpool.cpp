#include "kernels/cpu/threadpool.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <unistd.h>

namespace r1 {

namespace {

constexpr int64_t kSpinUs = 300;  // spin this long after a job before sleeping

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spin until pred() or the budget runs out; true when pred() held.
template <class P>
bool spin_until(P pred) {
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 1;; i++) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 255) == 0 &&
        std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kSpinUs))
      return pred();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_; i++) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  gen_.fetch_add(1, std::memory_order_release);
  gen_.notify_all();
  for (auto& t : threads_) t.join();
}

static void chunk(int64_t n, int64_t align, int parts, int idx, int64_t* b, int64_t* e) {
  int64_t units = (n + align - 1) / align;
  int64_t lo = units * idx / parts, hi = units * (idx + 1) / parts;
  *b = std::min(n, lo * align);
  *e = std::min(n, hi * align);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t align) {
  if (n <= 0) return;
  if (n_ == 1 || n <= align) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_align_ = align;
  pending_.store(n_ - 1, std::memory_order_relaxed);
  gen_.fetch_add(1, std::memory_order_release);
  gen_.notify_all();  // cheap when nobody sleeps (libstdc++ counts waiters)
  int64_t b, e;
  chunk(n, align, n_, 0, &b, &e);
  if (b < e) fn(b, e, 0);
  auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done))
    for (int p; (p = pending_.load(std::memory_order_acquire)) != 0;) pending_.wait(p);
  job_ = nullptr;
}

void ThreadPool::worker(int idx) {
  uint64_t seen = 0;
  for (;;) {
    auto fresh = [&] { return gen_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(fresh))
      while (!fresh()) gen_.wait(seen, std::memory_order_acquire);
    seen = gen_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    int64_t b, e;
    chunk(job_n_, job_align_, n_, idx, &b, &e);
    if (b < e) (*job_)(b, e, idx);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

int ThreadPool::default_threads() {
  // Physical cores: distinct (physical id, core id) pairs; SMT siblings share a core's bandwidth.
  std::ifstream f("/proc/cpuinfo");
  std::set<std::pair<int, int>> cores;
  std::string line;
  int phys = 0;
  while (std::getline(f, line)) {
    if (line.rfind("physical id", 0) == 0) phys = std::stoi(line.substr(line.find(':') + 1));
    if (line.rfind("core id", 0) == 0) cores.insert({phys, std::stoi(line.substr(line.find(':') + 1))});
  }
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int n = cores.empty() ? int(online) : int(cores.size());
  if (online > 0 && n > online) n = int(online);
  return n < 1 ? 1 : n;
}

}  // namespace r1
