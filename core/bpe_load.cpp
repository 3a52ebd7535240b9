// Reads a Hugging Face tokenizer.json into the BPE backend. The vocabulary and merges (most of the
// file) are taken straight from SAX events into flat buffers; only the small rest becomes a DOM.
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/bpe.h"
#include "core/error.h"
#include "core/json_input.h"

namespace r1::tok {
using json = nlohmann::json;

bool byte_level_decode(std::string_view s, std::string& out) {
  const ByteTable& t = byte_table();
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  size_t start = out.size();
  for (size_t i = 0, len; i < s.size(); i += len) {
    if (utf8::classify(p + i, s.size() - i, len) != utf8::Seq::Valid || len > 2) {
      out.resize(start);
      return false;
    }
    uint32_t cp = len == 1 ? p[i] : ((p[i] & 0x1Fu) << 6 | (p[i + 1] & 0x3Fu));
    if (cp >= 324 || t.from_cp[cp] < 0) {
      out.resize(start);
      return false;
    }
    out.push_back(char(t.from_cp[cp]));
  }
  return true;
}

namespace {

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  fail_input(origin + ": tokenizer.json: " + what);
}

struct Span { uint32_t off, len; };

// SAX handler: model.vocab and model.merges go to flat buffers, everything else to `dom`.
class Sax : public nlohmann::json_sax<json> {
 public:
  explicit Sax(json& dom) : dom_(dom) {}
  std::string strings;                                // vocab keys and merge halves
  std::vector<std::pair<Span, int64_t>> vocab;
  std::vector<std::pair<Span, Span>> merges;
  std::string error;

  bool null() override { return capture_ ? fail("unexpected null") : dom_.null(); }
  bool boolean(bool v) override { return capture_ ? fail("unexpected boolean") : dom_.boolean(v); }
  bool number_integer(number_integer_t v) override {
    if (capture_ == Vocab && depth_ == 1) { vocab.push_back({cur_, v}); return true; }
    return capture_ ? fail("unexpected number") : dom_.number_integer(v);
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (capture_ == Vocab && depth_ == 1) {
      vocab.push_back({cur_, v > uint64_t(INT64_MAX) ? int64_t(-1) : int64_t(v)});
      return true;
    }
    return capture_ ? fail("unexpected number") : dom_.number_unsigned(v);
  }
  bool number_float(number_float_t v, const string_t& s) override {
    return capture_ ? fail("vocab ids must be integers") : dom_.number_float(v, s);
  }
  bool string(string_t& v) override {
    if (capture_ == Merges && depth_ == 1) {  // "a b"
      size_t sp = v.find(' ');
      if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos)
        return fail("merge '" + v + "' is not two tokens");
      Span a = put(std::string_view(v).substr(0, sp)), b = put(std::string_view(v).substr(sp + 1));
      merges.push_back({a, b});
      return true;
    }
    if (capture_ == Merges && depth_ == 2) {  // ["a", "b"]
      if (parts_ >= 2) return fail("a merge has more than two parts");
      pair_[parts_++] = put(v);
      return true;
    }
    return capture_ ? fail("unexpected string") : dom_.string(v);
  }
  bool binary(binary_t& v) override { return capture_ ? fail("unexpected binary") : dom_.binary(v); }
  bool start_object(std::size_t n) override {
    if (pending_ == Vocab) { capture_ = Vocab; pending_ = None; depth_ = 1; return true; }
    if (pending_) return fail("model.merges is not an array");
    if (capture_) return fail("unexpected object");
    ++level_;
    return dom_.start_object(n);
  }
  bool key(string_t& k) override {
    if (capture_ == Vocab) { cur_ = put(k); return true; }
    if (capture_) return fail("unexpected key");
    if (level_ == 2 && top_key_ == "model" && (k == "vocab" || k == "merges")) {
      pending_ = k == "vocab" ? Vocab : Merges;
      return true;
    }
    if (level_ == 1) top_key_ = k;
    return dom_.key(k);
  }
  bool end_object() override {
    if (capture_ == Vocab) { capture_ = None; depth_ = 0; return true; }
    if (capture_) return fail("unexpected end of object");
    --level_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) override {
    if (pending_ == Merges) { capture_ = Merges; pending_ = None; depth_ = 1; return true; }
    if (pending_) return fail("model.vocab is not an object");
    if (capture_ == Merges && depth_ == 1) { depth_ = 2; parts_ = 0; return true; }
    if (capture_) return fail("unexpected array");
    ++level_;
    return dom_.start_array(n);
  }
  bool end_array() override {
    if (capture_ == Merges && depth_ == 2) {
      if (parts_ != 2) return fail("a merge does not have two parts");
      merges.push_back({pair_[0], pair_[1]});
      depth_ = 1;
      return true;
    }
    if (capture_ == Merges) { capture_ = None; depth_ = 0; return true; }
    if (capture_) return fail("unexpected end of array");
    --level_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) override {
    if (error.empty()) error = std::string("not valid JSON (") + e.what() + ")";
    return false;
  }

 private:
  enum Capture { None, Vocab, Merges };
  bool fail(const std::string& msg) {
    if (error.empty()) error = (capture_ == Merges ? "model.merges: " : "model.vocab: ") + msg;
    return false;
  }
  Span put(std::string_view s) {
    Span sp{uint32_t(strings.size()), uint32_t(s.size())};
    strings.append(s);
    return sp;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  Capture capture_ = None, pending_ = None;
  int depth_ = 0, level_ = 0, parts_ = 0;
  std::string top_key_;
  Span cur_{0, 0}, pair_[2];
};

}  // namespace

// A field of the wrong JSON type (a number where a flag belongs) makes nlohmann throw its own
// exceptions from anywhere below: one clean error instead.
void Bpe::load(const std::string& text) {
  try {
    load_json(text);
  } catch (const json::exception& e) {
    bad(origin_, std::string("a field has the wrong type (") + e.what() + ")");
  }
}

void Bpe::load_json(const std::string& text) {
  if (json_too_deep(text)) bad(origin_, "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json j;
  Sax sax(j);
  if (!json::sax_parse(text, &sax) || !sax.error.empty())
    bad(origin_, sax.error.empty() ? std::string("not valid JSON") : sax.error);
  if (!j.is_object()) bad(origin_, "not a JSON object");
  const json& model = j.value("model", json());
  if (!model.is_object()) bad(origin_, "no model");
  std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") bad(origin_, "model type " + type + " is not supported (only BPE)");
  if (model.value("byte_fallback", false)) bad(origin_, "byte_fallback BPE is not supported");
  auto ign = model.find("ignore_merges");
  ignore_merges_ = ign != model.end() && ign->is_boolean() && ign->get<bool>();
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(k);
    if (it != model.end() && it->is_string() && !it->get<std::string>().empty())
      bad(origin_, std::string(k) + " is not supported");
  }
  if (sax.vocab.empty()) bad(origin_, "model.vocab is missing or empty");

  auto sv = [&](Span s) { return std::string_view(sax.strings).substr(s.off, s.len); };
  int64_t max_id = -1;
  for (auto& [k, id] : sax.vocab) {
    if (id < 0 || id > INT32_MAX / 2) bad(origin_, "vocab id of '" + std::string(sv(k)) + "' is invalid");
    max_id = std::max(max_id, id);
  }
  const json& added = j.value("added_tokens", json::array());
  if (!added.is_array()) bad(origin_, "added_tokens is not an array");
  for (auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0 ||
        a["id"].get<int64_t>() > INT32_MAX / 2)
      bad(origin_, "malformed added token");
    max_id = std::max(max_id, a["id"].get<int64_t>());
  }

  // The tables below are sized by the largest id, so ids must be about as many as the tokens
  // that name them (holes for reserved ids are fine): else a tiny file could ask for gigabytes.
  const int64_t named = int64_t(sax.vocab.size() + added.size());
  if (max_id >= 2 * named + 1024)
    bad(origin_, "token ids go up to " + std::to_string(max_id) + " but only " + std::to_string(named) +
                     " tokens are defined");

  // Per id: key span and decoded-bytes span (into a scratch buffer), then pack in id order.
  size_t n = size_t(max_id + 1);
  std::vector<Span> key_of_id(n, Span{0, 0});
  for (auto& [k, id] : sax.vocab) key_of_id[size_t(id)] = k;
  keys_.reserve(sax.strings.size() / 2);
  key_off_.resize(n + 1);
  off_.resize(n + 1);
  byte_level_.assign(n, 0);
  special_.assign(n, 0);
  std::vector<const AddedToken*> added_at(n, nullptr);
  for (auto& a : added) {
    AddedToken t{a["id"].get<int32_t>(), a["content"].get<std::string>(), a.value("special", false),
                 a.value("lstrip", false), a.value("rstrip", false), a.value("single_word", false)};
    if (t.content.empty()) continue;
    special_[t.id] = t.special;
    added_ids_[t.content] = t.id;
    added_.push_back(std::move(t));
  }
  for (size_t i = 0; i < added_.size(); ++i) {
    matcher_.add(added_[i].content, int32_t(i));
    added_at[added_[i].id] = &added_[i];
  }
  blob_.reserve(sax.strings.size() / 2);
  for (size_t id = 0; id < n; ++id) {
    key_off_[id] = uint32_t(keys_.size());
    off_[id] = uint32_t(blob_.size());
    std::string_view k = sv(key_of_id[id]);
    keys_.append(k);
    // HF decodes a token's text through the byte-level table, or keeps its UTF-8 when a char is
    // not in the table; added tokens take precedence over the vocabulary.
    std::string_view text = added_at[id] ? std::string_view(added_at[id]->content) : k;
    bool bl = byte_level_decode(text, blob_);
    if (!bl) blob_.append(text);
    byte_level_[id] = bl && !added_at[id] && !k.empty();
  }
  key_off_[n] = uint32_t(keys_.size());
  off_[n] = uint32_t(blob_.size());
  by_key_.build(n, [this](int32_t id, std::string_view& v) { return key_of(id, v); });
  by_bytes_.build(n, [this](int32_t id, std::string_view& v) { return bytes_of(id, v); });

  for (int b = 0; b < 256; ++b) byte_id_[b] = find_bytes(std::string_view(reinterpret_cast<const char*>(&b), 1));

  merges_.reserve(sax.merges.size());
  std::string joined;
  for (size_t r = 0; r < sax.merges.size(); ++r) {
    std::string_view a = sv(sax.merges[r].first), b = sv(sax.merges[r].second);
    joined.assign(a);
    joined += b;
    int32_t ia = find_key(a), ib = find_key(b), ij = find_key(joined);
    if (ia < 0 || ib < 0 || ij < 0)
      bad(origin_, "merge " + std::to_string(r) + " uses a token that is not in the vocabulary");
    merges_.put(ia, ib, int32_t(r), ij);
  }

  // BOS of the post-processor: the fallback when tokenizer_config.json names none.
  const json& pp = j.value("post_processor", json());
  if (pp.is_object() && pp.value("type", std::string()) == "TemplateProcessing" &&
      pp.contains("single") && pp["single"].is_array() && !pp["single"].empty()) {
    const json& first = pp["single"][0];
    if (first.contains("SpecialToken") && first["SpecialToken"].contains("id") &&
        first["SpecialToken"]["id"].is_string()) {
      auto it = added_ids_.find(first["SpecialToken"]["id"].get<std::string>());
      if (it != added_ids_.end()) post_bos_ = it->second;
    }
  }
  load_normalizer(j.value("normalizer", json()));
  load_pre_tokenizer(j.value("pre_tokenizer", json()));
  const json& dec = j.value("decoder", json());
  if (!dec.is_null() && !(dec.is_object() && dec.value("type", std::string()) == "ByteLevel"))
    bad(origin_, "decoder " + dec.dump() + " is not supported (only ByteLevel)");
}

void Bpe::load_normalizer(const json& n) {
  if (n.is_null()) return;
  std::string t = n.is_object() ? n.value("type", std::string()) : std::string();
  if (t == "Sequence") {
    for (auto& s : n.value("normalizers", json::array())) load_normalizer(s);
    return;
  }
  if (t == "NFC") norms_.push_back(utf8::NormForm::NFC);
  else if (t == "NFD") norms_.push_back(utf8::NormForm::NFD);
  else if (t == "NFKC") norms_.push_back(utf8::NormForm::NFKC);
  else if (t == "NFKD") norms_.push_back(utf8::NormForm::NFKD);
  else bad(origin_, "normalizer " + n.dump() + " is not supported");
}

void Bpe::add_split(const std::string& pattern, bool literal, Behavior b, bool invert) {
  int err;
  PCRE2_SIZE erroff;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                 opts, &err, &erroff, nullptr);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    bad(origin_, "pre-tokenizer pattern does not compile: " + std::string(reinterpret_cast<char*>(msg)));
  }
  Stage s{Stage::Split, nullptr};
  s.re.reset(re, pcre2_code_free);
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  s.behavior = b;
  s.invert = invert;
  stages_.push_back(s);
}

void Bpe::load_pre_tokenizer(const json& pt) {
  if (pt.is_null()) return;
  std::string t = pt.is_object() ? pt.value("type", std::string()) : std::string();
  if (t == "Sequence") {
    for (auto& s : pt.value("pretokenizers", json::array())) load_pre_tokenizer(s);
  } else if (t == "Split") {
    const json& p = pt.value("pattern", json());
    bool literal = p.contains("String");
    if (!(p.is_object() && (literal || p.contains("Regex")) &&
          p[literal ? "String" : "Regex"].is_string()))
      bad(origin_, "Split pre-tokenizer without a pattern");
    std::string beh = pt.value("behavior", std::string("Isolated"));
    Behavior b;
    if (beh == "Isolated") b = Behavior::Isolated;
    else if (beh == "Removed") b = Behavior::Removed;
    else if (beh == "MergedWithPrevious") b = Behavior::MergedWithPrevious;
    else if (beh == "MergedWithNext") b = Behavior::MergedWithNext;
    else if (beh == "Contiguous") b = Behavior::Contiguous;
    else bad(origin_, "Split behavior " + beh + " is not supported");
    add_split(p[literal ? "String" : "Regex"].get<std::string>(), literal, b, pt.value("invert", false));
  } else if (t == "ByteLevel") {
    // The byte mapping itself happens in word(); only the options change the split.
    if (pt.value("add_prefix_space", false)) stages_.push_back(Stage{Stage::PrefixSpace, nullptr});
    if (pt.value("use_regex", true)) add_split(kGpt2Pattern, false, Behavior::Isolated, false);
  } else {
    bad(origin_, "pre_tokenizer " + t + " is not supported");
  }
}

std::unique_ptr<Backend> make_bpe(const std::string& tokenizer_json, const std::string& origin) {
  return std::make_unique<Bpe>(tokenizer_json, origin);
}

}  // namespace r1::tok
