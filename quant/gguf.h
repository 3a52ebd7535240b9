// Reading GGUF files (llama.cpp's model format, versions 2 and 3, little-endian), mapped
// read-only. The file is untrusted: every count, length, offset and shape is checked against
// the bytes that remain before anything is allocated or read from it.
//
//   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x      { string key | u32 type | value }          (arrays: u32 elem type | u64 n | values)
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset }
//   padding to general.alignment (default 32) | tensor data (offsets relative to here)
//
// Strings are u64 length + bytes (no NUL). ne[0] is the innermost (contiguous) dimension.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace r1 {

class MappedFile;

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

// ggml tensor types r1 can read (values as in ggml.h).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};

struct GgmlTypeInfo {
  const char* name;
  uint32_t block;  // elements per block
  uint32_t bytes;  // bytes per block
};
// nullptr for a type r1 does not read.
const GgmlTypeInfo* ggml_type_info(uint32_t type);

// One metadata value. Scalars fill the numeric fields (an integer also sets `f`, a float also
// sets `i` truncated); arrays of scalars fill `ints`/`reals`, arrays of strings `strs`, nested
// arrays `items`.
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem = GgufType::U8;  // arrays
  int64_t i = 0;
  double f = 0;
  std::string str;
  uint64_t count = 0;  // arrays: number of elements
  std::vector<int64_t> ints;
  std::vector<double> reals;
  std::vector<std::string> strs;
  std::vector<GgufValue> items;

  bool is_int() const;  // any integer type or bool
  bool is_num() const { return is_int() || type == GgufType::F32 || type == GgufType::F64; }
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<uint64_t> ne;   // innermost first, as in the file
  uint64_t offset = 0;        // from the file's data section
  uint64_t bytes = 0;
  uint64_t numel = 0;
  const uint8_t* data = nullptr;  // into the file's bytes
  int part = 0;                   // which file of a split model
};

// One parsed GGUF image. Holds pointers into `data`, which must outlive it.
struct GgufFile {
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // start of the tensor data section
  std::map<std::string, GgufValue> kv;
  std::vector<GgufTensor> tensors;  // in file order

  const GgufValue* find(const std::string& key) const;
};

struct GgufParseOptions {
  // Accept tensors whose data lies past the end of the bytes given (metadata-only reads of a
  // truncated download); their `data` is null.
  bool allow_truncated_data = false;
};

// Parses a GGUF image from memory; throws r1::Error (Input) naming `origin` and the problem.
GgufFile gguf_parse(const uint8_t* data, uint64_t size, const std::string& origin, const GgufParseOptions& opt = {});

// A GGUF model on disk, possibly split (name-00001-of-0000N.gguf with split.* keys): the first
// part's path finds the rest. Metadata comes from the first part; tensors from all.
class GgufModel {
 public:
  static GgufModel open(const std::string& path, const GgufParseOptions& opt = {});
  GgufModel(GgufModel&&) noexcept;
  GgufModel& operator=(GgufModel&&) noexcept;
  ~GgufModel();

  const GgufFile& meta() const { return parts_.front(); }
  const GgufValue* find(const std::string& key) const { return meta().find(key); }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(const std::string& name) const;
  const std::vector<std::string>& paths() const { return paths_; }
  // Drop resident pages of a consumed tensor (streaming keeps RSS bounded).
  void release(const GgufTensor& t) const;

  // Typed metadata getters: fail_input naming the key when missing or of the wrong type.
  std::string get_str(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_num(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_num(const std::string& key, double dflt) const;

 private:
  GgufModel() = default;
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<GgufFile> parts_;
  std::map<std::string, GgufTensor> tensors_;
};

// Dequantizes `n` elements (a whole number of blocks) of a tensor of type t starting at block
// boundary `src` into `out`. Quant layouts: see gguf_dequant.cpp.
void gguf_dequantize(GgmlType t, const uint8_t* src, uint64_t n, float* out);

}  // namespace r1
