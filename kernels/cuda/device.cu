// The device: one stream, allocations that say what did not fit, copies through pinned staging,
// graphs and event timers.
#include <cstdio>
#include <cstring>
#include <mutex>

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
  if (p.major < 7) {  // dp4a and the f16 loads need sm_61+, and this build targets newer chips
    if (why) *why = std::string(p.name) + " (compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) + ") is too old";
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
