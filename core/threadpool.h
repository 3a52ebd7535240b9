// A fixed pool of worker threads for the per-token loop. `parallel_for` gives each thread one
// contiguous range of [0, n) (the caller's thread takes the first), which it runs front to back
// in a few pieces; a thread that runs out of work takes pieces from the back of another's range.
// So when the threads are equally fast the split is the static one (each streams its own rows),
// and when one is slow or not running at all (another process holds its core) the others do
// its work instead of waiting for it. No allocation per call.
//
// A token runs ~200 parallel_for calls at 1.5B, so waking workers must cost well under a
// microsecond: jobs are published by bumping a generation counter that idle workers spin on
// for a short while (kSpinUs) before sleeping on it (futex). The caller never waits for a
// worker that has not started on the job: only for those holding a piece; and when such a wait
// shows that a worker's core is taken by another process, the next jobs run on the caller alone
// for a while (threadpool.cpp: kBackoffJobs).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
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
  // fn(begin, end, thread_index) on disjoint ranges covering [0, n), possibly several per
  // thread (pieces, stolen pieces), each on whichever thread runs it; `align` rounds every
  // range boundary to a multiple (e.g. rows of a tile). fn must not depend on which thread or
  // which split runs an item. Not reentrant: call from one thread.
  // fn is called through a pointer, not copied into a std::function: a lambda with a few
  // captures would otherwise cost a heap allocation per call, ~140 per token.
  template <class F>
  void parallel_for(int64_t n, F&& fn, int64_t align = 1) {
    run(n, align, true, erase(fn), &call_range<std::remove_reference_t<F>>);
  }
  // fn(thread_index) once on every thread of the pool, all at the same time: for measuring
  // what the threads can do together (read bandwidth, dot-product peak). Waits for every
  // thread, however slow.
  template <class F>
  void parallel_each(F&& fn) {
    run(n_, 1, false, erase(fn), &call_each<std::remove_reference_t<F>>);
  }

  // Physical cores among the CPUs this process may run on (affinity: taskset, Slurm, cpuset
  // cgroups), capped by a cgroup CPU quota (docker --cpus, Kubernetes limits).
  static int default_threads();

 private:
  using Call = void (*)(void*, int64_t, int64_t, int);
  template <class F>
  static void* erase(F& fn) { return const_cast<void*>(static_cast<const void*>(&fn)); }
  template <class Fn>
  static void call_range(void* f, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(f))(b, e, t); }
  template <class Fn>
  static void call_each(void* f, int64_t, int64_t, int t) { (*static_cast<Fn*>(f))(t); }

  void run(int64_t n, int64_t align, bool steal, void* fn, Call call);
  void work(int idx);    // this thread's pieces, then (when stealing) other threads'
  bool join();           // enter the open job; false when it is closed
  void leave();
  void worker(int idx);

  // Thread t's remaining units of the job: [front, back) packed as front | back << 32. The
  // owner takes pieces from the front, thieves from the back.
  struct alignas(64) Range {
    std::atomic<uint64_t> v{0};
  };
  int n_;
  std::vector<std::thread> threads_;
  std::unique_ptr<Range[]> ranges_;
  // The job: written by the caller while the job is closed and no worker is in it, published
  // to workers by opening ctl_ (release) and read by them after joining (acquire).
  void* job_ = nullptr;
  Call call_ = nullptr;
  int64_t job_n_ = 0, job_unit_ = 1, job_units_ = 0;
  bool job_steal_ = true;
  int backoff_ = 0;  // jobs the caller still runs alone after a worker stalled it (caller's own)
  // Workers wait for gen_ to change (futex word); sleepers_ counts those asleep on it.
  alignas(64) std::atomic<uint32_t> gen_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  // Workers inside the job (low bits), kClosed once the caller has taken the last piece,
  // kWaiting while the caller sleeps on it (futex word) for the last of them to leave.
  alignas(64) std::atomic<uint32_t> ctl_;
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
