// SentencePiece backend for Llama-2 style checkpoints (tokenizer.model). The library does the
// encoding; we add HF's behaviour around it: special tokens in the text are split off first and
// each piece between them is encoded on its own, and decoding strips the dummy-prefix space once.
#include <sentencepiece_processor.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"
#include "core/tokenizer_backend.h"

namespace r1::tok {
namespace {

class Spm final : public Backend {
 public:
  Spm(const std::string& model, const std::string& config, const std::string& origin) {
    auto st = sp_.LoadFromSerializedProto(model);
    if (!st.ok()) fail_input(origin + ": tokenizer.model: " + st.ToString());
    n_ = sp_.GetPieceSize();
    special_.assign(size_t(n_), 0);
    for (int i = 0; i < n_; ++i) {
      if (sp_.IsControl(i) || sp_.IsUnknown(i)) special_[i] = 1;
      if (sp_.IsControl(i) && !sp_.IdToPiece(i).empty()) added_.push_back({sp_.IdToPiece(i), i});
    }
    // Extra tokens a Hugging Face checkpoint declares beyond (or over) the model's pieces.
    auto cfg = parse_json(config.empty() ? std::string("{}") : config, origin + ": tokenizer_config.json");
    if (cfg.is_object() && cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
      for (auto& [k, v] : cfg["added_tokens_decoder"].items()) {
        if (!v.is_object() || !v.contains("content") || !v["content"].is_string()) continue;
        int64_t id;
        try { id = std::stoll(k); } catch (...) { continue; }
        if (id < 0 || id > (1 << 24)) continue;
        std::string c = v["content"].get<std::string>();
        if (c.empty()) continue;
        if (id >= n_) {
          extra_.resize(size_t(id - n_ + 1));
          extra_[size_t(id - n_)] = c;
          special_.resize(size_t(id + 1), 0);
        }
        special_[size_t(id)] = v.value("special", false) || special_[size_t(id)];
        added_.push_back({c, int32_t(id)});
      }
    }
  }

  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t ms = text.size(), len = 0;
      int32_t id = -1;
      for (size_t i = pos; i < text.size() && id < 0; ++i)
        for (auto& [c, cid] : added_)  // leftmost, then longest
          if (text.compare(i, c.size(), c) == 0 && (id < 0 || c.size() > len)) {
            id = cid; ms = i; len = c.size();
          }
      encode_piece(text.substr(pos, ms - pos), out);
      if (id < 0) break;
      out.push_back(id);
      pos = ms + len;
    }
  }

  bool token_bytes(int32_t id, std::string& out) const override {
    if (id < 0 || id >= vocab_size()) return false;
    if (id >= n_) { out += extra_[size_t(id - n_)]; return true; }
    const std::string& p = sp_.IdToPiece(id);
    if (sp_.IsByte(id) && p.size() == 6) {  // "<0xAB>"
      out.push_back(char(std::stoi(p.substr(3, 2), nullptr, 16)));
      return true;
    }
    if (special_[id]) { out += p; return true; }
    for (size_t i = 0; i < p.size(); ++i) {
      if (p.compare(i, 3, "\xE2\x96\x81") == 0) { out.push_back(' '); i += 2; }
      else out.push_back(p[i]);
    }
    return true;
  }

  int32_t token_id(std::string_view token) const override {
    for (auto& [c, id] : added_)
      if (c == token) return id;
    int id = sp_.PieceToId(std::string(token));
    if (id == sp_.unk_id() && sp_.IdToPiece(id) != token) return -1;
    return id;
  }
  int64_t vocab_size() const override { return n_ + int64_t(extra_.size()); }
  bool is_special(int32_t id) const override { return id >= 0 && size_t(id) < special_.size() && special_[id]; }
  int32_t default_bos() const override { return sp_.bos_id(); }
  int32_t default_eos() const override { return sp_.eos_id(); }
  bool strips_leading_space() const override { return true; }

 private:
  void encode_piece(std::string_view s, std::vector<int32_t>& out) const {
    if (s.empty()) return;
    std::vector<int> ids;
    auto st = sp_.Encode(s, &ids);
    if (!st.ok()) fail_input("sentencepiece: " + st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  sentencepiece::SentencePieceProcessor sp_;
  int n_ = 0;
  std::vector<std::string> extra_;
  std::vector<uint8_t> special_;
  std::vector<std::pair<std::string, int32_t>> added_;
};

}  // namespace

std::unique_ptr<Backend> make_sentencepiece(const std::string& model_bytes,
                                            const std::string& tokenizer_config_json,
                                            const std::string& origin) {
  return std::make_unique<Spm>(model_bytes, tokenizer_config_json, origin);
}

}  // namespace r1::tok
