#include "kernels/cpu/threadpool.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sched.h>
#include <set>
#include <sstream>
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

void ThreadPool::run(int64_t n, int64_t align, void* fn, Call call) {
  if (n <= 0) return;
  if (n_ == 1 || n <= align) {
    call(fn, 0, n, 0);
    return;
  }
  job_ = fn;
  call_ = call;
  job_n_ = n;
  job_align_ = align;
  pending_.store(n_ - 1, std::memory_order_relaxed);
  gen_.fetch_add(1, std::memory_order_release);
  gen_.notify_all();  // cheap when nobody sleeps (libstdc++ counts waiters)
  int64_t b, e;
  chunk(n, align, n_, 0, &b, &e);
  if (b < e) call(fn, b, e, 0);
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
    if (b < e) call_(job_, b, e, idx);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
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
