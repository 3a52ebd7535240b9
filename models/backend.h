// Which backend runs a model, and the sessions it makes: the one place that knows the backends.
// The CPU runs everything; CUDA runs a model when this binary was built with it, a GPU is usable
// here, and its kernels take the model's architecture and the KV format asked for.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "quant/kv_format.h"
#include "core/session.h"

namespace r1 {

struct Model;
class ThreadPool;

// requested: "auto", "cpu" or "cuda"; returns "cpu" or "cuda". "cuda" that cannot run is a usage
// error saying why; "auto" that passes over a GPU says why on stderr.
std::string choose_device(const std::string& requested, const Model& m, KvFormat kv);
// Bytes of the weights copied to a device so far, of the total (for a progress line).
using UploadProgress = std::function<void(uint64_t done, uint64_t total)>;
// One sequence, or n_slots of them in one pass, on the chosen device (the pool: CPU threads).
std::unique_ptr<Session> make_session(const std::string& device, const Model& m, int64_t ctx, KvFormat kv,
                                      ThreadPool& pool, const UploadProgress& on_upload = {});
std::unique_ptr<BatchSession> make_batch(const std::string& device, const Model& m, int64_t n_slots, int64_t ctx,
                                         KvFormat kv, ThreadPool& pool, const UploadProgress& on_upload = {});

}  // namespace r1
