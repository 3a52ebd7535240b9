// Pieces of `r1 pack` shared by its two sources (a Hugging Face checkpoint, a GGUF file), and
// the GGUF entry points.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/r1m.h"
#include "quant/pack.h"

namespace r1 {

// fail_input on a NaN, an infinity, or a value the target format cannot hold, naming the
// tensor and element (first = index of x[0] in the tensor).
void check_range(const std::string& name, Format fmt, const float* x, uint64_t n, uint64_t first);

// Writes rows [r0, r0 + n) of tensor i, as a [rows, cols] float matrix (1-D: one row), to out.
using RowSource = std::function<void(size_t i, uint64_t r0, uint64_t n, float* out)>;

// Streams every spec through `rows` in chunks of about 16M elements, checks ranges, quantizes
// to the spec's format, reports per-tensor reconstruction error and progress (opt.on_error, opt.on_progress),
// stores it under meta["provenance"]["rel_rms"] and finishes the .r1m at opt.out.
// `done(i)` runs after tensor i is written (to release source pages).
void write_packed(const PackOptions& opt, const std::vector<TensorSpec>& specs, nlohmann::json meta,
                  const RowSource& rows, const std::function<void(size_t)>& done = {});

// ------------------------------------------------------------------------------ GGUF

class GgufModel;

// The format a GGUF keeps its size class in, by where most of its weights are: q4 for
// Q2_K..Q4_K and Q4_0/Q4_1, q5 for Q5_0/Q5_1/Q5_K, q8 for Q6_K/Q8_0, bf16 for F16/BF16/F32.
Format gguf_size_class(const GgufModel& m);

// `r1 pack model.gguf`: opt.src is the GGUF (the first part of a split one). Without an
// explicit quant the output keeps the source's size class.
void pack_gguf(const PackOptions& opt, bool quant_given);

// HF-style tokenizer.json and tokenizer_config.json texts synthesized from the GGUF's
// tokenizer.ggml.* metadata (byte-level BPE only), as pack stores them.
struct GgufTokenizerFiles {
  std::string tokenizer_json, tokenizer_config_json;
};
GgufTokenizerFiles gguf_tokenizer_files(const GgufModel& m);

bool is_gguf_path(const std::string& path);

}  // namespace r1
