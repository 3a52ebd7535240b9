// Where a tokenizer comes from: a Hugging Face directory (tokenizer.json or tokenizer.model, plus
// tokenizer_config.json) or the metadata of a packed .r1m file. Commands that only need the
// tokenizer (tokenize, detokenize, template) accept either.
#pragma once
#include <string>

namespace r1 {

struct TokenizerSource {
  std::string tokenizer_json;         // HF tokenizer.json text ("" when sentencepiece_model is set)
  std::string sentencepiece_model;    // bytes of tokenizer.model (SentencePiece), else ""
  std::string tokenizer_config_json;  // tokenizer_config.json text ("{}" when absent)
  std::string origin;                 // path, for messages
};

// Reads a directory or a .r1m file; throws r1::Error (Input) with a one-line reason.
TokenizerSource load_tokenizer_source(const std::string& path);

// The .r1m half of the above, implemented next to the .r1m reader (core/runtime.cpp today).
TokenizerSource load_tokenizer_source_r1m(const std::string& path);

}  // namespace r1
