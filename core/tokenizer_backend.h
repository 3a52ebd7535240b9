// The interface behind r1::Tokenizer: one implementation per vocabulary format.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace r1::tok {

struct Backend {
  virtual ~Backend() = default;
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;  // no BOS
  // Raw bytes of one token (byte-level decoded); false when id is out of range.
  virtual bool token_bytes(int32_t id, std::string& out) const = 0;
  virtual int32_t token_id(std::string_view token) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // Fallbacks when tokenizer_config.json names no bos/eos token.
  virtual int32_t default_bos() const { return -1; }
  virtual int32_t default_eos() const { return -1; }
  // SentencePiece puts a space before the first word; decoding removes one leading space.
  virtual bool strips_leading_space() const { return false; }
};

std::unique_ptr<Backend> make_bpe(const std::string& tokenizer_json, const std::string& origin);
std::unique_ptr<Backend> make_sentencepiece(const std::string& model_bytes,
                                            const std::string& tokenizer_config_json,
                                            const std::string& origin);

}  // namespace r1::tok
