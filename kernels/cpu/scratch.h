// Grow-only 64-byte-aligned scratch memory: no allocation in the per-token loop once the
// largest shape has been seen. Scratch is the caller's own (thread_local); PerThread is one
// per thread of a pool, grown by the caller before the parallel region.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace r1::cpu_detail {

// How many times any Scratch has grown (tests check that decoding does not).
inline std::atomic<long> g_scratch_grows{0};

struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p); }
  template <class T>
  T* get(size_t bytes) {
    if (bytes > cap) {
      g_scratch_grows.fetch_add(1, std::memory_order_relaxed);
      std::free(p);
      cap = (bytes + 63) / 64 * 64;
      p = std::aligned_alloc(64, cap);
      if (!p) {
        cap = 0;
        throw std::bad_alloc();
      }
      std::memset(p, 0, cap);  // fault the pages in now, not one by one in the token loop
    }
    return static_cast<T*>(p);
  }
};

// A Scratch for each thread of a pool (indexed by the thread index parallel_for passes). The
// pool hands pieces to whichever thread is free, so a thread_local grown by its thread on first
// use could grow at any later token; these are grown by the calling thread, before the region.
class PerThread {
 public:
  // Every slot of `threads` at least `bytes`.
  void reserve(int threads, size_t bytes) {
    if (threads > n_) {
      s_ = std::make_unique<Scratch[]>(size_t(threads));
      n_ = threads;
    }
    for (int t = 0; t < threads; t++) s_[size_t(t)].get<char>(bytes);
  }
  template <class T>
  T* at(int tid) const {
    return static_cast<T*>(s_[size_t(tid)].p);
  }

 private:
  std::unique_ptr<Scratch[]> s_;
  int n_ = 0;
};

}  // namespace r1::cpu_detail
