// Chat snapshots: a round trip restores exactly the filled KV positions and the tokens; every
// truncation and every flipped byte is a clean r1::Error; another model or KV layout is refused.
#include <catch2/catch.hpp>
#include <random>

#include "core/error.h"
#include "core/snapshot.h"
#include "test_util.h"

namespace {

r1::KVCache make_cache(r1::KvFormat fmt, int64_t ctx, uint32_t seed) {
  r1::KVCache kv;
  kv.n_layers = 2;
  kv.n_kv = 2;
  kv.ctx = ctx;
  kv.head_dim = fmt == r1::KvFormat::Q8 ? 32 : 4;  // q8 rows are groups of 32
  kv.fmt = fmt;
  kv.k.resize(size_t(kv.n_layers * kv.layer_bytes()));
  kv.v.resize(kv.k.size());
  std::mt19937 rng(seed);
  if (seed) {
    for (auto& b : kv.k) b = uint8_t(rng());
    for (auto& b : kv.v) b = uint8_t(rng());
  }
  return kv;
}

r1::Snapshot make_snapshot(const r1::KVCache& kv, int64_t n) {
  r1::Snapshot s;
  s.model_id = 0x1234abcd5678ef00ull;
  s.shape = r1::kv_shape(kv);
  s.conversation = R"({"system":"","turns":[{"role":"user","content":"hi"}]})";
  for (int64_t i = 0; i < n; i++) s.tokens.push_back(int32_t(100 + i));
  s.kv = r1::kv_extract(kv, n);
  return s;
}

}  // namespace

TEST_CASE("snapshot round trip restores the filled KV positions", "[snapshot]") {
  for (r1::KvFormat fmt : {r1::KvFormat::F16, r1::KvFormat::F32, r1::KvFormat::Q8}) {
    INFO("kv " << r1::kv_format_name(fmt));
    r1::KVCache src = make_cache(fmt, 16, 7);
    const int64_t n = 5;
    r1::Snapshot s = make_snapshot(src, n);
    const int64_t row = fmt == r1::KvFormat::Q8 ? 32 + 4 : fmt == r1::KvFormat::F16 ? 4 * 2 : 4 * 4;
    CHECK(s.kv.size() == size_t(2 * 2 * 2 * n * row));
    std::string bytes = r1::encode_snapshot(s);
    // A bigger context on load is fine: only the filled positions travel.
    r1::KVCache dst = make_cache(fmt, 32, 0);
    r1::Snapshot back = r1::decode_snapshot(bytes, s.model_id, r1::kv_shape(dst), dst.ctx);
    CHECK(back.conversation == s.conversation);
    CHECK(back.tokens == s.tokens);
    r1::kv_restore(dst, back.kv, n);
    for (int64_t l = 0; l < 2; l++)
      for (int64_t h = 0; h < 2; h++)
        for (int64_t p = 0; p < 32; p++) {
          const uint8_t* d = dst.k.data() + l * dst.layer_bytes() + (h * dst.ctx + p) * row;
          const uint8_t* dv = dst.v.data() + l * dst.layer_bytes() + (h * dst.ctx + p) * row;
          if (p < n) {
            CHECK(std::memcmp(d, src.k.data() + l * src.layer_bytes() + (h * src.ctx + p) * row, size_t(row)) == 0);
            CHECK(std::memcmp(dv, src.v.data() + l * src.layer_bytes() + (h * src.ctx + p) * row, size_t(row)) == 0);
          } else {
            CHECK(std::all_of(d, d + row, [](uint8_t b) { return b == 0; }));
          }
        }
  }
}

TEST_CASE("corrupt or truncated snapshots are refused cleanly", "[snapshot]") {
  r1::KVCache kv = make_cache(r1::KvFormat::F16, 16, 3);
  r1::Snapshot s = make_snapshot(kv, 6);
  const std::string good = r1::encode_snapshot(s);
  auto shape = r1::kv_shape(kv);
  REQUIRE_NOTHROW(r1::decode_snapshot(good, s.model_id, shape, 16));
  for (size_t len = 0; len < good.size(); len++)
    CHECK_THROWS_AS(r1::decode_snapshot(std::string_view(good).substr(0, len), s.model_id, shape, 16), r1::Error);
  CHECK_THROWS_AS(r1::decode_snapshot(good + "x", s.model_id, shape, 16), r1::Error);
  for (size_t i = 0; i < good.size(); i++) {
    std::string bad = good;
    bad[i] = char(bad[i] ^ 0x5a);
    CHECK_THROWS_AS(r1::decode_snapshot(bad, s.model_id, shape, 16), r1::Error);
  }
  auto message = [&](uint64_t id, r1::KvShape sh, int64_t max) {
    try {
      r1::decode_snapshot(good, id, sh, max);
    } catch (const r1::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(s.model_id + 1, shape, 16).find("different model") != std::string::npos);
  auto other = shape;
  other.head_dim = 8;
  CHECK(message(s.model_id, other, 16).find("layout") != std::string::npos);
  other = shape;
  for (r1::KvFormat f : {r1::KvFormat::F32, r1::KvFormat::Q8}) {
    other.fmt = f;
    CHECK(message(s.model_id, other, 16).find("--kv f16") != std::string::npos);
  }
  CHECK(message(s.model_id, shape, 6).find("raise --ctx") != std::string::npos);
}

TEST_CASE("snapshots are written atomically", "[snapshot]") {
  r1::test::TempDir dir("r1snap");
  r1::KVCache kv = make_cache(r1::KvFormat::F32, 8, 5);
  r1::Snapshot s = make_snapshot(kv, 3);
  r1::save_snapshot(dir / "chat.r1s", s);
  r1::save_snapshot(dir / "chat.r1s", s);  // over an existing one
  CHECK(r1::test::files_containing(dir.path(), ".tmp.").empty());
  r1::Snapshot back = r1::load_snapshot(dir / "chat.r1s", s.model_id, r1::kv_shape(kv), 8);
  CHECK(back.tokens == s.tokens);
  CHECK_THROWS_AS(r1::load_snapshot(dir / "missing.r1s", s.model_id, r1::kv_shape(kv), 8), r1::Error);
  CHECK_THROWS_AS(r1::save_snapshot(dir / "no/such/dir/x.r1s", s), r1::Error);
}
