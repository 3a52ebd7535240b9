// Grow-only 64-byte-aligned scratch memory, meant to be thread_local: no allocation in the
// per-token loop once the largest shape has been seen.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
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

}  // namespace r1::cpu_detail
