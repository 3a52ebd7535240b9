// The .r1m packed model file: one file, memory-mapped read-only and used in place.
//
//   [FileHeader 128 B][TensorEntry 128 B x n][tensor data ...][metadata: zstd(JSON)]
//
// Tensor data starts at 64-byte aligned offsets (4096 for tensors of 1 MiB or more), so SIMD
// loads and page-granular prefetch/upload work straight from the mapping. The metadata JSON holds
// the model config, the tokenizer files, chat template, generation defaults and provenance.
// The header carries an xxHash64 of itself and one of the table + metadata; each tensor entry
// carries the xxHash64 of its bytes (checked by `r1 verify`, not at open).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quant/formats.h"

namespace r1 {

constexpr char kR1Magic[8] = {'R', '1', 'M', 'O', 'D', 'E', 'L', '\0'};
constexpr uint32_t kR1Version = 1;
constexpr uint32_t kEndianCheck = 0x01020304;
constexpr uint64_t kMaxMetaBytes = 1ull << 30;  // decompressed metadata cap
constexpr int kMaxDims = 4;

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t endian;          // kEndianCheck as written; reads differently on a foreign byte order
  uint64_t file_size;
  uint64_t table_offset;    // = sizeof(FileHeader)
  uint64_t n_tensors;
  uint64_t data_offset;     // first byte after the table (page aligned)
  uint64_t meta_offset;     // zstd frame
  uint64_t meta_size;       // compressed bytes
  uint64_t meta_raw_size;   // JSON bytes
  uint64_t table_meta_hash; // xxh64(table bytes, then metadata bytes)
  uint64_t header_hash;     // xxh64 of this header with header_hash = 0
  uint8_t reserved[40];
};
static_assert(sizeof(FileHeader) == 128, "header is 128 bytes");

struct TensorEntry {
  char name[64];            // NUL-terminated
  uint32_t format;          // r1::Format
  uint32_t ndim;            // 1 or 2 for models; up to kMaxDims
  uint64_t shape[kMaxDims]; // outermost first: [rows, cols]; unused dims 0
  uint64_t offset;          // from file start
  uint64_t bytes;
  uint64_t hash;            // xxh64 of the bytes
};
static_assert(sizeof(TensorEntry) == 128, "tensor entry is 128 bytes");

struct TensorInfo {
  std::string name;
  Format fmt = Format::F32;
  std::vector<uint64_t> shape;
  uint64_t offset = 0, bytes = 0, hash = 0;
  const uint8_t* data = nullptr;  // into the mapping

  uint64_t numel() const;
  uint64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  uint64_t cols() const { return shape.back(); }
  WeightView view() const { return make_view(fmt, rows(), cols(), data); }
};

class R1File {
 public:
  // Maps and validates the header, table and metadata (bounds, overlaps, alignment, sizes
  // consistent with shapes) without reading tensor bytes. Throws r1::Error with a clear reason.
  static std::unique_ptr<R1File> open(const std::string& path);
  ~R1File();

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const nlohmann::json& meta() const { return meta_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& get(const std::string& name) const;  // fail_input when missing
  // xxh64 of header + table: the model's identity (for saved sessions).
  uint64_t identity() const { return identity_; }
  const uint8_t* base() const { return base_; }

  // Recomputes every tensor hash; returns the index of the first bad tensor or -1.
  int64_t verify(const std::function<void(size_t done, size_t total)>& progress = {}) const;

 private:
  R1File() = default;
  std::string path_;
  int fd_ = -1;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0, identity_ = 0;
  nlohmann::json meta_;
  std::vector<TensorInfo> tensors_;
};

struct TensorSpec {
  std::string name;
  Format fmt;
  std::vector<uint64_t> shape;
};

// Writes an .r1m atomically: a temporary file beside the target (core/out_file.h: a symlink's
// target, never a device or directory), renamed into place by finish(). Destroying an
// unfinished writer removes the temporary, so a failed or interrupted pack leaves no .r1m
// behind. Tensors may be written in any order and from several threads.
class R1Writer {
 public:
  R1Writer(const std::string& path, std::vector<TensorSpec> specs);
  ~R1Writer();
  size_t count() const { return entries_.size(); }
  uint64_t bytes(size_t i) const { return entries_[i].bytes; }
  // Whole tensor at once.
  void write_tensor(size_t i, const void* data, uint64_t bytes);
  // Or in sequential pieces (for tensors too large to hold in memory): begin, append..., end.
  void begin_tensor(size_t i);
  void append(size_t i, const void* data, uint64_t bytes);
  void end_tensor(size_t i);
  void finish(const nlohmann::json& meta);
  void finish_json_text(const std::string& meta_json);  // the metadata as JSON text (fuzz seeds)

 private:
  void pwrite_all(const void* p, uint64_t n, uint64_t off);
  std::string path_, tmp_;
  int fd_ = -1;
  bool done_ = false;
  int slot_ = -1;  // cleanup registration
  std::vector<TensorEntry> entries_;
  std::vector<uint8_t> written_;  // not vector<bool>: tensors may be written from several threads
  std::vector<uint64_t> filled_;
  std::vector<void*> hashers_;  // XXH64 states of tensors being appended
  uint64_t data_offset_ = 0, data_end_ = 0;
};

}  // namespace r1
