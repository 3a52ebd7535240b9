#include "kernels/cpu/threadpool.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <unistd.h>

namespace r1 {

ThreadPool::ThreadPool(int n_threads) : n_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_; i++) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
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
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    job_n_ = n;
    job_align_ = align;
    pending_ = n_ - 1;
    generation_++;
  }
  cv_start_.notify_all();
  int64_t b, e;
  chunk(n, align, n_, 0, &b, &e);
  if (b < e) fn(b, e, 0);
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker(int idx) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t, int)>* job;
    int64_t n, align;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
      align = job_align_;
    }
    int64_t b, e;
    chunk(n, align, n_, idx, &b, &e);
    if (b < e) (*job)(b, e, idx);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) cv_done_.notify_one();
    }
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
