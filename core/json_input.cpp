#include "core/json_input.h"

#include <algorithm>

#include "core/error.h"
#include "core/suggest.h"
#include "core/tok_utf8.h"

namespace r1 {

bool json_too_deep(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') i++;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return false;
}

nlohmann::json parse_json(std::string_view text, const std::string& what) {
  if (json_too_deep(text))
    fail_input(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Not nlohmann's message: it quotes the offending bytes, which may be invalid UTF-8 themselves.
    // Bytes count from 1, as nlohmann counts them; a bad UTF-8 sequence is placed where it starts.
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    size_t len = 0;
    for (size_t i = 0; i < text.size(); i += len)
      if (utf8::classify(p + i, text.size() - i, len) != utf8::Seq::Valid)
        fail_input(what + ": invalid UTF-8 at byte " + std::to_string(i + 1));
    fail_input(what + ": malformed JSON at byte " + std::to_string(e.byte));
  } catch (const nlohmann::json::exception&) {  // out_of_range: a number like 1e999
    fail_input(what + ": a number in the JSON is out of range");
  }
}

void check_keys(const nlohmann::json& j, const std::vector<std::string>& known, const std::string& where) {
  for (auto& [k, v] : j.items())
    if (std::find(known.begin(), known.end(), k) == known.end()) fail_input(where + ": " + unknown_name("key", k, known));
}

}  // namespace r1
