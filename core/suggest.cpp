#include "core/suggest.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace r1 {

// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
// neighbours, each one edit.
static size_t distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; i++) d[i][0] = i;
  for (size_t j = 0; j <= m; j++) d[0][j] = j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string nearest(const std::string& word, const std::vector<std::string>& choices) {
  if (word.size() > 64) return "";
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;  // further than that is another word
  for (auto& c : choices) {
    const size_t d = distance(word, c);
    if (d < best_d) best = c, best_d = d;
  }
  return best;
}

std::string unknown_name(const std::string& what, const std::string& word, const std::vector<std::string>& choices) {
  std::string s = "unknown " + what + " " + nlohmann::json(word).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::string near = nearest(word, choices);
  if (!near.empty()) return s + " (did you mean \"" + near + "\"?)";
  s += " (expected one of:";
  for (size_t i = 0; i < choices.size(); i++) s += (i ? ", " : " ") + choices[i];
  return s + ")";
}

}  // namespace r1
