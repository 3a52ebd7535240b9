// "Did you mean ...?": the nearest of a list of known names to one the user typed (an unknown
// subcommand, flag or JSON key), by edit distance with transpositions ("chta" is one edit from
// "chat").
#pragma once
#include <string>
#include <vector>

namespace r1 {

// The choice nearest to `word`, or "" when none is close enough to be what was meant.
std::string nearest(const std::string& word, const std::vector<std::string>& choices);

// `"key"`, quoted as JSON, with " (did you mean "x"?)" or " (expected one of: a, b, c)".
std::string unknown_name(const std::string& what, const std::string& word, const std::vector<std::string>& choices);

}  // namespace r1
