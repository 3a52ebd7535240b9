// r1::Tokenizer: picks the backend, resolves BOS/EOS from tokenizer_config.json, and turns token
// bytes back into text (whole sequences and streams).
#include "core/tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"
#include "core/tok_utf8.h"
#include "core/tokenizer_backend.h"

namespace r1 {

Tokenizer::Tokenizer(std::unique_ptr<tok::Backend> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// bos_token / eos_token are a string or an AddedToken object {"content": ...}; null means none.
static std::string config_token(const nlohmann::json& cfg, const char* key, bool& present) {
  present = false;
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) { present = true; return it->get<std::string>(); }
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    present = true;
    return (*it)["content"].get<std::string>();
  }
  return "";
}

Tokenizer Tokenizer::load(const TokenizerSource& src) {
  std::unique_ptr<tok::Backend> impl;
  if (!src.sentencepiece_model.empty())
    impl = tok::make_sentencepiece(src.sentencepiece_model, src.tokenizer_config_json, src.origin);
  else if (!src.tokenizer_json.empty())
    impl = tok::make_bpe(src.tokenizer_json, src.origin);
  else
    fail_input(src.origin + ": no tokenizer.json or tokenizer.model");
  Tokenizer t(std::move(impl));

  nlohmann::json cfg = parse_json(src.tokenizer_config_json.empty() ? std::string("{}") : src.tokenizer_config_json,
                                  src.origin + ": tokenizer_config.json");
  if (!cfg.is_object())
    fail_input(src.origin + ": tokenizer_config.json is not a JSON object");
  for (int which = 0; which < 2; ++which) {
    bool present;
    std::string text = config_token(cfg, which == 0 ? "bos_token" : "eos_token", present);
    int32_t id = which == 0 ? t.impl_->default_bos() : t.impl_->default_eos();
    if (present) {
      id = t.impl_->token_id(text);
      if (id < 0)
        fail_input(src.origin + ": " + (which == 0 ? "bos_token" : "eos_token") + " '" + text +
                   "' is not in the vocabulary");
    }
    (which == 0 ? t.bos_ : t.eos_) = id;
  }
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && bos_ >= 0) ids.push_back(bos_);
  impl_->encode(text, ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (!special && impl_->is_special(id)) continue;
    impl_->token_bytes(id, bytes);
  }
  if (impl_->strips_leading_space() && !bytes.empty() && bytes[0] == ' ') bytes.erase(0, 1);
  return utf8::lossy(bytes);
}

std::string Tokenizer::token_text(int32_t id) const {
  std::string out;
  impl_->token_bytes(id, out);
  return out;
}

int32_t Tokenizer::token_id(std::string_view token) const { return impl_->token_id(token); }
int64_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }
int32_t Tokenizer::bos_id() const { return bos_; }
int32_t Tokenizer::eos_id() const { return eos_; }
bool Tokenizer::is_special(int32_t id) const { return impl_->is_special(id); }

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool special) : tok_(&tok), special_(special) {}

std::string StreamDecoder::push(int32_t id) {
  const tok::Backend& b = tok_->backend();
  if (!special_ && b.is_special(id)) return "";
  size_t before = pending_.size();
  b.token_bytes(id, pending_);
  if (first_ && pending_.size() > before) {
    if (b.strips_leading_space() && pending_[0] == ' ') pending_.erase(0, 1);
    first_ = false;
  }
  std::string out;
  size_t used = utf8::lossy_complete(pending_, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace r1
