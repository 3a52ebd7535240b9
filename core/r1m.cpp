#include "core/r1m.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/json_input.h"
#include "core/out_file.h"

namespace r1 {

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

static uint64_t tensor_alignment(uint64_t bytes) { return bytes >= (1u << 20) ? 4096 : 64; }

// ---------------------------------------------------------------------------------- reading

std::unique_ptr<R1File> R1File::open(const std::string& path) {
  std::unique_ptr<R1File> f(new R1File());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) fail_input(path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(f->fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail_input(path + ": not a regular file");
  f->size_ = uint64_t(st.st_size);
  if (f->size_ < sizeof(FileHeader)) fail_input(path + ": too small to be an .r1m file (truncated?)");
  void* m = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, f->fd_, 0);
  if (m == MAP_FAILED) fail_input(path + ": mmap failed: " + std::strerror(errno));
  f->base_ = static_cast<const uint8_t*>(m);
  // Start reading the whole file in now (asynchronous readahead), so the first token does not
  // wait on the disk page by page. Advisory: failure changes nothing.
  (void)madvise(m, f->size_, MADV_WILLNEED);

  FileHeader h;
  std::memcpy(&h, f->base_, sizeof h);
  auto bad = [&](const std::string& why) -> void { fail_input(path + ": " + why); };
  if (std::memcmp(h.magic, kR1Magic, 8) != 0)
    bad("not an .r1m file (bad magic); r1 pack makes one from a Hugging Face checkpoint or a GGUF file");
  if (h.endian != kEndianCheck) bad("written on a machine of the other byte order");
  if (h.version != kR1Version)
    bad("format version " + std::to_string(h.version) + ", this r1 reads version " + std::to_string(kR1Version));
  FileHeader hz = h;
  hz.header_hash = 0;
  if (XXH64(&hz, sizeof hz, 0) != h.header_hash) bad("header checksum mismatch (corrupted file)");
  if (h.file_size != f->size_)
    bad("file is " + std::to_string(f->size_) + " bytes, header says " + std::to_string(h.file_size) +
        " (truncated or appended to)");
  if (h.table_offset != sizeof(FileHeader)) bad("bad table offset");
  if (h.n_tensors == 0 || h.n_tensors > 1'000'000) bad("bad tensor count");
  uint64_t table_end = checked_add(h.table_offset, checked_mul(h.n_tensors, sizeof(TensorEntry), "table"), "table");
  if (table_end > h.data_offset || h.data_offset > f->size_) bad("tensor table out of bounds");
  if (h.meta_offset < h.data_offset || checked_add(h.meta_offset, h.meta_size, "metadata") != f->size_)
    bad("metadata out of bounds");
  if (h.meta_raw_size > kMaxMetaBytes) bad("metadata too large");

  XXH64_state_t* st64 = XXH64_createState();
  XXH64_reset(st64, 0);
  XXH64_update(st64, f->base_ + h.table_offset, table_end - h.table_offset);
  XXH64_update(st64, f->base_ + h.meta_offset, h.meta_size);
  uint64_t tm = XXH64_digest(st64);
  XXH64_freeState(st64);
  if (tm != h.table_meta_hash) bad("tensor table or metadata checksum mismatch (corrupted file)");
  f->identity_ = XXH64(f->base_, table_end, 0);

  // Metadata
  unsigned long long raw = ZSTD_getFrameContentSize(f->base_ + h.meta_offset, h.meta_size);
  if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN || raw != h.meta_raw_size)
    bad("metadata is not a valid zstd frame");
  std::string js(size_t(raw), '\0');
  size_t got = ZSTD_decompress(js.data(), js.size(), f->base_ + h.meta_offset, h.meta_size);
  if (ZSTD_isError(got) || got != raw) bad("metadata does not decompress");
  if (json_too_deep(js)) bad("metadata nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  f->meta_ = nlohmann::json::parse(js, nullptr, false);
  if (f->meta_.is_discarded() || !f->meta_.is_object()) bad("metadata is not a JSON object");

  // Tensor table
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (uint64_t i = 0; i < h.n_tensors; i++) {
    TensorEntry e;
    std::memcpy(&e, f->base_ + h.table_offset + i * sizeof(TensorEntry), sizeof e);
    if (std::memchr(e.name, 0, sizeof e.name) == nullptr || e.name[0] == 0) bad("tensor " + std::to_string(i) + " has a bad name");
    TensorInfo t;
    t.name = e.name;
    auto tbad = [&](const std::string& why) { bad("tensor " + t.name + ": " + why); };
    if (e.format >= kFormatCount) tbad("unknown format " + std::to_string(e.format));
    if (e.ndim < 1 || e.ndim > 2) tbad("unsupported rank " + std::to_string(e.ndim));
    t.fmt = Format(e.format);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < e.ndim; d++) {
      if (e.shape[d] == 0 || e.shape[d] > (1ull << 32)) tbad("bad dimension");
      t.shape.push_back(e.shape[d]);
      numel = checked_mul(numel, e.shape[d], "tensor shape");
    }
    for (uint32_t d = e.ndim; d < uint32_t(kMaxDims); d++)
      if (e.shape[d] != 0) tbad("bad dimension");
    if (numel > (1ull << 40)) tbad("too many elements");
    if (!format_fits(t.fmt, t.cols())) tbad("columns not a multiple of the group size");
    if (e.ndim == 1 && is_quantized(t.fmt)) tbad("1-D tensors must not be quantized");
    if (e.bytes != tensor_bytes(t.fmt, t.rows(), t.cols())) tbad("byte count does not match shape and format");
    if (e.offset % 64 != 0) tbad("misaligned");
    if (e.offset < h.data_offset || checked_add(e.offset, e.bytes, "tensor") > h.meta_offset) tbad("out of bounds");
    t.offset = e.offset;
    t.bytes = e.bytes;
    t.hash = e.hash;
    t.data = f->base_ + e.offset;
    spans.push_back({e.offset, e.offset + e.bytes});
    f->tensors_.push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); i++)
    if (spans[i].first < spans[i - 1].second) bad("tensors overlap");
  // Sorted names, not all pairs: a table may hold up to a million entries.
  std::vector<const std::string*> names;
  names.reserve(f->tensors_.size());
  for (auto& t : f->tensors_) names.push_back(&t.name);
  std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
  for (size_t i = 1; i < names.size(); i++)
    if (*names[i] == *names[i - 1]) bad("duplicate tensor " + *names[i]);
  return f;
}

R1File::~R1File() {
  if (base_) munmap(const_cast<uint8_t*>(base_), size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* R1File::find(const std::string& name) const {
  for (auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo& R1File::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail_input(path_ + ": missing tensor " + name);
  return *t;
}

int64_t R1File::verify(const std::function<void(size_t, size_t)>& progress) const {
  for (size_t i = 0; i < tensors_.size(); i++) {
    if (XXH64(tensors_[i].data, tensors_[i].bytes, 0) != tensors_[i].hash) return int64_t(i);
    if (progress) progress(i + 1, tensors_.size());
  }
  return -1;
}

// ---------------------------------------------------------------------------------- writing

R1Writer::R1Writer(const std::string& path, std::vector<TensorSpec> specs) : path_(output_target(path)) {
  // Everything that can be refused is checked before the temporary file exists: a constructor
  // that throws never runs the destructor, which is what removes the temporary.
  if (specs.empty() || specs.size() > 1'000'000) fail_input("an .r1m file holds 1 to 1000000 tensors");
  uint64_t table_end = sizeof(FileHeader) + specs.size() * sizeof(TensorEntry);
  data_offset_ = align_up(table_end, 4096);
  uint64_t off = data_offset_;
  for (auto& s : specs) {
    TensorEntry e{};
    if (s.name.size() >= sizeof e.name) fail_input("tensor name too long: " + s.name);
    if (s.shape.empty() || s.shape.size() > 2) fail_input("tensor " + s.name + ": unsupported rank");
    for (auto d : s.shape)
      if (d == 0 || d > (1ull << 32)) fail_input("tensor " + s.name + ": bad dimension");
    std::memcpy(e.name, s.name.c_str(), s.name.size());
    e.format = uint32_t(s.fmt);
    e.ndim = uint32_t(s.shape.size());
    for (size_t d = 0; d < s.shape.size(); d++) e.shape[d] = s.shape[d];
    uint64_t rows = s.shape.size() == 2 ? s.shape[0] : 1, cols = s.shape.back();
    if (!format_fits(s.fmt, cols)) fail_input("tensor " + s.name + ": cannot store in " + format_name(s.fmt));
    e.bytes = tensor_bytes(s.fmt, rows, cols);
    off = align_up(off, tensor_alignment(e.bytes));
    e.offset = off;
    off += e.bytes;
    entries_.push_back(e);
  }
  data_end_ = off;
  written_.assign(entries_.size(), false);
  filled_.assign(entries_.size(), 0);
  hashers_.assign(entries_.size(), nullptr);

  install_cleanup_handlers();
  remove_stale_temps(path_);
  tmp_ = temp_path(path_);
  slot_ = register_temp(tmp_);  // before the file exists, so a signal cannot slip in between
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    int err = errno;
    unregister_temp(slot_);
    fail_input("cannot create " + tmp_ + ": " + std::strerror(err));
  }
}

R1Writer::~R1Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_.c_str());
  unregister_temp(slot_);
  for (void* h : hashers_)
    if (h) XXH64_freeState(static_cast<XXH64_state_t*>(h));
}

void R1Writer::pwrite_all(const void* p, uint64_t n, uint64_t off) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::pwrite(fd_, c, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = w < 0 ? errno : ENOSPC;
      fail_input("writing " + tmp_ + ": " + std::strerror(err) + (err == ENOSPC || err == EFBIG ? " (disk full?)" : ""));
    }
    c += w;
    n -= uint64_t(w);
    off += uint64_t(w);
  }
}

void R1Writer::write_tensor(size_t i, const void* data, uint64_t bytes) {
  if (i >= entries_.size() || bytes != entries_[i].bytes) fail_input("internal: tensor write size mismatch");
  entries_[i].hash = XXH64(data, bytes, 0);
  pwrite_all(data, bytes, entries_[i].offset);
  written_[i] = true;
}

void R1Writer::begin_tensor(size_t i) {
  if (i >= entries_.size() || hashers_[i]) fail_input("internal: bad begin_tensor");
  auto* st = XXH64_createState();
  XXH64_reset(st, 0);
  hashers_[i] = st;
  filled_[i] = 0;
}

void R1Writer::append(size_t i, const void* data, uint64_t bytes) {
  if (i >= entries_.size()) fail_input("internal: bad tensor index in append");
  if (!hashers_[i] || bytes > entries_[i].bytes - filled_[i])
    fail_input("internal: tensor append overflows " + std::string(entries_[i].name));
  XXH64_update(static_cast<XXH64_state_t*>(hashers_[i]), data, bytes);
  pwrite_all(data, bytes, entries_[i].offset + filled_[i]);
  filled_[i] += bytes;
}

void R1Writer::end_tensor(size_t i) {
  if (i >= entries_.size()) fail_input("internal: bad tensor index in end_tensor");
  if (!hashers_[i] || filled_[i] != entries_[i].bytes)
    fail_input("internal: tensor " + std::string(entries_[i].name) + " incomplete");
  auto* st = static_cast<XXH64_state_t*>(hashers_[i]);
  entries_[i].hash = XXH64_digest(st);
  XXH64_freeState(st);
  hashers_[i] = nullptr;
  written_[i] = true;
}

void R1Writer::finish(const nlohmann::json& meta) { finish_json_text(meta.dump()); }

void R1Writer::finish_json_text(const std::string& js) {
  for (size_t i = 0; i < entries_.size(); i++)
    if (!written_[i]) fail_input(std::string("internal: tensor ") + entries_[i].name + " never written");
  std::string z(ZSTD_compressBound(js.size()), '\0');
  size_t zn = ZSTD_compress(z.data(), z.size(), js.data(), js.size(), 9);
  if (ZSTD_isError(zn)) fail_input("metadata compression failed");
  z.resize(zn);

  FileHeader h{};
  std::memcpy(h.magic, kR1Magic, 8);
  h.version = kR1Version;
  h.endian = kEndianCheck;
  h.table_offset = sizeof(FileHeader);
  h.n_tensors = entries_.size();
  h.data_offset = data_offset_;
  h.meta_offset = data_end_;
  h.meta_size = zn;
  h.meta_raw_size = js.size();
  h.file_size = data_end_ + zn;
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  XXH64_update(st, entries_.data(), entries_.size() * sizeof(TensorEntry));
  XXH64_update(st, z.data(), z.size());
  h.table_meta_hash = XXH64_digest(st);
  XXH64_freeState(st);
  h.header_hash = XXH64(&h, sizeof h, 0);

  pwrite_all(z.data(), z.size(), data_end_);
  pwrite_all(entries_.data(), entries_.size() * sizeof(TensorEntry), sizeof(FileHeader));
  pwrite_all(&h, sizeof h, 0);
  if (::ftruncate(fd_, off_t(h.file_size)) != 0) fail_input("truncating " + tmp_ + ": " + std::strerror(errno));
  if (::fsync(fd_) != 0) fail_input("writing " + tmp_ + ": " + std::strerror(errno) + " (disk full?)");
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail_input("renaming to " + path_ + ": " + std::strerror(errno));
  done_ = true;
}

}  // namespace r1
