// The device: one stream, allocations that say what did not fit, copies through pinned staging,
// graphs and event timers.
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace r1::cuda {
namespace detail {

void fail_cuda(cudaError_t e, const char* what, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  fail_input(std::string("CUDA error: ") + cudaGetErrorString(e) + " (" + what + " at " + (base ? base + 1 : file) + ":" +
             std::to_string(line) + ")");
}

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t t;
    R1_CUDA_CHECK(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking));
    return t;
  }();
  return s;
}

}  // namespace detail

using detail::stream;

namespace {
__global__ void k_probe() {}  // whether this binary has code for the device
}  // namespace

bool usable(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    // without a driver the runtime says "driver version is insufficient": say what is missing
    if (why)
      *why = e == cudaSuccess || e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver
                 ? std::string("no NVIDIA GPU or driver found")
                 : std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
    cudaGetLastError();  // clear it
    return false;
  }
  cudaDeviceProp p{};
  R1_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  const std::string cc = std::to_string(p.major) + std::to_string(p.minor);
  if (p.major < 8) {  // the int8 tensor-core products need sm_80+
    if (why) *why = std::string(p.name) + " (compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) + ") is too old";
    return false;
  }
  // a binary without machine code (or PTX) for this chip cannot launch anything on it
  cudaFuncAttributes fa{};
  if (cudaFuncGetAttributes(&fa, k_probe) != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = "this build of r1 has no kernels for " + std::string(p.name) + " (sm_" + cc +
                    "); rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + cc;
    return false;
  }
  return true;
}

DeviceInfo device_info() {
  DeviceInfo d;
  cudaDeviceProp p{};
  R1_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sms = p.multiProcessorCount;
  size_t fr = 0, tot = 0;
  R1_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
  d.free_bytes = fr;
  d.total_bytes = tot;
  return d;
}

void* alloc(uint64_t bytes, const std::string& what) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    char buf[256];
    std::snprintf(buf, sizeof buf, "GPU out of memory: %s needs %.2f GB, %.2f GB of %.2f GB free", what.c_str(),
                  double(bytes) / 1e9, double(fr) / 1e9, double(tot) / 1e9);
    fail_input(buf);
  }
  return p;
}

void release(void* p) {
  if (p) cudaFree(p);  // never throws: called from destructors
}

void* alloc_pinned(uint64_t bytes) {
  void* p = nullptr;
  if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
    cudaGetLastError();
    fail_input("cannot allocate " + std::to_string(bytes) + " bytes of page-locked host memory");
  }
  return p;
}

void release_pinned(void* p) {
  if (p) cudaFreeHost(p);
}

// Large host->device copies go through two pinned buffers so that reading the (mapped) source and
// the DMA overlap; small ones go straight.
void to_device(void* dst, const void* src, uint64_t bytes) {
  constexpr uint64_t kChunk = 64ull << 20;
  if (bytes <= kChunk) {
    R1_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
    R1_CUDA_CHECK(cudaStreamSynchronize(stream()));
    return;
  }
  static std::mutex mu;
  static void* pinned[2] = {nullptr, nullptr};
  static cudaEvent_t done[2];
  std::lock_guard<std::mutex> lk(mu);
  if (!pinned[0])
    for (int i = 0; i < 2; i++) {
      R1_CUDA_CHECK(cudaMallocHost(&pinned[i], kChunk));
      R1_CUDA_CHECK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
      R1_CUDA_CHECK(cudaEventRecord(done[i], stream()));
    }
  for (uint64_t off = 0, i = 0; off < bytes; off += kChunk, i ^= 1) {
    const uint64_t n = std::min(kChunk, bytes - off);
    R1_CUDA_CHECK(cudaEventSynchronize(done[i]));  // the copy that last used this buffer is done
    std::memcpy(pinned[i], static_cast<const uint8_t*>(src) + off, n);
    R1_CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(dst) + off, pinned[i], n, cudaMemcpyHostToDevice, stream()));
    R1_CUDA_CHECK(cudaEventRecord(done[i], stream()));
  }
  R1_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void to_device_async(void* dst, const void* src, uint64_t bytes) {
  R1_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}

void to_host(void* dst, const void* src, uint64_t bytes) {
  R1_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  R1_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void fill_bytes(void* p, int byte, uint64_t bytes) {
  R1_CUDA_CHECK(cudaMemsetAsync(p, byte, bytes, stream()));
  R1_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void synchronize() { R1_CUDA_CHECK(cudaStreamSynchronize(stream())); }

struct Graph {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
};

void begin_capture() { R1_CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal)); }

Graph* end_capture() {
  auto* g = new Graph;
  R1_CUDA_CHECK(cudaStreamEndCapture(stream(), &g->g));
  R1_CUDA_CHECK(cudaGraphInstantiate(&g->exec, g->g, 0));
  return g;
}

void replay(Graph* g) { R1_CUDA_CHECK(cudaGraphLaunch(g->exec, stream())); }

void destroy(Graph* g) {
  if (!g) return;
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->g) cudaGraphDestroy(g->g);
  delete g;
}

namespace {
// Spins for `ns` nanoseconds of device time (the global timer), so the host can queue work behind it.
__global__ void k_delay(uint64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

struct Profile {
  bool on = false;
  std::vector<cudaEvent_t> events;  // events[0] at the start, then one per mark
  std::vector<Kind> kinds;
  std::vector<cudaEvent_t> pool;    // reused between profiles
  cudaEvent_t next() {
    if (events.size() < pool.size()) return pool[events.size()];
    cudaEvent_t e;
    R1_CUDA_CHECK(cudaEventCreate(&e));
    pool.push_back(e);
    return e;
  }
};
Profile& profile() {
  static Profile p;
  return p;
}
bool capturing() {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  R1_CUDA_CHECK(cudaStreamIsCapturing(stream(), &st));
  return st != cudaStreamCaptureStatusNone;
}
}  // namespace

const char* kind_name(Kind k) {
  static const char* names[] = {"embed", "norm",   "qkv",     "rope/kv", "attention", "quantize",
                                "o_proj", "gate/up", "down", "lm_head", "argmax"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(Kind::Count), "a name per kind");
  return names[int(k)];
}

void profile_start(float delay_ms) {
  Profile& p = profile();
  p.events.clear();
  p.kinds.clear();
  k_delay<<<1, 1, 0, stream()>>>(uint64_t(delay_ms * 1e6f));
  R1_CUDA_LAUNCHED("delay");
  const cudaEvent_t e = p.next();
  R1_CUDA_CHECK(cudaEventRecord(e, stream()));
  p.events.push_back(e);
  p.on = true;
}

void profile_mark(Kind k) {
  Profile& p = profile();
  if (!p.on || capturing()) return;
  const cudaEvent_t e = p.next();
  R1_CUDA_CHECK(cudaEventRecord(e, stream()));
  p.events.push_back(e);
  p.kinds.push_back(k);
}

std::vector<ProfileSpan> profile_stop() {
  Profile& p = profile();
  p.on = false;
  R1_CUDA_CHECK(cudaStreamSynchronize(stream()));
  std::vector<ProfileSpan> out;
  for (size_t i = 0; i < p.kinds.size(); i++) {
    float ms = 0;
    R1_CUDA_CHECK(cudaEventElapsedTime(&ms, p.events[i], p.events[i + 1]));
    out.push_back({p.kinds[i], ms});
  }
  return out;
}

struct Timer {
  cudaEvent_t a, b;
};

Timer* timer_start() {
  auto* t = new Timer;
  R1_CUDA_CHECK(cudaEventCreate(&t->a));
  R1_CUDA_CHECK(cudaEventCreate(&t->b));
  R1_CUDA_CHECK(cudaEventRecord(t->a, stream()));
  return t;
}

float timer_stop(Timer* t) {
  R1_CUDA_CHECK(cudaEventRecord(t->b, stream()));
  R1_CUDA_CHECK(cudaEventSynchronize(t->b));
  float ms = 0;
  R1_CUDA_CHECK(cudaEventElapsedTime(&ms, t->a, t->b));
  cudaEventDestroy(t->a);
  cudaEventDestroy(t->b);
  delete t;
  return ms;
}

}  // namespace r1::cuda
