#include "quant/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/json_input.h"
#include "quant/half.h"

namespace fs = std::filesystem;

namespace r1 {

uint64_t StTensor::numel() const {
  uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

MappedFile::MappedFile(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail_input(path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail_input(path + ": not a regular file");
  }
  size_ = uint64_t(st.st_size);
  if (size_ > 0) {
    void* m = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (m == MAP_FAILED) {
      ::close(fd_);
      fail_input(path + ": mmap failed: " + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(m);
    madvise(m, size_, MADV_SEQUENTIAL);
  }
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::release(const uint8_t* p, uint64_t n) const {
  const uint64_t page = 4096;
  uint64_t b = uint64_t(p - data_), e = b + n;
  b = (b + page - 1) / page * page;
  e = e / page * page;
  if (e > b) madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_DONTNEED);
}

static std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input(path + ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Safetensors Safetensors::open(const std::string& path) {
  Safetensors st;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    fs::path dir(path);
    if (fs::exists(dir / "model.safetensors.index.json")) {
      std::string idx_path = (dir / "model.safetensors.index.json").string();
      auto idx = parse_json(read_text(idx_path), idx_path);
      if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
        fail_input(idx_path + ": not a valid safetensors index");
      std::set<std::string> shards;
      for (auto& [name, file] : idx["weight_map"].items()) {
        if (!file.is_string()) fail_input(idx_path + ": bad weight_map entry for " + name);
        std::string f = file.get<std::string>();
        if (f.find('/') != std::string::npos || f == ".." ) fail_input(idx_path + ": shard names must be plain file names");
        shards.insert(f);
      }
      for (auto& s : shards) st.add_file((dir / s).string(), s);
      for (auto& [name, file] : idx["weight_map"].items()) {
        auto it = st.tensors_.find(name);
        if (it == st.tensors_.end()) fail_input(idx_path + ": tensor " + name + " is not in " + file.get<std::string>());
        if (fs::path(it->second.file).filename() != file.get<std::string>())
          fail_input(idx_path + ": tensor " + name + " found in another shard than the index says");
      }
    } else if (fs::exists(dir / "model.safetensors")) {
      st.add_file((dir / "model.safetensors").string(), "");
    } else {
      fail_input(path + ": no model.safetensors or model.safetensors.index.json");
    }
  } else {
    st.add_file(path, "");
  }
  return st;
}

void Safetensors::add_file(const std::string& path, const std::string&) {
  auto mf = std::make_unique<MappedFile>(path);
  const uint64_t size = mf->size();
  auto bad = [&](const std::string& why) { fail_input(path + ": " + why); };
  if (size < 8) bad("too small to be a safetensors file");
  uint64_t hlen;
  std::memcpy(&hlen, mf->data(), 8);
  if (hlen > size - 8 || hlen > (100u << 20)) bad("header length out of range (truncated or not safetensors)");
  auto hdr = parse_json(std::string_view(reinterpret_cast<const char*>(mf->data()) + 8, hlen), path + ": header");
  if (!hdr.is_object()) bad("header is not a JSON object");
  const uint64_t base = 8 + hlen, payload = size - base;
  for (auto& [name, v] : hdr.items()) {
    if (name == "__metadata__") continue;
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad("tensor " + name + ": incomplete header entry");
    StTensor t;
    t.name = name;
    t.file = path;
    if (!v["dtype"].is_string()) bad("tensor " + name + ": bad dtype");
    std::string dt = v["dtype"].get<std::string>();
    uint64_t esz;
    if (dt == "F32") { t.dtype = StDtype::F32; esz = 4; }
    else if (dt == "F16") { t.dtype = StDtype::F16; esz = 2; }
    else if (dt == "BF16") { t.dtype = StDtype::BF16; esz = 2; }
    else bad("tensor " + name + ": unsupported dtype " + dt + " (r1 reads F32, F16, BF16)");
    if (!v["shape"].is_array() || v["shape"].size() > 4) bad("tensor " + name + ": bad shape");
    uint64_t numel = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) bad("tensor " + name + ": bad shape");
      t.shape.push_back(d.get<uint64_t>());
      numel = checked_mul(numel, t.shape.back(), "safetensors shape");
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad("tensor " + name + ": bad data_offsets");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > payload) bad("tensor " + name + ": data out of bounds (truncated file?)");
    if (e - b != checked_mul(numel, esz, "safetensors size")) bad("tensor " + name + ": byte size does not match shape");
    t.data = mf->data() + base + b;
    t.bytes = e - b;
    if (tensors_.count(name)) bad("tensor " + name + " appears twice");
    file_of_[name] = mf.get();
    tensors_[name] = std::move(t);
  }
  files_.push_back(std::move(mf));
}

const StTensor* Safetensors::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void Safetensors::release(const StTensor& t) const {
  auto it = file_of_.find(t.name);
  if (it != file_of_.end()) it->second->release(t.data, t.bytes);
}

void Safetensors::to_float(const StTensor& t, uint64_t first, uint64_t n, float* out) {
  switch (t.dtype) {
    case StDtype::F32: std::memcpy(out, t.data + first * 4, n * 4); break;
    case StDtype::F16: f16_bytes_to_f32(t.data + first * 2, n, out); break;
    case StDtype::BF16: bf16_bytes_to_f32(t.data + first * 2, n, out); break;
  }
}

}  // namespace r1
