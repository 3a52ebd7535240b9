#include "core/json_input.h"

#include "core/error.h"

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
    // nlohmann's own message quotes the offending bytes, which may be invalid UTF-8 themselves.
    const bool utf8 = std::string_view(e.what()).find("UTF-8") != std::string_view::npos;
    fail_input(what + (utf8 ? ": invalid UTF-8" : ": malformed JSON") + " at byte " + std::to_string(e.byte));
  }
}

}  // namespace r1
