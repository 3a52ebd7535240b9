#include "models/backend.h"

#include <cstdio>

#include "core/error.h"
#include "models/cuda_batch.h"
#include "models/cpu_backend.h"

namespace r1 {

std::string choose_device(const std::string& requested, const Model& m, KvFormat kv) {
  if (requested == "cpu") return "cpu";
  // The GPU keeps f16, or q8 with the fused kernels: said before looking for a GPU.
  const bool gpu_kv = kv == KvFormat::F16 || (kv == KvFormat::Q8 && cuda_kernels() == CudaKernels::Fused);
  const std::string kv_name = kv_format_name(kv);
  if (!gpu_kv && requested == "cuda")
    fail_usage("--device cuda keeps an f16 KV cache" + std::string(kv == KvFormat::Q8 ? " (q8 with R1_CUDA_KERNELS=fused)" : "") +
               "; --kv " + kv_name + " needs --device cpu");
  std::string why;
  if (!cuda_available(&why)) {
    if (requested == "cuda") fail_usage("--device cuda: " + why + "; use --device cpu");
    return "cpu";
  }
  if (!gpu_kv) why = "--kv " + kv_name + " (the GPU keeps an f16 KV cache)";
  else if ((why = cuda_model_problem(m)).empty()) why = cuda_kv_problem(m, kv);
  if (why.empty()) return "cuda";
  if (requested == "cuda") fail_usage("--device cuda: " + why + "; use --device cpu");
  std::fprintf(stderr, "r1: running on the CPU: %s\n", why.c_str());  // auto, with a GPU there: say why it is not used
  return "cpu";
}

std::unique_ptr<Session> make_session(const std::string& device, const Model& m, int64_t ctx, KvFormat kv,
                                      ThreadPool& pool, const UploadProgress& on_upload) {
#ifdef R1_HAVE_CUDA
  if (device == "cuda") return std::make_unique<CudaSession>(m, ctx, kv, on_upload);
#endif
  if (device != "cpu") fail_usage("internal: no backend '" + device + "'");
  return std::make_unique<CpuSession>(m, ctx, kv, pool);
}

std::unique_ptr<BatchSession> make_batch(const std::string& device, const Model& m, int64_t n_slots, int64_t ctx,
                                         KvFormat kv, ThreadPool& pool, const UploadProgress& on_upload) {
#ifdef R1_HAVE_CUDA
  if (device == "cuda") return std::make_unique<CudaBatch>(m, n_slots, ctx, kv, on_upload);
#endif
  if (device != "cpu") fail_usage("internal: no backend '" + device + "'");
  return std::make_unique<CpuBatch>(m, n_slots, ctx, kv, pool);
}

}  // namespace r1
