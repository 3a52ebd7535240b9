// UTF-8 helpers shared by the tokenizers: validation by maximal subparts (the rule Rust's
// from_utf8_lossy and Hugging Face use, so our U+FFFD placement matches theirs) and a lenient
// Unicode normalizer that leaves invalid bytes untouched instead of rejecting the text.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace r1::utf8 {

enum class Seq { Valid, Invalid, Incomplete };

// Classifies the sequence starting at p[0] (n > 0 bytes available). len: bytes of the valid
// character, or of the maximal invalid subpart, or of the valid-but-truncated prefix.
Seq classify(const unsigned char* p, size_t n, size_t& len);

// Replaces every maximal invalid subpart (and a truncated tail) with U+FFFD.
std::string lossy(std::string_view bytes);
// Appends lossy(bytes) minus a trailing truncated sequence; returns how many bytes were consumed.
size_t lossy_complete(std::string_view bytes, std::string& out);

bool valid(std::string_view s);

enum class NormForm { None, NFC, NFD, NFKC, NFKD };
// Normalizes each maximal valid run; invalid bytes pass through unchanged (never an error).
std::string normalize(std::string_view s, NormForm form);
// True when `s` is known to be unchanged by NFC without running utf8proc (cheap scan).
bool nfc_quick_stable(std::string_view s);

}  // namespace r1::utf8
