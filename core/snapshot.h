// Saved chat sessions: the conversation, the cached token prefix and the filled part of the KV
// cache, so that `/load` resumes without running the prefill again. One file: a fixed header
// (checked field by field, hashed) followed by one zstd frame holding the conversation JSON, the
// token ids and the KV bytes. A snapshot only loads into the model (R1File::identity()) and KV
// layout it was saved from.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/kv_cache.h"

namespace r1 {

inline constexpr char kSnapshotMagic[8] = {'R', '1', 'C', 'H', 'A', 'T', '\r', '\n'};
inline constexpr uint32_t kSnapshotVersion = 1;

// On disk, little-endian, at offset 0.
struct SnapshotHeader {
  char magic[8];
  uint32_t version;
  uint32_t flags;           // KV format: 1 f16, 2 q8, 0 f32 (quant/kv_format.h)
  uint64_t model_id;        // R1File::identity() of the model that made it
  uint64_t n_tokens;        // cached tokens = filled KV positions
  uint32_t n_layers, n_kv, head_dim, reserved;
  uint64_t json_bytes;      // uncompressed sizes of the sections
  uint64_t kv_bytes;        //   (the tokens take n_tokens * 4)
  uint64_t payload_bytes;   // compressed size: the rest of the file
  uint64_t header_hash;     // xxh64 of the bytes above
};
static_assert(sizeof(SnapshotHeader) == 80, "the snapshot header is a file format");

struct KvShape {
  int64_t n_layers = 0, n_kv = 0, head_dim = 0;
  KvFormat fmt = KvFormat::F16;
  int64_t row_bytes() const { return kv_row_bytes(fmt, head_dim); }
  // Bytes of K and V for n positions.
  uint64_t bytes(int64_t n) const;
};
KvShape kv_shape(const KVCache& kv);

// The conversation a snapshot carries: the chat's system prompt and turns.
struct ChatTurn {
  std::string role, content;  // content: what the template sees (the answer, for the assistant)
  std::string reasoning;      // the assistant's reasoning, kept for /think last
};
struct Conversation {
  std::string system;
  std::vector<ChatTurn> turns;
};
std::string conversation_to_json(const Conversation& c);
// fail_input when the JSON is malformed, nested too deep or not shaped like a conversation.
Conversation conversation_from_json(std::string_view json);

struct Snapshot {
  uint64_t model_id = 0;
  KvShape shape;
  std::string conversation;      // JSON text (conversation_to_json)
  std::vector<int32_t> tokens;   // what the KV cache holds, in order
  std::vector<uint8_t> kv;       // per layer: K then V, each [n_kv, n_tokens] cache rows
};

// The order in which a snapshot packs a cache's rows: per layer, K then V, per kv head, the first n
// positions. fn(is_v, offset, bytes) for each run, offset being where the run starts in one
// sequence's K (or V) cache of [layer][kv head][ctx] rows; the runs lie back to back in the packed
// bytes. Every backend that keeps such a cache (CPU, GPU) packs and unpacks through this.
template <class Fn>
void for_each_kv_run(const KvShape& s, int64_t ctx, int64_t n, Fn&& fn) {
  const uint64_t row = uint64_t(s.row_bytes()), run = row * uint64_t(n);
  for (int64_t l = 0; l < s.n_layers; l++)
    for (bool is_v : {false, true})
      for (int64_t h = 0; h < s.n_kv; h++) fn(is_v, uint64_t(l * s.n_kv + h) * uint64_t(ctx) * row, run);
}

// The first n positions of the cache, packed (no unused context).
std::vector<uint8_t> kv_extract(const KVCache& kv, int64_t n);
// Writes packed positions back; the cache must have the same shape and room for n.
void kv_restore(KVCache& kv, const std::vector<uint8_t>& packed, int64_t n);

std::string encode_snapshot(const Snapshot& s);
// Checks every size before allocating or decompressing; a corrupt or truncated file, another
// model, another KV layout or more tokens than max_tokens is a one-line fail_input.
Snapshot decode_snapshot(std::string_view bytes, uint64_t model_id, const KvShape& shape, int64_t max_tokens);

// Written to a temp file beside `path`, then renamed over it (core/out_file.h): never a
// half-written snapshot, never a device or directory replaced.
void save_snapshot(const std::string& path, const Snapshot& s);
Snapshot load_snapshot(const std::string& path, uint64_t model_id, const KvShape& shape, int64_t max_tokens);

}  // namespace r1
