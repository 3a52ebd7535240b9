// A fixed pool of worker threads for the per-token loop. `parallel_for` splits [0, n) into one
// contiguous chunk per thread (the caller's thread takes the first), so threads finish together
// when the work per item is even. No allocation per call.
//
// A token runs ~200 parallel_for calls at 1.5B, so waking workers must cost well under a
// microsecond: jobs are published by bumping an atomic generation counter that idle workers spin
// on for a while (kSpinUs) before sleeping on it (futex via std::atomic::wait).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace r1 {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_; }
  // fn(begin, end, thread_index) on disjoint ranges covering [0, n); `align` rounds chunk
  // boundaries to a multiple (e.g. rows of a tile). Not reentrant: call from one thread.
  // fn is called through a pointer, not copied into a std::function: a lambda with a few
  // captures would otherwise cost a heap allocation per call, ~140 per token.
  template <class F>
  void parallel_for(int64_t n, F&& fn, int64_t align = 1) {
    using Fn = std::remove_reference_t<F>;
    run(n, align, const_cast<void*>(static_cast<const void*>(&fn)),
        [](void* f, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(f))(b, e, t); });
  }

  // Physical cores among the CPUs this process may run on (affinity: taskset, Slurm, cpuset
  // cgroups), capped by a cgroup CPU quota (docker --cpus, Kubernetes limits).
  static int default_threads();

 private:
  using Call = void (*)(void*, int64_t, int64_t, int);
  void run(int64_t n, int64_t align, void* fn, Call call);
  void worker(int idx);
  int n_;
  std::vector<std::thread> threads_;
  // job, published by the release increment of gen_
  void* job_ = nullptr;
  Call call_ = nullptr;
  int64_t job_n_ = 0, job_align_ = 1;
  alignas(64) std::atomic<uint64_t> gen_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

// The parts of default_threads(), for tests.
namespace threads_detail {
// Distinct (physical id, core id) among the listed processors of a /proc/cpuinfo text; the
// number of allowed processors when the text has no core ids.
int physical_cores(const std::string& cpuinfo, const std::vector<int>& allowed);
// CPUs granted by a cgroup v2 cpu.max line ("200000 100000" -> 2, rounded up); 0 for "max" or
// anything unreadable.
int quota_cpus(const std::string& cpu_max);
}  // namespace threads_detail

}  // namespace r1
