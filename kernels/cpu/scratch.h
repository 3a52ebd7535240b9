// Grow-only 64-byte-aligned scratch memory, meant to be thread_local: no allocation in the
// per-token loop once the largest shape has been seen.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace r1::cpu_detail {

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
      std::free(p);
      cap = (bytes + 63) / 64 * 64;
      p = std::aligned_alloc(64, cap);
      if (!p) {
        cap = 0;
        throw std::bad_alloc();
      }
    }
    return static_cast<T*>(p);
  }
};

}  // namespace r1::cpu_detail
