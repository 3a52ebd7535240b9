#include "core/tok_utf8.h"

#include <cstdlib>
#include <utf8proc.h>

namespace r1::utf8 {

Seq classify(const unsigned char* p, size_t n, size_t& len) {
  unsigned b = p[0];
  if (b < 0x80) { len = 1; return Seq::Valid; }
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) need = 1;
  else if (b == 0xE0) { need = 2; lo = 0xA0; }
  else if (b == 0xED) { need = 2; hi = 0x9F; }  // excludes surrogates
  else if (b >= 0xE1 && b <= 0xEF) need = 2;
  else if (b == 0xF0) { need = 3; lo = 0x90; }
  else if (b == 0xF4) { need = 3; hi = 0x8F; }
  else if (b >= 0xF1 && b <= 0xF3) need = 3;
  else { len = 1; return Seq::Invalid; }
  for (size_t k = 1; k <= need; ++k) {
    if (k >= n) { len = k; return Seq::Incomplete; }
    unsigned c = p[k];
    bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) { len = k; return Seq::Invalid; }
  }
  len = need + 1;
  return Seq::Valid;
}

static const char kReplacement[] = "\xEF\xBF\xBD";

size_t lossy_complete(std::string_view bytes, std::string& out) {
  auto p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0, run = 0;  // [run, i) is pending valid text
  while (i < n) {
    if (p[i] < 0x80) { ++i; continue; }
    size_t len;
    Seq s = classify(p + i, n - i, len);
    if (s == Seq::Valid) { i += len; continue; }
    out.append(bytes.data() + run, i - run);
    if (s == Seq::Incomplete) return i;
    out += kReplacement;
    i += len;
    run = i;
  }
  out.append(bytes.data() + run, n - run);
  return n;
}

std::string lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t used = lossy_complete(bytes, out);
  if (used < bytes.size()) out += kReplacement;  // a truncated tail is one maximal subpart
  return out;
}

bool valid(std::string_view s) {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0, len; i < s.size(); i += len) {
    if (p[i] < 0x80) { len = 1; continue; }
    if (classify(p + i, s.size() - i, len) != Seq::Valid) return false;
  }
  return true;
}

// Code points that NFC leaves alone in any context: no decomposition that changes them,
// combining class 0, and never the second half of a canonical composition. A run made only
// of these needs no utf8proc call (the tests check the ranges against utf8proc).
static bool nfc_safe(uint32_t c) {
  return c < 0x300 || (c >= 0x2010 && c < 0x2028) || (c >= 0x3000 && c < 0x302A) ||
         (c >= 0x3041 && c < 0x3097) || (c >= 0x30A1 && c < 0x30FB) ||
         (c >= 0x3400 && c < 0x4DC0) || (c >= 0x4E00 && c < 0xA000) ||
         (c >= 0xFF01 && c < 0xFFEF) || (c >= 0x1F300 && c < 0x1FB00);
}

static uint32_t decode_valid(const unsigned char* p, size_t len) {
  if (len == 1) return p[0];
  if (len == 2) return (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu);
  if (len == 3) return (p[0] & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
  return (p[0] & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
}

bool nfc_quick_stable(std::string_view s) {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0, len; i < s.size(); i += len) {
    if (p[i] < 0x80) { len = 1; continue; }
    if (classify(p + i, s.size() - i, len) != Seq::Valid) return false;
    if (!nfc_safe(decode_valid(p + i, len))) return false;
  }
  return true;
}

static void normalize_run(std::string_view run, NormForm form, std::string& out) {
  int opts = UTF8PROC_STABLE;
  switch (form) {
    case NormForm::NFC: opts |= UTF8PROC_COMPOSE; break;
    case NormForm::NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case NormForm::NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::NFKD: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::None: out.append(run); return;
  }
  if (form == NormForm::NFC && nfc_quick_stable(run)) { out.append(run); return; }
  utf8proc_uint8_t* res = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                    utf8proc_ssize_t(run.size()), &res, utf8proc_option_t(opts));
  if (n < 0) { out.append(run); return; }  // cannot happen on valid input; keep bytes as they are
  out.append(reinterpret_cast<const char*>(res), size_t(n));
  std::free(res);
}

std::string normalize(std::string_view s, NormForm form) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, run = 0;
  while (i < s.size()) {
    if (p[i] < 0x80) { ++i; continue; }
    size_t len;
    if (classify(p + i, s.size() - i, len) == Seq::Valid) { i += len; continue; }
    normalize_run(s.substr(run, i - run), form, out);
    out.append(s.substr(i, len));  // invalid bytes stay bytes
    i += len;
    run = i;
  }
  normalize_run(s.substr(run), form, out);
  return out;
}

}  // namespace r1::utf8
