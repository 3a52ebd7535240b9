// Byte-level BPE encoding: added tokens split off first, then the file's normalizer, its
// pre-tokenizer pipeline (regex splits with PCRE2 JIT), then ranked merges on each pre-token,
// with a bounded per-word cache.
#include <cctype>
#include <queue>

#include "core/bpe.h"

namespace r1::tok {
namespace {

// Per-thread PCRE2 scratch: match data and a JIT stack big enough for long runs.
struct MatchScratch {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  MatchScratch() {
    md = pcre2_match_data_create(4, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~MatchScratch() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
  }
};
MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

}  // namespace

void Bpe::encode(std::string_view text, std::vector<int32_t>& out) const {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t ms, me;
    int32_t idx = find_added(text, pos, ms, me);
    if (idx < 0) { encode_segment(text.substr(pos), out); break; }
    if (ms > pos) encode_segment(text.substr(pos, ms - pos), out);
    out.push_back(added_[idx].id);
    pos = me;
  }
}

int32_t Bpe::token_id(std::string_view token) const {
  if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
  if (int32_t id = find_key(token); id >= 0) return id;
  return find_bytes(token);
}

int32_t Bpe::find_added(std::string_view text, size_t from, size_t& ms, size_t& me) const {
  if (matcher_.empty()) return -1;
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  auto word = [](char c) { return std::isalnum(uint8_t(c)) || c == '_' || (uint8_t(c) & 0x80); };
  for (size_t i = from; i < text.size(); ++i) {
    size_t len;
    int32_t idx = matcher_.longest_at(text.data() + i, text.size() - i, len);
    if (idx < 0) continue;
    const AddedToken& t = added_[idx];
    ms = i;
    me = i + len;
    if (t.single_word && ((ms > 0 && word(text[ms - 1])) || (me < text.size() && word(text[me]))))
      continue;
    if (t.lstrip)
      while (ms > from && ws(text[ms - 1])) --ms;
    if (t.rstrip)
      while (me < text.size() && ws(text[me])) ++me;
    return idx;
  }
  return -1;
}

void Bpe::encode_segment(std::string_view seg, std::vector<int32_t>& out) const {
  if (norms_.empty()) { run_stage(0, seg, out); return; }
  std::string norm(seg);
  for (auto f : norms_)
    if (!(f == utf8::NormForm::NFC && utf8::nfc_quick_stable(norm))) norm = utf8::normalize(norm, f);
  run_stage(0, norm, out);
}

void Bpe::run_stage(size_t k, std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (k == stages_.size()) { word(piece, out); return; }
  const Stage& st = stages_[k];
  if (st.kind == Stage::PrefixSpace) {
    if (piece[0] == ' ') { run_stage(k + 1, piece, out); return; }
    std::string p = " ";
    p += piece;
    run_stage(k + 1, p, out);
    return;
  }
  MatchScratch& sc = scratch();
  auto subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t n = piece.size(), pos = 0;
  // Segments alternate gap / match; `is_match` is flipped by invert.
  struct Seg { size_t b, e; bool m; };
  std::vector<Seg> segs;
  bool direct = st.behavior == Behavior::Isolated;  // emit straight away, no list
  auto emit = [&](size_t b, size_t e, bool m) {
    if (b >= e) return;
    if (direct) run_stage(k + 1, piece.substr(b, e - b), out);
    else segs.push_back({b, e, m != st.invert});
  };
  while (pos < n) {
    int rc = pcre2_match(st.re.get(), subject, n, pos, 0, sc.md, sc.mc);
    if (rc < 0) break;  // no further match (or a resource limit: the rest stays one piece)
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(sc.md);
    size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: step one byte-sequence forward
      size_t len = 1;
      while (b + len < n && (uint8_t(piece[b + len]) & 0xC0) == 0x80) ++len;
      emit(pos, b + len, false);
      pos = b + len;
      continue;
    }
    emit(pos, b, false);
    emit(b, e, true);
    pos = e;
  }
  emit(pos, n, false);
  if (direct) return;

  // HF semantics on "the-final--countdown" split at '-': MergedWithPrevious gives
  // the- final- - countdown; MergedWithNext the -final - -countdown; Contiguous the - final -- countdown.
  std::vector<std::pair<size_t, size_t>> parts;
  for (size_t i = 0; i < segs.size(); ++i) {
    const Seg& s = segs[i];
    bool prev_m = i > 0 && segs[i - 1].m;
    bool join = false;
    switch (st.behavior) {
      case Behavior::Isolated: break;
      case Behavior::Removed: if (s.m) continue; break;
      case Behavior::MergedWithPrevious: join = s.m && i > 0 && !prev_m; break;
      case Behavior::MergedWithNext: join = !s.m && prev_m; break;
      case Behavior::Contiguous: join = s.m && prev_m; break;
    }
    if (join && !parts.empty() && parts.back().second == s.b) parts.back().second = s.e;
    else parts.push_back({s.b, s.e});
  }
  for (auto& [b, e] : parts) run_stage(k + 1, piece.substr(b, e - b), out);
}

void Bpe::word(std::string_view w, std::vector<int32_t>& out) const {
  if (w.size() == 1 && byte_id_[uint8_t(w[0])] >= 0) { out.push_back(byte_id_[uint8_t(w[0])]); return; }
  if (ignore_merges_) {
    if (int32_t id = find_bytes(w); id >= 0) { out.push_back(id); return; }
  }
  bool cacheable = w.size() <= kCacheWordMax;
  if (cacheable) {
    std::lock_guard<std::mutex> lk(cache_mu_);
    if (auto it = cache_.find(w); it != cache_.end()) {
      const int32_t* p = cache_ids_.data() + (it->second >> 8);
      out.insert(out.end(), p, p + (it->second & 0xFF));
      return;
    }
  }
  thread_local std::vector<int32_t> syms;
  syms.clear();
  for (char c : w)
    if (int32_t id = byte_id_[uint8_t(c)]; id >= 0) syms.push_back(id);  // no unk: HF drops it
  if (syms.size() > 64) merge_large(syms);
  else merge_small(syms);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cacheable) {  // a cached word has at most kCacheWordMax (< 256) ids: the length fits 8 bits
    std::lock_guard<std::mutex> lk(cache_mu_);
    if (cache_.size() >= kCacheMax) {
      cache_.clear();
      cache_ids_.clear();
    }
    auto [it, fresh] = cache_.emplace(std::string(w), uint64_t(cache_ids_.size()) << 8 | syms.size());
    if (fresh) cache_ids_.insert(cache_ids_.end(), syms.begin(), syms.end());
  }
}

// Lowest rank first, leftmost on ties: the order HF's merge queue pops in.
void Bpe::merge_small(std::vector<int32_t>& syms) const {
  size_t n = syms.size();
  if (n < 2) return;
  int32_t rank[64], merged[64];
  for (size_t i = 0; i + 1 < n; ++i) rank[i] = merges_.get(syms[i], syms[i + 1], merged[i]);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == INT_MAX) break;
    syms[best] = merged[best];
    for (size_t i = best + 1; i + 1 < n; ++i) {
      syms[i] = syms[i + 1];
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) rank[best - 1] = merges_.get(syms[best - 1], syms[best], merged[best - 1]);
    if (best + 1 < n) rank[best] = merges_.get(syms[best], syms[best + 1], merged[best]);
  }
  syms.resize(n);
}

// Same order with a heap and a linked list, for long words (O(n log n)).
void Bpe::merge_large(std::vector<int32_t>& syms) const {
  size_t n = syms.size();
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (size_t i = 0; i < n; ++i) { prev[i] = int32_t(i) - 1; next[i] = i + 1 < n ? int32_t(i + 1) : -1; }
  struct Item { int32_t rank, pos, merged; };
  auto cmp = [](const Item& a, const Item& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  std::priority_queue<Item, std::vector<Item>, decltype(cmp)> q(cmp);
  auto push = [&](int32_t i) {
    if (i < 0 || next[i] < 0) return;
    int32_t m = -1, r = merges_.get(syms[i], syms[next[i]], m);
    if (r != INT_MAX) q.push({r, i, m});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!q.empty()) {
    Item t = q.top();
    q.pop();
    if (!alive[t.pos] || next[t.pos] < 0) continue;
    int32_t m = -1, r = merges_.get(syms[t.pos], syms[next[t.pos]], m);
    if (r != t.rank || m != t.merged) continue;  // stale entry
    int32_t gone = next[t.pos];
    syms[t.pos] = m;
    alive[gone] = 0;
    next[t.pos] = next[gone];
    if (next[gone] >= 0) prev[next[gone]] = t.pos;
    push(prev[t.pos]);
    push(t.pos);
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) syms[k++] = syms[i];
  syms.resize(k);
}

}  // namespace r1::tok
