// Internals of the byte-level BPE backend (core/bpe.cpp: encoding, core/bpe_load.cpp: reading
// tokenizer.json). Only those two files include this.
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tok_utf8.h"
#include "core/tokenizer_backend.h"

namespace r1::tok {

// GPT-2's reversible byte <-> printable code point table.
struct ByteTable {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // code points used are all < 324; -1 where none
  ByteTable() {
    std::fill(std::begin(from_cp), std::end(from_cp), int16_t(-1));
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? uint32_t(b) : 256 + extra++;
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
inline const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

// Byte-level text -> raw bytes; false (and `out` untouched) if a char is outside the table.
bool byte_level_decode(std::string_view s, std::string& out);

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StrMap = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;

// Open-addressing map (left_id, right_id) -> (rank, merged id): the hot lookup of BPE.
class PairMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, 0);
    mask_ = cap - 1;
  }
  void put(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t k = key(a, b);
    size_t i = slot(k);
    while (keys_[i] != kEmpty && keys_[i] != k) i = (i + 1) & mask_;
    keys_[i] = k;  // a repeated pair keeps its last rank, as HF's map collection does
    vals_[i] = uint64_t(uint32_t(rank)) << 32 | uint32_t(merged);
  }
  // Returns rank (INT_MAX if absent) and sets merged.
  int32_t get(int32_t a, int32_t b, int32_t& merged) const {
    uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (keys_[i] == k) { merged = int32_t(uint32_t(vals_[i])); return int32_t(vals_[i] >> 32); }
      if (keys_[i] == kEmpty) return INT_MAX;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }
  size_t slot(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<uint64_t> keys_, vals_;
  size_t mask_ = 0;
};

// Open-addressing string -> id index whose strings live elsewhere (a blob indexed by id), so
// building it allocates nothing per token.
class IdIndex {
 public:
  template <class Get>
  void build(size_t n_ids, Get get) {
    size_t cap = 16;
    while (cap < n_ids * 2) cap <<= 1;
    slots_.assign(cap, -1);
    mask_ = cap - 1;
    for (size_t id = 0; id < n_ids; ++id) {
      std::string_view s;
      if (!get(int32_t(id), s)) continue;
      size_t i = hash(s) & mask_;
      while (slots_[i] >= 0) {
        std::string_view o;
        get(slots_[i], o);
        if (o == s) break;  // keep the lowest id for a repeated string
        i = (i + 1) & mask_;
      }
      if (slots_[i] < 0) slots_[i] = int32_t(id);
    }
  }
  template <class Get>
  int32_t find(std::string_view s, Get get) const {
    if (slots_.empty()) return -1;
    for (size_t i = hash(s) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] < 0) return -1;
      std::string_view o;
      get(slots_[i], o);
      if (o == s) return slots_[i];
    }
  }

 private:
  static size_t hash(std::string_view s) { return std::hash<std::string_view>{}(s); }
  std::vector<int32_t> slots_;
  size_t mask_ = 0;
};

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, lstrip, rstrip, single_word;
};

// Byte trie over added-token contents: leftmost-longest matching, like HF's Aho-Corasick.
class AddedMatcher {
 public:
  void add(std::string_view s, int32_t idx) {
    if (s.empty()) return;
    if (nodes_.empty()) nodes_.emplace_back();
    first_[uint8_t(s[0])] = true;
    int32_t n = 0;
    for (char c : s) {
      int32_t next = child(n, uint8_t(c));
      if (next < 0) {
        next = int32_t(nodes_.size());
        nodes_[n].kids.emplace_back(uint8_t(c), next);
        nodes_.emplace_back();
      }
      n = next;
    }
    nodes_[n].token = idx;
  }
  bool empty() const { return nodes_.empty(); }
  // Longest token starting at p; returns its index and sets len, or -1.
  int32_t longest_at(const char* p, size_t n, size_t& len) const {
    if (!first_[uint8_t(p[0])]) return -1;
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < n; ++i) {
      node = child(node, uint8_t(p[i]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) { best = nodes_[node].token; len = i + 1; }
    }
    return best;
  }

 private:
  struct Node {
    int32_t token = -1;
    std::vector<std::pair<uint8_t, int32_t>> kids;
  };
  int32_t child(int32_t n, uint8_t c) const {
    for (auto& [b, k] : nodes_[n].kids)
      if (b == c) return k;
    return -1;
  }
  std::vector<Node> nodes_;
  bool first_[256] = {};
};

enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

struct Stage {
  enum Kind { Split, PrefixSpace } kind;
  // Owned, so a load that throws half-way (inside Bpe's constructor) frees what it compiled.
  std::shared_ptr<pcre2_code> re;  // Split
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
};

const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class Bpe final : public Backend {
 public:
  Bpe(const std::string& text, const std::string& origin) : origin_(origin) { load(text); }

  void encode(std::string_view text, std::vector<int32_t>& out) const override;
  bool token_bytes(int32_t id, std::string& out) const override {
    if (id < 0 || size_t(id) + 1 >= off_.size()) return false;
    out.append(blob_, off_[id], off_[id + 1] - off_[id]);
    return true;
  }
  int32_t token_id(std::string_view token) const override;
  int64_t vocab_size() const override { return int64_t(off_.size()) - 1; }
  bool is_special(int32_t id) const override {
    return id >= 0 && size_t(id) < special_.size() && special_[id];
  }
  int32_t default_bos() const override { return post_bos_; }

 private:
  void load(const std::string& text);
  void load_json(const std::string& text);
  void load_pre_tokenizer(const nlohmann::json& pt);
  void load_normalizer(const nlohmann::json& n);
  void add_split(const std::string& pattern, bool literal, Behavior b, bool invert);
  int32_t find_added(std::string_view text, size_t from, size_t& ms, size_t& me) const;
  void encode_segment(std::string_view seg, std::vector<int32_t>& out) const;
  void run_stage(size_t k, std::string_view piece, std::vector<int32_t>& out) const;
  void word(std::string_view w, std::vector<int32_t>& out) const;
  void merge_small(std::vector<int32_t>& syms) const;
  void merge_large(std::vector<int32_t>& syms) const;

  std::string origin_;
  // Vocabulary: id -> bytes and id -> tokenizer.json key, each in one blob, with an index each.
  std::string blob_, keys_;
  std::vector<uint32_t> off_, key_off_;
  IdIndex by_bytes_, by_key_;
  std::vector<uint8_t> byte_level_;  // token's key is byte-level text (so by_bytes_ may hold it)
  StrMap added_ids_;
  std::vector<uint8_t> special_;
  int32_t byte_id_[256];
  PairMap merges_;
  bool ignore_merges_ = false;
  int32_t post_bos_ = -1;

  std::vector<AddedToken> added_;
  AddedMatcher matcher_;
  std::vector<utf8::NormForm> norms_;
  std::vector<Stage> stages_;

  // Pre-token -> its ids (offset << 8 | count into cache_ids_), bounded: cleared when full.
  static constexpr size_t kCacheMax = 1 << 17, kCacheWordMax = 255;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, uint64_t, StrHash, std::equal_to<>> cache_;
  mutable std::vector<int32_t> cache_ids_;
  bool bytes_of(int32_t id, std::string_view& s) const {
    if (!byte_level_[id]) return false;
    s = std::string_view(blob_).substr(off_[id], off_[id + 1] - off_[id]);
    return !s.empty();
  }
  bool key_of(int32_t id, std::string_view& s) const {
    s = std::string_view(keys_).substr(key_off_[id], key_off_[id + 1] - key_off_[id]);
    return !s.empty();
  }
  int32_t find_bytes(std::string_view s) const {
    return by_bytes_.find(s, [this](int32_t id, std::string_view& v) { return bytes_of(id, v); });
  }
  int32_t find_key(std::string_view s) const {
    return by_key_.find(s, [this](int32_t id, std::string_view& v) { return key_of(id, v); });
  }
};

}  // namespace r1::tok
