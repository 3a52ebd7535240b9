#include "core/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/json_input.h"
#include "core/out_file.h"

namespace r1 {

uint64_t KvShape::bytes(int64_t n) const {
  uint64_t b = checked_mul(2 * uint64_t(n_layers), uint64_t(n_kv), "snapshot KV size");
  b = checked_mul(b, uint64_t(n), "snapshot KV size");
  return checked_mul(b, uint64_t(row_bytes()), "snapshot KV size");
}

KvShape kv_shape(const KVCache& kv) { return KvShape{kv.n_layers, kv.n_kv, kv.head_dim, kv.fmt}; }

// The header's flags for a KV format, and back (false for flags no version of r1 wrote).
static uint32_t kv_flags(KvFormat f) { return f == KvFormat::F16 ? 1 : f == KvFormat::Q8 ? 2 : 0; }
static bool kv_from_flags(uint32_t flags, KvFormat* f) {
  if (flags > 2) return false;
  *f = flags == 1 ? KvFormat::F16 : flags == 2 ? KvFormat::Q8 : KvFormat::F32;
  return true;
}

std::vector<uint8_t> kv_extract(const KVCache& kv, int64_t n) {
  if (n < 0 || n > kv.ctx) fail_input("internal: KV snapshot of " + std::to_string(n) + " positions");
  const KvShape sh = kv_shape(kv);
  std::vector<uint8_t> out(size_t(sh.bytes(n)));
  uint8_t* dst = out.data();
  for_each_kv_run(sh, kv.ctx, n, [&](bool is_v, uint64_t off, uint64_t run) {
    std::memcpy(dst, (is_v ? kv.v : kv.k).data() + off, run);
    dst += run;
  });
  return out;
}

void kv_restore(KVCache& kv, const std::vector<uint8_t>& packed, int64_t n) {
  const KvShape sh = kv_shape(kv);
  if (n < 0 || n > kv.ctx || packed.size() != sh.bytes(n)) fail_input("internal: KV snapshot does not fit the cache");
  const uint8_t* src = packed.data();
  for_each_kv_run(sh, kv.ctx, n, [&](bool is_v, uint64_t off, uint64_t run) {
    std::memcpy((is_v ? kv.v : kv.k).data() + off, src, run);
    src += run;
  });
}

std::string conversation_to_json(const Conversation& c) {
  nlohmann::json j = {{"system", c.system}, {"turns", nlohmann::json::array()}};
  for (auto& t : c.turns) j["turns"].push_back({{"role", t.role}, {"content", t.content}, {"reasoning", t.reasoning}});
  return j.dump();
}

Conversation conversation_from_json(std::string_view text) {
  const std::string bad = "not a usable r1 chat snapshot: its conversation is malformed";
  if (json_too_deep(text)) fail_input(bad);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  auto str = [](const nlohmann::json& o, const char* k) { return o.contains(k) && o[k].is_string(); };
  if (!j.is_object() || !j.contains("turns") || !j["turns"].is_array() || (j.contains("system") && !str(j, "system")))
    fail_input(bad);
  Conversation c;
  if (j.contains("system")) c.system = j["system"].get<std::string>();
  for (auto& t : j["turns"]) {
    if (!t.is_object() || !str(t, "role") || !str(t, "content")) fail_input(bad);
    c.turns.push_back({t["role"].get<std::string>(), t["content"].get<std::string>(),
                       str(t, "reasoning") ? t["reasoning"].get<std::string>() : ""});
  }
  return c;
}

static uint64_t header_hash(const SnapshotHeader& h) { return XXH64(&h, offsetof(SnapshotHeader, header_hash), 0); }

std::string encode_snapshot(const Snapshot& s) {
  const uint64_t n = s.tokens.size();
  if (s.kv.size() != s.shape.bytes(int64_t(n))) fail_input("internal: KV bytes do not match the token count");
  std::string raw;
  raw.reserve(s.conversation.size() + n * 4 + s.kv.size());
  raw += s.conversation;
  raw.append(reinterpret_cast<const char*>(s.tokens.data()), n * 4);
  raw.append(reinterpret_cast<const char*>(s.kv.data()), s.kv.size());

  std::string out(sizeof(SnapshotHeader) + ZSTD_compressBound(raw.size()), '\0');
  ZSTD_CCtx* cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);  // a flipped payload byte is caught on load
  size_t z = ZSTD_compress2(cc, out.data() + sizeof(SnapshotHeader), out.size() - sizeof(SnapshotHeader),
                            raw.data(), raw.size());
  ZSTD_freeCCtx(cc);
  if (ZSTD_isError(z)) fail_input(std::string("snapshot compression failed: ") + ZSTD_getErrorName(z));
  out.resize(sizeof(SnapshotHeader) + z);

  SnapshotHeader h{};
  std::memcpy(h.magic, kSnapshotMagic, 8);
  h.version = kSnapshotVersion;
  h.flags = kv_flags(s.shape.fmt);
  h.model_id = s.model_id;
  h.n_tokens = n;
  h.n_layers = uint32_t(s.shape.n_layers);
  h.n_kv = uint32_t(s.shape.n_kv);
  h.head_dim = uint32_t(s.shape.head_dim);
  h.json_bytes = s.conversation.size();
  h.kv_bytes = s.kv.size();
  h.payload_bytes = z;
  h.header_hash = header_hash(h);
  std::memcpy(out.data(), &h, sizeof h);
  return out;
}

[[noreturn]] static void bad(const std::string& why) { fail_input("not a usable r1 chat snapshot: " + why); }

// Every check the header allows, against a file of file_size bytes; returns the size of the
// uncompressed payload.
static uint64_t check_header(const SnapshotHeader& h, uint64_t file_size, uint64_t model_id, const KvShape& shape,
                             int64_t max_tokens) {
  if (std::memcmp(h.magic, kSnapshotMagic, 8) != 0) bad("wrong magic (not a snapshot)");
  if (h.version != kSnapshotVersion) bad("version " + std::to_string(h.version) + " (this r1 reads version 1)");
  if (h.header_hash != header_hash(h)) bad("the header is corrupt");
  if (h.payload_bytes != file_size - sizeof h) bad("the file is truncated or has trailing bytes");
  if (h.model_id != model_id)
    fail_input("this snapshot was saved with a different model; load it with the model that saved it");
  KvFormat fmt;
  if (!kv_from_flags(h.flags, &fmt)) bad("unknown KV format flags " + std::to_string(h.flags));
  const KvShape saved{h.n_layers, h.n_kv, h.head_dim, fmt};
  if (saved.n_layers != shape.n_layers || saved.n_kv != shape.n_kv || saved.head_dim != shape.head_dim)
    bad("its KV cache layout does not match this model");
  if (saved.fmt != shape.fmt)
    fail_input(std::string("this snapshot's KV cache is ") + kv_format_name(saved.fmt) + "; run with --kv " +
               kv_format_name(saved.fmt) + " to load it");
  if (h.n_tokens == 0) bad("it holds no tokens");
  if (h.n_tokens >= uint64_t(max_tokens))
    fail_input("the snapshot holds " + std::to_string(h.n_tokens) + " tokens; the context holds " +
               std::to_string(max_tokens) + " (raise --ctx)");
  if (h.kv_bytes != shape.bytes(int64_t(h.n_tokens))) bad("its KV size does not match its token count");
  if (h.json_bytes > (uint64_t(1) << 32)) bad("the conversation size is implausible");
  const uint64_t tok_bytes = checked_mul(h.n_tokens, 4, "snapshot");
  const uint64_t raw_size = checked_add(checked_add(h.json_bytes, tok_bytes, "snapshot"), h.kv_bytes, "snapshot");
  if (h.payload_bytes > ZSTD_compressBound(size_t(raw_size))) bad("the file is larger than its contents can be");
  return raw_size;
}

Snapshot decode_snapshot(std::string_view bytes, uint64_t model_id, const KvShape& shape, int64_t max_tokens) {
  SnapshotHeader h;
  if (bytes.size() < sizeof h) bad("the file is too short");
  std::memcpy(&h, bytes.data(), sizeof h);
  const uint64_t raw_size = check_header(h, bytes.size(), model_id, shape, max_tokens);
  const uint64_t tok_bytes = h.n_tokens * 4;

  const char* payload = bytes.data() + sizeof h;
  unsigned long long content = ZSTD_getFrameContentSize(payload, h.payload_bytes);
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != raw_size)
    bad("the compressed payload is corrupt");
  std::string raw(size_t(raw_size), '\0');
  size_t got = ZSTD_decompress(raw.data(), raw.size(), payload, h.payload_bytes);
  if (ZSTD_isError(got) || got != raw_size) bad("the compressed payload is corrupt");

  Snapshot s;
  s.model_id = h.model_id;
  s.shape = shape;  // the header matched it field by field
  s.conversation = raw.substr(0, size_t(h.json_bytes));
  s.tokens.resize(size_t(h.n_tokens));
  std::memcpy(s.tokens.data(), raw.data() + h.json_bytes, size_t(tok_bytes));
  s.kv.assign(raw.begin() + std::ptrdiff_t(h.json_bytes + tok_bytes), raw.end());
  return s;
}

void save_snapshot(const std::string& path, const Snapshot& s) {
  output_target(path);  // a bad destination is refused before the work of compressing
  write_file_atomic(path, encode_snapshot(s));
}

Snapshot load_snapshot(const std::string& path, uint64_t model_id, const KvShape& shape, int64_t max_tokens) {
  // O_NONBLOCK: opening a fifo must not wait for a writer; it is refused below like any non-file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail_input(path + ": cannot open (" + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) fail_input(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail_input(path + " is " + file_kind(st.st_mode) + ", not a saved chat");
  auto read_at = [&](std::string& buf, size_t off) {
    for (size_t done = off; done < buf.size();) {
      const ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, off_t(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail_input(path + ": read failed" + (n < 0 ? std::string(": ") + std::strerror(errno) : ""));
      done += size_t(n);
    }
  };
  try {
    // The header first: it bounds what the rest may be, so nothing is read on a bad one.
    const uint64_t size = uint64_t(st.st_size);
    std::string bytes(size_t(std::min<uint64_t>(size, sizeof(SnapshotHeader))), '\0');
    read_at(bytes, 0);
    if (bytes.size() == sizeof(SnapshotHeader)) {
      SnapshotHeader h;
      std::memcpy(&h, bytes.data(), sizeof h);
      check_header(h, size, model_id, shape, max_tokens);
      bytes.resize(size_t(size));
      read_at(bytes, sizeof h);
    }
    return decode_snapshot(bytes, model_id, shape, max_tokens);
  } catch (const Error& e) {
    fail_input(path + ": " + e.what());
  }
}

}  // namespace r1
