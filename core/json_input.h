// JSON that r1 reads from files and stdin (batch records, messages, configs, tokenizer files,
// .r1m metadata, chat snapshots), parsed with a nesting limit. nlohmann's parser is iterative,
// but copying, comparing and dumping a value recurse once per level: a 200 KB line of '['
// parses, then overflows the stack in whatever touches it next. Nothing r1 reads nests more than
// a few levels deep, so anything past kMaxJsonDepth is refused before it is parsed.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace r1 {

inline constexpr int kMaxJsonDepth = 128;

// True when text nests arrays and objects deeper than `limit` (counted outside strings, so it is
// never below what a parser would build before it stops).
bool json_too_deep(std::string_view text, int limit = kMaxJsonDepth);

// Parses untrusted JSON. fail_input("WHAT: ...") when it is not valid UTF-8, malformed (with the
// byte offset) or nested deeper than kMaxJsonDepth.
nlohmann::json parse_json(std::string_view text, const std::string& what);

// fail_input("WHERE: unknown key "x" (did you mean "y"?)") for a key of the object j that is not
// in `known`: a misspelt option must not be ignored without a word.
void check_keys(const nlohmann::json& j, const std::vector<std::string>& known, const std::string& where);

}  // namespace r1
