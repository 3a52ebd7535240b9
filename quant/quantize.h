// Float -> packed weight formats. Quantized formats choose each group's scale to minimize the
// squared reconstruction error, not from the group's maximum alone.
#pragma once
#include <cstdint>
#include "quant/formats.h"

namespace r1 {

// Writes rows [r0, r1) of a [rows, cols] float matrix into `out`, a buffer of
// tensor_bytes(f, rows, cols) bytes laid out as formats.h describes. Row ranges may be written
// concurrently by different threads.
void quantize_rows(Format f, const float* w, int64_t rows, int64_t cols, int64_t r0, int64_t r1, void* out);

// The whole matrix (a 1-D tensor is rows = 1).
void quantize_matrix(Format f, const float* w, int64_t rows, int64_t cols, void* out);

// Plain absmax q4 on the same codebook and groups: the baseline the optimized scale must beat.
void quantize_q4_absmax_rows(const float* w, int64_t rows, int64_t cols, void* out);

// Quantize one group of 32 to the q4 codebook: returns the f16 scale bits, writes 16 bytes.
uint16_t quantize_q4_group(const float* x, uint8_t* nib16);
// The same for q5: the low nibbles (16 bytes) and the high-bit word (4 bytes).
uint16_t quantize_q5_group(const float* x, uint8_t* nib16, uint8_t* hbits4);

// A q5 matrix as the q8 matrix of the same values (levels and scales unchanged, so exact):
// for kernels that have no q5 path. out: tensor_bytes(Q8, rows, cols) bytes.
void q5_to_q8(const WeightView& q5, void* out);

}  // namespace r1
