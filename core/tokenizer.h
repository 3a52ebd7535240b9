// Text <-> token ids for the R1 distills: byte-level BPE from a Hugging Face tokenizer.json
// (Qwen2 and Llama-3 families) or a SentencePiece tokenizer.model (Llama-2 style), with the
// added/special tokens of the checkpoint. Results match Hugging Face `tokenizers` id for id.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer_load.h"

namespace r1 {

namespace tok { struct Backend; }

class Tokenizer {
 public:
  // Dispatches to BPE (tokenizer.json) or SentencePiece (tokenizer.model).
  static Tokenizer load(const TokenizerSource& src);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Added/special tokens in the text are matched first and become their single ids. Safe to call
  // from several threads at once.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false) const;
  // Lossy: invalid UTF-8 in the joined token bytes becomes U+FFFD. Tokens marked special are
  // left out unless `special`.
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;
  // The token's bytes after byte-level decoding (may be a partial UTF-8 sequence); "" if out of range.
  std::string token_text(int32_t id) const;
  // Exact token -> id, or -1. Tried in order: added-token content, the vocabulary key as written
  // in tokenizer.json (e.g. "Ġthe"), then the decoded bytes (" the").
  int32_t token_id(std::string_view token) const;
  int64_t vocab_size() const;  // max id + 1 over vocab and added tokens
  int32_t bos_id() const;      // -1 if none
  int32_t eos_id() const;      // -1 if none
  bool is_special(int32_t id) const;

  const tok::Backend& backend() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<tok::Backend> impl);
  std::unique_ptr<tok::Backend> impl_;
  int32_t bos_ = -1, eos_ = -1;
};

// Incremental detokenizer for streaming output: never emits half a UTF-8 character.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool special = false);
  std::string push(int32_t id);  // the complete UTF-8 text now available
  std::string flush();           // what is left; an incomplete sequence becomes U+FFFD

 private:
  const Tokenizer* tok_;
  bool special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace r1
