#include "quant/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "quant/formats.h"
#include "quant/safetensors.h"

namespace fs = std::filesystem;

namespace r1 {

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  // Block sizes in bytes: see the block structs in gguf_dequant.cpp.
  static const GgmlTypeInfo f32{"F32", 1, 4}, f16{"F16", 1, 2}, bf16{"BF16", 1, 2}, q4_0{"Q4_0", 32, 18},
      q4_1{"Q4_1", 32, 20}, q5_0{"Q5_0", 32, 22}, q5_1{"Q5_1", 32, 24}, q8_0{"Q8_0", 32, 34},
      q2_k{"Q2_K", 256, 84}, q3_k{"Q3_K", 256, 110}, q4_k{"Q4_K", 256, 144}, q5_k{"Q5_K", 256, 176},
      q6_k{"Q6_K", 256, 210};
  switch (GgmlType(type)) {
    case GgmlType::F32: return &f32;
    case GgmlType::F16: return &f16;
    case GgmlType::BF16: return &bf16;
    case GgmlType::Q4_0: return &q4_0;
    case GgmlType::Q4_1: return &q4_1;
    case GgmlType::Q5_0: return &q5_0;
    case GgmlType::Q5_1: return &q5_1;
    case GgmlType::Q8_0: return &q8_0;
    case GgmlType::Q2_K: return &q2_k;
    case GgmlType::Q3_K: return &q3_k;
    case GgmlType::Q4_K: return &q4_k;
    case GgmlType::Q5_K: return &q5_k;
    case GgmlType::Q6_K: return &q6_k;
  }
  return nullptr;
}

bool GgufValue::is_int() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::BOOL:
      return true;
    default:
      return false;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? nullptr : &it->second;
}

namespace {

constexpr int kMaxArrayDepth = 4;  // llama.cpp writes flat arrays; a little nesting is harmless
constexpr uint32_t kMaxGgufDims = 4;  // GGML_MAX_DIMS

uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

// Sequential reader over untrusted bytes: every read checks what remains first.
class Reader {
 public:
  Reader(const uint8_t* p, uint64_t n, const std::string& origin) : p_(p), n_(n), origin_(origin) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return n_ - pos_; }

  [[noreturn]] void bad(const std::string& what) const {
    fail_input(origin_ + ": not a valid GGUF file: " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  void need(uint64_t k, const char* what) const {
    if (k > left()) bad(std::string("truncated in ") + what);
  }
  template <class T> T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    uint64_t len = get<uint64_t>(what);
    need(len, what);  // bounded by the file, so the allocation is too
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }

  GgufValue value(GgufType t, int depth, const std::string& key) {
    GgufValue v;
    v.type = t;
    switch (t) {
      case GgufType::U8: v.i = get<uint8_t>("a u8 value"); break;
      case GgufType::I8: v.i = get<int8_t>("an i8 value"); break;
      case GgufType::U16: v.i = get<uint16_t>("a u16 value"); break;
      case GgufType::I16: v.i = get<int16_t>("an i16 value"); break;
      case GgufType::U32: v.i = get<uint32_t>("a u32 value"); break;
      case GgufType::I32: v.i = get<int32_t>("an i32 value"); break;
      case GgufType::U64: {
        uint64_t u = get<uint64_t>("a u64 value");
        v.i = u > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(u);  // saturate; no key needs more
        break;
      }
      case GgufType::I64: v.i = get<int64_t>("an i64 value"); break;
      case GgufType::BOOL: {
        uint8_t b = get<uint8_t>("a bool value");
        if (b > 1) bad("key " + key + ": bool value " + std::to_string(b));
        v.i = b;
        break;
      }
      case GgufType::F32: v.f = get<float>("an f32 value"); break;
      case GgufType::F64: v.f = get<double>("an f64 value"); break;
      case GgufType::STRING: v.str = str("a string value"); return v;
      case GgufType::ARRAY: return array(depth, key);
      default: bad("key " + key + ": unknown value type " + std::to_string(uint32_t(t)));
    }
    if (t == GgufType::F32 || t == GgufType::F64) v.i = std::isfinite(v.f) && std::fabs(v.f) < 9e18 ? int64_t(v.f) : 0;
    else v.f = double(v.i);
    return v;
  }

  GgufValue array(int depth, const std::string& key) {
    if (depth >= kMaxArrayDepth) bad("key " + key + ": arrays nested too deeply");
    GgufValue v;
    v.type = GgufType::ARRAY;
    uint32_t et = get<uint32_t>("an array type");
    v.elem = GgufType(et);
    uint64_t n = get<uint64_t>("an array length");
    // Each element takes at least this many bytes of the file: the count is bounded by what is left.
    uint64_t min_size = et == uint32_t(GgufType::STRING) ? 8 : et == uint32_t(GgufType::ARRAY) ? 12 : scalar_size(v.elem);
    if (min_size == 0) bad("key " + key + ": unknown array element type " + std::to_string(et));
    if (n > left() / min_size) bad("key " + key + ": array of " + std::to_string(n) + " elements exceeds the file");
    v.count = n;
    if (v.elem == GgufType::STRING) {
      v.strs.reserve(size_t(n));
      for (uint64_t k = 0; k < n; k++) v.strs.push_back(str("a string array"));
    } else if (v.elem == GgufType::ARRAY) {
      v.items.reserve(size_t(n));
      for (uint64_t k = 0; k < n; k++) v.items.push_back(array(depth + 1, key));
    } else if (v.elem == GgufType::F32 || v.elem == GgufType::F64) {
      v.reals.resize(size_t(n));
      for (uint64_t k = 0; k < n; k++) v.reals[k] = v.elem == GgufType::F32 ? get<float>("an array") : get<double>("an array");
    } else {
      v.ints.resize(size_t(n));
      for (uint64_t k = 0; k < n; k++) v.ints[k] = value(v.elem, depth + 1, key).i;
    }
    return v;
  }

 private:
  const uint8_t* p_;
  uint64_t n_, pos_ = 0;
  const std::string& origin_;
};

}  // namespace

GgufFile gguf_parse(const uint8_t* data, uint64_t size, const std::string& origin, const GgufParseOptions& opt) {
  Reader r(data, size, origin);
  GgufFile f;
  r.need(4, "the magic");
  if (std::memcmp(data, "GGUF", 4) != 0) r.bad("no GGUF magic");
  r.get<uint32_t>("the magic");
  f.version = r.get<uint32_t>("the version");
  if (f.version == 1) r.bad("GGUF version 1 (32-bit counts) is not supported; convert it again with a current llama.cpp");
  if (f.version != 2 && f.version != 3) {
    if ((f.version & 0xffff) == 0 && f.version != 0) r.bad("big-endian GGUF is not supported");
    r.bad("unsupported GGUF version " + std::to_string(f.version));
  }
  const uint64_t n_tensors = r.get<uint64_t>("the tensor count");
  const uint64_t n_kv = r.get<uint64_t>("the key count");
  // A key is at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8.
  if (n_kv > r.left() / 13) r.bad(std::to_string(n_kv) + " metadata keys cannot fit in the file");
  if (n_tensors > r.left() / 32) r.bad(std::to_string(n_tensors) + " tensors cannot fit in the file");

  for (uint64_t k = 0; k < n_kv; k++) {
    std::string key = r.str("a metadata key");
    uint32_t t = r.get<uint32_t>("a value type");
    GgufValue v = r.value(GgufType(t), 0, key);
    if (!f.kv.emplace(key, std::move(v)).second) r.bad("duplicate metadata key " + key);
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufType::U32 || a->i == 0 || (a->i & (a->i - 1)) != 0 || a->i > (1 << 20))
      r.bad("general.alignment must be a u32 power of two up to 1 MiB");
    f.alignment = uint64_t(a->i);
  }

  f.tensors.reserve(size_t(n_tensors));
  std::map<std::string, size_t> seen;
  for (uint64_t k = 0; k < n_tensors; k++) {
    GgufTensor t;
    t.name = r.str("a tensor name");
    if (t.name.empty() || t.name.size() > 256) r.bad("tensor name of " + std::to_string(t.name.size()) + " bytes");
    const uint32_t nd = r.get<uint32_t>("a tensor's dimension count");
    if (nd < 1 || nd > kMaxGgufDims) r.bad("tensor " + t.name + " has " + std::to_string(nd) + " dimensions");
    t.numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
      uint64_t e = r.get<uint64_t>("a tensor shape");
      if (e == 0 || e > (1ull << 40)) r.bad("tensor " + t.name + " has dimension " + std::to_string(e));
      t.ne.push_back(e);
      t.numel = checked_mul(t.numel, e, "a GGUF tensor shape");
    }
    const uint32_t ty = r.get<uint32_t>("a tensor type");
    const GgmlTypeInfo* ti = ggml_type_info(ty);
    if (!ti) r.bad("tensor " + t.name + " has ggml type " + std::to_string(ty) + ", which r1 cannot read");
    t.type = GgmlType(ty);
    if (t.ne[0] % ti->block != 0)
      r.bad("tensor " + t.name + ": row of " + std::to_string(t.ne[0]) + " is not whole " + ti->name + " blocks");
    t.bytes = checked_mul(t.numel / ti->block, ti->bytes, "a GGUF tensor size");
    t.offset = r.get<uint64_t>("a tensor offset");
    if (t.offset % f.alignment != 0) r.bad("tensor " + t.name + " is not aligned");
    if (!seen.emplace(t.name, f.tensors.size()).second) r.bad("duplicate tensor " + t.name);
    f.tensors.push_back(std::move(t));
  }

  f.data_offset = align_up(r.pos(), f.alignment);
  // Tensor data: inside the file and not overlapping (a hostile file could alias tensors).
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (auto& t : f.tensors) {
    const uint64_t b = checked_add(f.data_offset, t.offset, "a GGUF tensor offset");
    const uint64_t e = checked_add(b, t.bytes, "a GGUF tensor offset");
    if (e > size) {
      if (!opt.allow_truncated_data)
        fail_input(origin + ": tensor " + t.name + " lies past the end of the file (truncated download?)");
    } else {
      t.data = data + b;
    }
    spans.push_back({b, e});
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); k++)
    if (spans[k].first < spans[k - 1].second) fail_input(origin + ": not a valid GGUF file: tensors overlap");
  return f;
}

// ------------------------------------------------------------------------------ GgufModel

GgufModel::GgufModel(GgufModel&&) noexcept = default;
GgufModel& GgufModel::operator=(GgufModel&&) noexcept = default;
GgufModel::~GgufModel() = default;

GgufModel GgufModel::open(const std::string& path, const GgufParseOptions& opt) {
  GgufModel m;
  auto add = [&](const std::string& p) {
    m.files_.push_back(std::make_unique<MappedFile>(p));
    m.paths_.push_back(p);
    const MappedFile& mf = *m.files_.back();
    m.parts_.push_back(gguf_parse(mf.data(), mf.size(), p, opt));
  };
  add(path);

  // Split models: the first part carries split.count; the others are found by name.
  int64_t count = 1;
  if (const GgufValue* c = m.meta().find("split.count")) {
    if (!c->is_int() || c->i < 1 || c->i > 9999) fail_input(path + ": split.count out of range");
    count = c->i;
  }
  if (count > 1) {
    const GgufValue* no = m.meta().find("split.no");
    if (no && no->is_int() && no->i != 0)
      fail_input(path + ": this is part " + std::to_string(no->i + 1) + " of a split model; give the first part");
    static const std::regex re(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
    std::smatch mt;
    if (!std::regex_match(path, mt, re) || std::stoi(mt[2].str()) != 1 || std::stoll(mt[3].str()) != count)
      fail_input(path + ": split into " + std::to_string(count) + " parts, but the name is not <prefix>-00001-of-" +
                 std::to_string(count) + ".gguf");
    for (int64_t k = 2; k <= count; k++) {
      char suffix[40];
      std::snprintf(suffix, sizeof suffix, "-%05lld-of-%05lld.gguf", (long long)k, (long long)count);
      const std::string p = mt[1].str() + suffix;
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) fail_input(path + ": split part " + p + " is missing");
      add(p);
      const GgufValue* pn = m.parts_.back().find("split.no");
      const GgufValue* pc = m.parts_.back().find("split.count");
      if (!pn || !pc || !pn->is_int() || !pc->is_int() || pn->i != k - 1 || pc->i != count)
        fail_input(p + ": split.no/split.count do not match its name");
    }
  }
  for (size_t k = 0; k < m.parts_.size(); k++)
    for (auto& t : m.parts_[k].tensors) {
      GgufTensor c = t;
      c.part = int(k);
      if (!m.tensors_.emplace(t.name, std::move(c)).second)
        fail_input(m.paths_[k] + ": tensor " + t.name + " appears in two parts");
    }
  if (const GgufValue* tc = m.meta().find("split.tensors.count"))
    if (count > 1 && (!tc->is_int() || tc->i < 0 || uint64_t(tc->i) != m.tensors_.size()))
      fail_input(path + ": split.tensors.count says " + std::to_string(tc->i) + " tensors, the parts hold " +
                 std::to_string(m.tensors_.size()));
  return m;
}

const GgufTensor* GgufModel::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void GgufModel::release(const GgufTensor& t) const {
  if (t.data && t.bytes) files_[size_t(t.part)]->release(t.data, t.bytes);
}

std::string GgufModel::get_str(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_input(paths_[0] + ": GGUF metadata has no " + key);
  if (v->type != GgufType::STRING) fail_input(paths_[0] + ": GGUF metadata " + key + " is not a string");
  return v->str;
}

int64_t GgufModel::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_input(paths_[0] + ": GGUF metadata has no " + key);
  if (!v->is_int()) fail_input(paths_[0] + ": GGUF metadata " + key + " is not an integer");
  return v->i;
}

int64_t GgufModel::get_int(const std::string& key, int64_t dflt) const { return find(key) ? get_int(key) : dflt; }

double GgufModel::get_num(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_input(paths_[0] + ": GGUF metadata has no " + key);
  if (!v->is_num()) fail_input(paths_[0] + ": GGUF metadata " + key + " is not a number");
  return v->f;
}

double GgufModel::get_num(const std::string& key, double dflt) const { return find(key) ? get_num(key) : dflt; }

}  // namespace r1
