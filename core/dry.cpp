#include "core/dry.h"

#include <algorithm>
#include <cmath>

#include "core/tokenizer.h"

namespace r1 {

void DryBreakers::add(int32_t head, std::vector<int32_t> tail) {
  if (tail.size() > kMaxTail) tail.resize(kMaxTail);
  auto [b, e] = seqs_.equal_range(head);
  for (auto it = b; it != e; ++it)
    if (it->second == tail) return;
  seqs_.emplace(head, std::move(tail));
}

DryBreakers::DryBreakers(const std::vector<std::vector<int32_t>>& sequences) {
  for (auto& s : sequences)
    if (!s.empty()) add(s[0], std::vector<int32_t>(s.begin() + 1, s.end()));
}

DryBreakers::DryBreakers(const Tokenizer& tok, const std::vector<std::string>& breakers) {
  const int64_t vocab = tok.vocab_size();
  for (const std::string& s : breakers) {
    if (s.empty()) continue;
    for (int32_t id = 0; id < vocab; id++) {
      const std::string word = tok.token_text(id);
      if (word.find(s) != std::string::npos) {
        add(id, {});
        continue;
      }
      // Every place where the word's end is the start of the breaker: the rest must follow.
      for (size_t pos = word.find(s[0]); pos != std::string::npos; pos = word.find(s[0], pos + 1)) {
        const size_t n = word.size() - pos;  // < s.size(): the word does not contain s
        if (word.compare(pos, n, s, 0, n) == 0) add(id, tok.encode(std::string_view(s).substr(n)));
      }
    }
  }
}

int64_t DryBreakers::match(const int32_t* w, int64_t n, int64_t i) const {
  int64_t longest = -1;
  auto [b, e] = seqs_.equal_range(w[i]);
  for (auto it = b; it != e; ++it) {
    const int64_t len = int64_t(it->second.size());
    if (len <= longest || i + len > n - 1) continue;
    if (std::equal(it->second.begin(), it->second.end(), w + i + 1)) longest = len;
  }
  return longest;
}

bool DryBreakers::breaks_alone(int32_t token) const {
  auto [b, e] = seqs_.equal_range(token);
  for (auto it = b; it != e; ++it)
    if (it->second.empty()) return true;
  return false;
}

void apply_dry(float* logits, int64_t vocab, const DryParams& p, const DryBreakers& breakers,
               const std::vector<int32_t>& history) {
  if (!p.on() || p.base < 1.0f) return;
  const int64_t n = p.penalty_last_n < 0 ? int64_t(history.size())
                                         : std::min<int64_t>(p.penalty_last_n, int64_t(history.size()));
  const int32_t* w = history.data() + (int64_t(history.size()) - n);  // the window, w[n - 1] the latest

  // A repeat reaches back no further than the end of the latest breaker.
  int64_t limit = n;
  for (int64_t i = n - 1; i >= 0; i--) {
    const int64_t len = breakers.match(w, n, i);
    if (len >= 0) {
      limit = n - 1 - i - len;  // tokens after the breaker
      break;
    }
  }
  if (limit < p.allowed_length) return;

  // z[k]: how many tokens ending k before the latest one equal the tokens ending at the latest
  // (the Z-function of the window read backwards, r[j] = w[n - 1 - j]; box [l, r) reused).
  auto rev = [&](int64_t j) { return w[n - 1 - j]; };
  std::vector<int64_t> z(size_t(std::max<int64_t>(n, 1)), 0);
  for (int64_t k = 1, l = 0, r = 0; k < n; k++) {
    int64_t len = k < r ? std::min(r - k, z[size_t(k - l)]) : 0;
    while (k + len < n && rev(len) == rev(k + len)) len++;
    z[size_t(k)] = len;
    if (k + len > r) l = k, r = k + len;
  }

  // The token after each repeat would extend it: its longest repeat (capped at the limit).
  std::unordered_map<int32_t, int64_t> longest;
  for (int64_t k = 1; k < n; k++) {
    const int64_t len = std::min(z[size_t(k)], limit);
    if (len < p.allowed_length) continue;
    auto [it, fresh] = longest.emplace(rev(k - 1), len);
    if (!fresh) it->second = std::max(it->second, len);
  }

  // base^e overflows a float past e = ln(FLT_MAX) / ln(base): the exponent is capped there.
  const int max_exp = p.base > 1.000001f ? int(88.7228391f / std::log(p.base)) : 0;
  for (auto [t, len] : longest) {
    if (t < 0 || t >= vocab || breakers.breaks_alone(t)) continue;
    int64_t e = len - p.allowed_length;
    if (max_exp > 0 && e > max_exp) e = max_exp;
    logits[t] -= float(double(p.multiplier) * std::pow(double(p.base), double(e)));
  }
}

}  // namespace r1
