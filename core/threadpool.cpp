#include "core/threadpool.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace r1 {

namespace {

// Spin this long for the next job (or for the last piece) before sleeping on a futex. Between
// two calls of one token the caller's own work takes a few microseconds, so workers that spin
// this long catch every call of a token; longer spins only take CPU time from other processes
// (and from this pool's own threads when they share a core with them).
constexpr int64_t kSpinUs = 20;
// A thread's range runs in this many pieces; the last pieces of a slow thread are what the
// others can take over.
constexpr int64_t kPieces = 4;
constexpr uint32_t kClosed = 1u << 31, kWaiting = 1u << 30, kCount = kWaiting - 1;
// A worker that holds a piece while another process has its core stalls the caller until the
// scheduler gives the core back (a slice, ~1-3 ms, against ~0.1 ms per job). When the caller
// has waited that long, longer than it worked, the next kBackoffJobs jobs (1-2 tokens at 1.5B)
// run on the caller alone, and then the workers are tried again: on a busy machine that is one
// thread's speed, not a fraction of it.
constexpr int64_t kStallUs = 200;
constexpr int kBackoffJobs = 256;

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
    if ((i & 63) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kSpinUs)) return pred();
  }
}

// The futex calls on a 32-bit atomic (lock-free, so its object is the plain word).
uint32_t* word(std::atomic<uint32_t>& a) { return reinterpret_cast<uint32_t*>(&a); }
void futex_wait(std::atomic<uint32_t>& a, uint32_t expected) {
  syscall(SYS_futex, word(a), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>& a, int n) {
  syscall(SYS_futex, word(a), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

inline uint64_t pack(int64_t front, int64_t back) { return uint64_t(front) | uint64_t(back) << 32; }
inline int64_t front_of(uint64_t v) { return int64_t(v & 0xffffffffu); }
inline int64_t back_of(uint64_t v) { return int64_t(v >> 32); }

// Up to `piece` units [*u0, *u1) off the front (the owner) or the back (another thread) of a
// range; false when it is empty.
bool take(std::atomic<uint64_t>& r, int64_t piece, bool back, int64_t* u0, int64_t* u1) {
  for (uint64_t v = r.load(std::memory_order_relaxed);;) {
    const int64_t f = front_of(v), b = back_of(v);
    if (f >= b) return false;
    const int64_t n = std::min(piece, b - f);
    *u0 = back ? b - n : f;
    *u1 = *u0 + n;
    if (r.compare_exchange_weak(v, back ? pack(f, b - n) : pack(f + n, b), std::memory_order_acq_rel,
                                std::memory_order_relaxed))
      return true;
  }
}

// Units [lo, hi) of thread t when `units` are split evenly over `parts` threads.
inline int64_t share_lo(int64_t units, int parts, int t) { return units * t / parts; }

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_(n_threads < 1 ? 1 : n_threads), ranges_(new Range[size_t(n_)]), ctl_(kClosed) {
  for (int i = 1; i < n_; i++) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  gen_.fetch_add(1);
  futex_wake(gen_, INT_MAX);
  for (auto& t : threads_) t.join();
}

void ThreadPool::run(int64_t n, int64_t align, bool steal, void* fn, Call call) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  if (n_ == 1 || (steal && (n <= align || backoff_ > 0))) {
    if (steal && backoff_ > 0) backoff_--;
    call(fn, 0, n, 0);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Units of `align` elements; ranges are 32-bit unit counts (coarser units past 2^31).
  int64_t units = (n + align - 1) / align;
  const int64_t scale = (units >> 30) + 1;
  const int64_t unit = align * scale;
  units = (n + unit - 1) / unit;
  job_ = fn;
  call_ = call;
  job_n_ = n;
  job_unit_ = unit;
  job_units_ = units;
  job_steal_ = steal;
  for (int t = 0; t < n_; t++)
    ranges_[size_t(t)].v.store(pack(share_lo(units, n_, t), share_lo(units, n_, t + 1)), std::memory_order_relaxed);
  ctl_.store(0, std::memory_order_release);  // open: workers may join
  gen_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake(gen_, INT_MAX);
  work(0);
  if (!steal) {  // every thread runs its own range: wait until each has taken it
    auto all_taken = [&] {
      for (int t = 1; t < n_; t++) {
        const uint64_t v = ranges_[size_t(t)].v.load(std::memory_order_acquire);
        if (front_of(v) < back_of(v)) return false;
      }
      return true;
    };
    while (!spin_until(all_taken)) sched_yield();
  }
  // Every piece is taken: close the job, then wait for the workers still running one.
  uint32_t c = ctl_.fetch_or(kClosed, std::memory_order_acq_rel) | kClosed;
  if (c & kCount) {
    if (spin_until([&] { return ((c = ctl_.load(std::memory_order_acquire)) & kCount) == 0; })) return;
    const auto t1 = std::chrono::steady_clock::now();
    while (c & kCount) {
      if (ctl_.compare_exchange_weak(c, c | kWaiting, std::memory_order_acq_rel)) futex_wait(ctl_, c | kWaiting);
      c = ctl_.load(std::memory_order_acquire);
    }
    const auto waited = std::chrono::steady_clock::now() - t1;
    if (steal && waited > std::chrono::microseconds(kStallUs) && waited > t1 - t0) backoff_ = kBackoffJobs;
  }
}

void ThreadPool::work(int idx) {
  const int64_t units = job_units_, unit = job_unit_, n = job_n_;
  auto exec = [&](int64_t u0, int64_t u1) {
    call_(job_, u0 * unit, std::min(n, u1 * unit), idx);
  };
  auto piece = [&](int t) {
    const int64_t len = share_lo(units, n_, t + 1) - share_lo(units, n_, t);
    return job_steal_ ? std::max<int64_t>(1, (len + kPieces - 1) / kPieces) : std::max<int64_t>(1, len);
  };
  int64_t u0, u1;
  while (take(ranges_[size_t(idx)].v, piece(idx), false, &u0, &u1)) exec(u0, u1);  // own range, front to back
  if (!job_steal_) return;
  for (int k = 1; k < n_; k++) {  // then other threads' ranges, from the back
    const int t = (idx + k) % n_;
    while (take(ranges_[size_t(t)].v, piece(t), true, &u0, &u1)) exec(u0, u1);
  }
}

bool ThreadPool::join() {
  uint32_t c = ctl_.load(std::memory_order_relaxed);
  do {
    if (c & kClosed) return false;
  } while (!ctl_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
  return true;
}

void ThreadPool::leave() {
  if ((ctl_.fetch_sub(1, std::memory_order_acq_rel) - 1) == (kClosed | kWaiting)) futex_wake(ctl_, 1);
}

void ThreadPool::worker(int idx) {
  uint32_t seen = 0;  // gen_ at construction: a job published before this thread ran is still new
  for (;;) {
    if (!spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; })) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      while (gen_.load(std::memory_order_seq_cst) == seen) futex_wait(gen_, seen);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = gen_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    if (join()) {
      work(idx);
      leave();
    }
  }
}

namespace threads_detail {

int physical_cores(const std::string& cpuinfo, const std::vector<int>& allowed) {
  std::set<int> ok(allowed.begin(), allowed.end());
  std::set<std::pair<int, int>> cores;
  std::istringstream in(cpuinfo);
  std::string line;
  int proc = -1, phys = 0;
  bool any_core_id = false;
  auto num = [](const std::string& l) {
    const auto c = l.find(':');
    try {
      return c == std::string::npos ? -1 : std::stoi(l.substr(c + 1));
    } catch (const std::exception&) {
      return -1;
    }
  };
  while (std::getline(in, line)) {  // "processor" opens a record; "core id" follows "physical id"
    if (line.rfind("processor", 0) == 0) proc = num(line), phys = 0;
    else if (line.rfind("physical id", 0) == 0) phys = num(line);
    else if (line.rfind("core id", 0) == 0) {
      any_core_id = true;
      if (ok.count(proc)) cores.insert({phys, num(line)});
    }
  }
  return any_core_id ? int(cores.size()) : int(ok.size());
}

int quota_cpus(const std::string& cpu_max) {
  std::istringstream in(cpu_max);
  std::string quota;
  long long period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  try {
    const long long q = std::stoll(quota);
    return q <= 0 ? 0 : int((q + period - 1) / period);
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace threads_detail

int ThreadPool::default_threads() {
  // SMT siblings share a core's bandwidth and FMA units, so one thread per physical core.
  std::vector<int> allowed;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &set)) allowed.push_back(c);
  if (allowed.empty())
    for (long c = 0, n = sysconf(_SC_NPROCESSORS_ONLN); c < n; c++) allowed.push_back(int(c));
  auto slurp = [](const char* path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  int n = threads_detail::physical_cores(slurp("/proc/cpuinfo"), allowed);
  if (n < 1) n = int(allowed.size());
  // Spinning workers beyond a CPU quota would be throttled and stall every parallel_for.
  int quota = threads_detail::quota_cpus(slurp("/sys/fs/cgroup/cpu.max"));
  if (quota == 0) {  // cgroup v1
    quota = threads_detail::quota_cpus(slurp("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") + " " +
                                       slurp("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  }
  if (quota > 0 && n > quota) n = quota;
  return n < 1 ? 1 : n;
}

}  // namespace r1
