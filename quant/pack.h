// `r1 pack`: a Hugging Face checkpoint directory -> one .r1m file.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "core/schema.h"
#include "quant/formats.h"

namespace r1 {

struct PackOptions {
  std::string src, out;
  Format quant = Format::BF16;
  int threads = 0;        // 0: physical cores
  // What packing reports, for the caller to show (null: nothing): each quantized tensor's
  // reconstruction error (relative RMS), and after each tensor the tensors and bytes written.
  std::function<void(const std::string& name, Format fmt, double rel_rms)> on_error;
  std::function<void(size_t done, size_t total, uint64_t bytes_done, uint64_t bytes_total)> on_progress;
  // Called with the bytes of tensor data once the layout is known, before any is written (it
  // may refuse, e.g. for want of disk space: the output is then left untouched).
  std::function<void(uint64_t bytes)> before_write;
};

// Format each tensor gets under a recipe: 1-D tensors f32; under q4 and q5 the matrices that
// matter most for quality per byte get more bits (see pack.cpp); a matrix whose rows do not
// split into groups falls back to bf16.
Format recipe_format(Format quant, const ModelTensor& t, bool tied);
// The same by Hugging Face name and shape (a name outside the schema: a plain matrix).
Format recipe_format(Format quant, const std::string& name, uint64_t ndim, uint64_t cols, bool tied);
// The mix of formats a recipe makes, in words, for the file's provenance (null: one format).
const char* recipe_mix(Format quant);

void pack_checkpoint(const PackOptions& opt);

}  // namespace r1
