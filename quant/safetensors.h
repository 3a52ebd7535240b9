// Reading Hugging Face safetensors checkpoints (one file or shards with an index), mapped
// read-only. Headers are untrusted: every offset and size is checked before use.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace r1 {

enum class StDtype { F32, F16, BF16 };

struct StTensor {
  std::string name, file;
  StDtype dtype;
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
  uint64_t numel() const;
};

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // fail_input on error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  // Drop resident pages of [p, p + n) once consumed, so streaming a checkpoint does not grow RSS.
  void release(const uint8_t* p, uint64_t n) const;

 private:
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

class Safetensors {
 public:
  // A directory with model.safetensors or model.safetensors.index.json, or one .safetensors file.
  static Safetensors open(const std::string& path);
  const std::map<std::string, StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;
  void release(const StTensor& t) const;
  // Converts elements [first, first + n) of t to float.
  static void to_float(const StTensor& t, uint64_t first, uint64_t n, float* out);

 private:
  void add_file(const std::string& path, const std::string& only_from_index);
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, StTensor> tensors_;
  std::map<std::string, const MappedFile*> file_of_;
};

}  // namespace r1
