// Issue "CPU speed": no memory allocation and no page faults in the per-token loop. Global
// operator new is counted while a decode loop runs (worker threads included); page faults come
// from getrusage. The model is a synthetic one at a small real-like shape.
#include <catch2/catch.hpp>
#include <sys/resource.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/scratch.h"
#include "core/threadpool.h"
#include "models/synthetic.h"
#include "models/cpu_backend.h"
#include "kernel_switch.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_news{0};
}  // namespace

// Replaces the global allocation functions of the test binary; they only count, then malloc.
void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// every unaligned form, so that no pointer from another allocator (ASan's) reaches free()
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace r1;

namespace {
long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt + u.ru_majflt;
}
}  // namespace

TEST_CASE("decode steps allocate nothing and fault in no pages", "[engine][steady]") {
  const Config c = synthetic_config("tiny");
  for (Format f : {Format::Q4, Format::Q8, Format::BF16})
    for (int nt : {1, 2}) {
      for (bool ref : {false, true}) {
        INFO(format_name(f) << ", " << nt << " threads, " << (ref ? "reference" : "fast") << " kernels");
        test::KernelSwitch force_ref(cpu::force_reference, ref);
        ThreadPool pool(nt);
        auto m = make_synthetic_model(c, f);
        const int64_t ctx = 600;
        CpuSession s(*m, ctx, r1::KvFormat::F16, pool);
        std::vector<int32_t> prompt(300);  // past 256: long-context attention splits over threads
        for (size_t i = 0; i < prompt.size(); i++) prompt[i] = int32_t(i * 7 % c.vocab_size);
        s.forward(prompt.data(), int64_t(prompt.size()));
        int32_t t = 3;
        for (int i = 0; i < 2; i++) s.forward(&t, 1);  // warm: scratch sized, code paths taken once
        // then hundreds of positions: each new position writes KV rows no earlier step touched
        const long f0 = minor_faults(), grows0 = cpu_detail::g_scratch_grows.load();
        g_news = 0;
        g_counting = true;
        for (int i = 0; i < 290; i++) {
          const float* lg = s.forward(&t, 1);
          t = int32_t((t + 1 + int(lg[0] > 0)) % c.vocab_size);
        }
        g_counting = false;
        const long faults = minor_faults() - f0;
        CHECK(g_news.load() == 0);
        CHECK(cpu_detail::g_scratch_grows.load() == grows0);
        CHECK(faults == 0);
      }
    }
}
