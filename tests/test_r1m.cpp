// The .r1m container: writer/reader round trips, alignment, checksums, and hostile files
// (truncated at every section boundary, flipped bytes, fields rewritten with valid checksums):
// R1File::open must throw r1::Error with a reason, never crash; the CLI must exit 2 with one line.
#include <catch2/catch.hpp>
#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <random>
#include <set>

#include "core/error.h"
#include "core/r1m.h"
#include "quant/quantize.h"
#include "test_util.h"

using namespace r1;
using namespace r1::test;
using json = nlohmann::json;

namespace {

struct Made {
  std::vector<TensorSpec> specs;
  std::vector<std::string> data;  // packed bytes per tensor
  json meta;
};

// A small file exercising every format, a 1-D tensor, odd shapes and one tensor >= 1 MiB.
// (Without `big`, for the corruption tests that write the file thousands of times.)
Made make_specs(bool big = true, uint32_t seed = 7) {
  Made m;
  m.specs = {
      {"model.embed_tokens.weight", Format::Q8, {64, 96}},
      {"model.layers.0.self_attn.q_proj.weight", Format::Q4, {32, 128}},
      {"model.norm.weight", Format::F32, {64}},
      {"odd.bf16", Format::BF16, {3, 5}},
      {"odd.f16", Format::F16, {2, 7}},
      {"big.f32", Format::F32, {512, 600}},
      {"lm_head.weight", Format::Q8, {8, 32}},
  };
  if (!big) m.specs[5] = {"small.f32", Format::F32, {5, 6}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  for (auto& s : m.specs) {
    uint64_t rows = s.shape.size() == 2 ? s.shape[0] : 1, cols = s.shape.back();
    std::vector<float> w(rows * cols);
    for (auto& x : w) x = nd(rng);
    std::string out(tensor_bytes(s.fmt, rows, cols), '\0');
    quantize_matrix(s.fmt, w.data(), int64_t(rows), int64_t(cols), out.data());
    m.data.push_back(std::move(out));
  }
  m.meta = {{"config", {{"arch", "qwen2"}}}, {"note", "test file"}, {"tokenizer", {{"json", std::string(3000, 'x')}}}};
  return m;
}

void write_made(const std::string& path, const Made& m, bool streamed = false) {
  R1Writer w(path, m.specs);
  // Written out of order, to check that order does not matter.
  for (size_t k = 0; k < m.specs.size(); k++) {
    size_t i = m.specs.size() - 1 - k;
    if (!streamed) {
      w.write_tensor(i, m.data[i].data(), m.data[i].size());
    } else {
      w.begin_tensor(i);
      const std::string& d = m.data[i];
      for (size_t off = 0; off < d.size(); off += 1000) w.append(i, d.data() + off, std::min<size_t>(1000, d.size() - off));
      w.end_tensor(i);
    }
  }
  w.finish(m.meta);
}

FileHeader header_of(const std::string& bytes) {
  FileHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  return h;
}

// Recomputes the table+metadata hash (when the ranges are inside the file) and the header hash,
// so that a rewritten field reaches the structural checks behind the checksums.
void rehash(std::string& b) {
  FileHeader h = header_of(b);
  const uint64_t n = b.size();
  uint64_t tbl_bytes;
  if (!__builtin_mul_overflow(h.n_tensors, uint64_t(sizeof(TensorEntry)), &tbl_bytes) &&
      h.table_offset <= n && tbl_bytes <= n - h.table_offset && h.meta_offset <= n && h.meta_size <= n - h.meta_offset) {
    XXH64_state_t* st = XXH64_createState();
    XXH64_reset(st, 0);
    XXH64_update(st, b.data() + h.table_offset, tbl_bytes);
    XXH64_update(st, b.data() + h.meta_offset, h.meta_size);
    h.table_meta_hash = XXH64_digest(st);
    XXH64_freeState(st);
  }
  h.header_hash = 0;
  h.header_hash = XXH64(&h, sizeof h, 0);
  std::memcpy(b.data(), &h, sizeof h);
}

TensorEntry entry_of(const std::string& b, size_t i) {
  TensorEntry e;
  std::memcpy(&e, b.data() + sizeof(FileHeader) + i * sizeof(TensorEntry), sizeof e);
  return e;
}
void set_entry(std::string& b, size_t i, const TensorEntry& e) {
  std::memcpy(b.data() + sizeof(FileHeader) + i * sizeof(TensorEntry), &e, sizeof e);
}

// Writes bytes to path and opens it: "" when it opened, else the r1::Error message. Any other
// exception fails the test.
std::string open_error(const std::string& path, const std::string& bytes) {
  write_file(path, bytes);
  try {
    auto f = R1File::open(path);
    return "";
  } catch (const Error& e) {
    CHECK(e.kind == ErrorKind::Input);
    std::string msg = e.what();
    CHECK(!msg.empty());
    CHECK(msg.find('\n') == std::string::npos);
    return msg.empty() ? "?" : msg;
  }
}

}  // namespace

TEST_CASE("r1m: writer and reader round trip every format", "[r1m]") {
  TempDir dir("r1m");
  Made m = make_specs();
  const std::string p = dir / "a.r1m";
  write_made(p, m);
  CHECK(files_containing(dir.path(), ".tmp.").empty());

  auto f = R1File::open(p);
  REQUIRE(f->tensors().size() == m.specs.size());
  CHECK(f->meta() == m.meta);
  CHECK(f->verify() == -1);
  FileHeader h = header_of(slurp(p));
  CHECK(h.data_offset % 4096 == 0);
  CHECK(h.file_size == f->size());
  for (size_t i = 0; i < m.specs.size(); i++) {
    const TensorInfo& t = f->get(m.specs[i].name);
    INFO(t.name);
    CHECK(t.fmt == m.specs[i].fmt);
    CHECK(t.shape == m.specs[i].shape);
    REQUIRE(t.bytes == m.data[i].size());
    CHECK(std::memcmp(t.data, m.data[i].data(), t.bytes) == 0);
    CHECK(t.offset % (t.bytes >= (1u << 20) ? 4096 : 64) == 0);
    CHECK(reinterpret_cast<uintptr_t>(t.data) % 64 == 0);
    CHECK(t.hash == XXH64(m.data[i].data(), m.data[i].size(), 0));
    WeightView v = t.view();
    CHECK(v.rows == int64_t(t.rows()));
    CHECK(v.cols == int64_t(t.cols()));
    if (is_quantized(t.fmt)) CHECK(reinterpret_cast<uintptr_t>(v.scales) % 64 == 0);
  }
  CHECK(f->find("nope") == nullptr);
  CHECK_THROWS_AS(f->get("nope"), Error);

  // Streaming the same tensors in pieces gives the same file, hashes and identity included.
  const std::string p2 = dir / "b.r1m";
  write_made(p2, m, true);
  CHECK(slurp(p) == slurp(p2));
  CHECK(R1File::open(p2)->identity() == f->identity());
}

TEST_CASE("r1m: unfinished or failed writes leave no file behind", "[r1m]") {
  TempDir dir("r1m");
  Made m = make_specs();
  const std::string p = dir / "x.r1m";
  {
    R1Writer w(p, m.specs);
    w.write_tensor(0, m.data[0].data(), m.data[0].size());
    CHECK(files_containing(dir.path(), ".tmp.").size() == 1);
  }  // destroyed without finish
  CHECK(files_containing(dir.path(), "x.r1m").empty());
  {
    R1Writer w(p, m.specs);
    w.write_tensor(0, m.data[0].data(), m.data[0].size());
    CHECK_THROWS_AS(w.finish(m.meta), Error);  // other tensors never written
    CHECK_THROWS_AS(w.write_tensor(1, m.data[0].data(), m.data[0].size()), Error);  // wrong size
    w.begin_tensor(2);
    CHECK_THROWS_AS(w.append(2, m.data[2].data(), m.data[2].size() + 1), Error);    // overflow
    CHECK_THROWS_AS(w.end_tensor(2), Error);                                          // incomplete
    CHECK_THROWS_AS(w.append(99, m.data[2].data(), 4), Error);                        // bad index
    CHECK_THROWS_AS(w.end_tensor(99), Error);
  }
  CHECK(files_containing(dir.path(), "x.r1m").empty());
  // Specs the format cannot hold are refused up front, without a temporary left over.
  CHECK_THROWS_AS(R1Writer(p, {{std::string(80, 'n'), Format::F32, {4}}}), Error);
  CHECK_THROWS_AS(R1Writer(p, {{"q", Format::Q4, {4, 48}}}), Error);
  CHECK_THROWS_AS(R1Writer(p, {{"r", Format::F32, {2, 2, 2}}}), Error);
  CHECK(files_containing(dir.path(), "x.r1m").empty());
  // An unwritable destination is a clean error.
  CHECK_THROWS_AS(R1Writer(dir / "no/such/dir/x.r1m", m.specs), Error);
}

TEST_CASE("r1m: truncation at every section boundary is a clean error", "[r1m]") {
  TempDir dir("r1m");
  Made m = make_specs(false);
  const std::string good_path = dir / "good.r1m";
  write_made(good_path, m);
  const std::string good = slurp(good_path);
  FileHeader h = header_of(good);
  auto f = R1File::open(good_path);

  std::set<uint64_t> cuts = {0, 1, 8, 64, sizeof(FileHeader) - 1, sizeof(FileHeader), sizeof(FileHeader) + 1,
                             h.table_offset + h.n_tensors * sizeof(TensorEntry), h.data_offset, h.data_offset + 1,
                             h.meta_offset, h.meta_offset + 1, h.file_size - 1};
  for (auto& t : f->tensors()) {
    cuts.insert(t.offset);
    cuts.insert(t.offset + t.bytes / 2);
    cuts.insert(t.offset + t.bytes);
  }
  for (uint64_t c : cuts) {
    if (c >= good.size()) continue;
    INFO("truncated to " << c << " bytes");
    std::string msg = open_error(dir / "cut.r1m", good.substr(0, c));
    CHECK(!msg.empty());
    if (c >= sizeof(FileHeader)) CHECK(msg.find("truncated") != std::string::npos);
  }
  // Appended bytes are noticed too.
  CHECK(!open_error(dir / "long.r1m", good + "x").empty());

  // Through the CLI: exit code 2 and one line on stderr, for info and verify.
  for (uint64_t c : {uint64_t(0), uint64_t(100), uint64_t(h.data_offset), uint64_t(h.meta_offset), uint64_t(h.file_size - 1)}) {
    write_file(dir / "cut.r1m", good.substr(0, c));
    for (const char* cmd : {"info", "verify"}) {
      INFO(cmd << " on a file cut to " << c);
      CliResult r = run_r1({cmd, dir / "cut.r1m"});
      CHECK(r.code == 2);
      CHECK(count_lines(r.err) == 1);
      CHECK(r.out.empty());
    }
  }
}

TEST_CASE("r1m: flipped header, table and metadata bytes are caught by the checksums", "[r1m]") {
  TempDir dir("r1m");
  Made m = make_specs(false);
  write_made(dir / "good.r1m", m);
  const std::string good = slurp(dir / "good.r1m");
  FileHeader h = header_of(good);
  const uint64_t table_end = h.table_offset + h.n_tensors * sizeof(TensorEntry);

  // Every bit of the header, every byte of the table and of the metadata.
  for (uint64_t pos = 0; pos < sizeof(FileHeader); pos++)
    for (int bit = 0; bit < 8; bit++) {
      std::string b = good;
      b[pos] = char(b[pos] ^ (1 << bit));
      INFO("header byte " << pos << " bit " << bit);
      CHECK(!open_error(dir / "bad.r1m", b).empty());
    }
  std::mt19937 rng(3);
  for (uint64_t pos = h.table_offset; pos < table_end; pos++) {
    std::string b = good;
    b[pos] = char(b[pos] ^ (1 + rng() % 255));
    INFO("table byte " << pos);
    CHECK(open_error(dir / "bad.r1m", b).find("checksum") != std::string::npos);
  }
  for (uint64_t pos = h.meta_offset; pos < h.file_size; pos++) {
    std::string b = good;
    b[pos] = char(b[pos] ^ (1 + rng() % 255));
    INFO("metadata byte " << pos);
    CHECK(open_error(dir / "bad.r1m", b).find("checksum") != std::string::npos);
  }

  // Through the CLI, a few of each.
  for (uint64_t pos : {uint64_t(0), uint64_t(20), uint64_t(200), uint64_t(table_end - 1), uint64_t(h.meta_offset + 3)}) {
    std::string b = good;
    b[pos] = char(b[pos] ^ 0x10);
    write_file(dir / "bad.r1m", b);
    INFO("byte " << pos);
    CliResult r = run_r1({"info", "--json", dir / "bad.r1m"});
    CHECK(r.code == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.out.empty());
  }
}

TEST_CASE("r1m: fields rewritten with valid checksums are still rejected", "[r1m]") {
  TempDir dir("r1m");
  Made m = make_specs(false);
  write_made(dir / "good.r1m", m);
  const std::string good = slurp(dir / "good.r1m");
  const FileHeader h0 = header_of(good);
  const std::string p = dir / "bad.r1m";
  {
    std::string b = good;
    rehash(b);
    REQUIRE(open_error(p, b).empty());  // rehash alone keeps the file valid
  }

  // Header fields.
  auto with_header = [&](auto edit) {
    std::string b = good;
    FileHeader h = header_of(b);
    edit(h);
    std::memcpy(b.data(), &h, sizeof h);
    rehash(b);
    return open_error(p, b);
  };
  const uint64_t big = ~uint64_t(0);
  CHECK(!with_header([](FileHeader& h) { h.version = 2; }).empty());
  CHECK(!with_header([](FileHeader& h) { h.endian = 0x04030201; }).empty());
  CHECK(!with_header([](FileHeader& h) { h.table_offset = 0; }).empty());
  CHECK(!with_header([](FileHeader& h) { h.table_offset = 256; }).empty());
  // (n_tensors - 1 is a consistent file: the last entry becomes padding.)
  for (uint64_t n : {uint64_t(0), h0.n_tensors + 1, uint64_t(1) << 20, uint64_t(1) << 58, big}) {
    INFO("n_tensors " << n);
    CHECK(!with_header([&](FileHeader& h) { h.n_tensors = n; }).empty());
  }
  for (uint64_t v : {uint64_t(0), uint64_t(128), h0.table_offset + h0.n_tensors * sizeof(TensorEntry) - 1,
                     h0.meta_offset + 1, h0.file_size, big}) {
    INFO("data_offset " << v);
    CHECK(!with_header([&](FileHeader& h) { h.data_offset = v; }).empty());
  }
  for (uint64_t v : {uint64_t(0), h0.data_offset, h0.meta_offset - 64, h0.meta_offset + 1, h0.file_size, big}) {
    INFO("meta_offset " << v);
    CHECK(!with_header([&](FileHeader& h) { h.meta_offset = v; }).empty());
  }
  for (uint64_t v : {uint64_t(0), h0.meta_size - 1, h0.meta_size + 1, big}) {
    INFO("meta_size " << v);
    CHECK(!with_header([&](FileHeader& h) { h.meta_size = v; }).empty());
  }
  for (uint64_t v : {uint64_t(0), h0.meta_raw_size - 1, h0.meta_raw_size + 1, kMaxMetaBytes + 1, big}) {
    INFO("meta_raw_size " << v);
    CHECK(!with_header([&](FileHeader& h) { h.meta_raw_size = v; }).empty());
  }
  CHECK(!with_header([](FileHeader& h) { h.file_size += 1; }).empty());
  // Both the metadata offset and size moved so that the end still matches the file size.
  CHECK(!with_header([&](FileHeader& h) { h.meta_offset -= 64; h.meta_size += 64; }).empty());

  // Table entries.
  auto with_entry = [&](size_t i, auto edit) {
    std::string b = good;
    TensorEntry e = entry_of(b, i);
    edit(e);
    set_entry(b, i, e);
    rehash(b);
    return open_error(p, b);
  };
  const size_t n = size_t(h0.n_tensors);
  for (size_t i = 0; i < n; i++) {
    INFO("tensor " << i);
    CHECK(!with_entry(i, [](TensorEntry& e) { e.format = kFormatCount; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.format = 0xffffffffu; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.ndim = 0; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.ndim = 3; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.ndim = 0xffffffffu; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.shape[0] = 0; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.shape[0] = ~uint64_t(0); }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.shape[e.ndim - 1] = uint64_t(1) << 32; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.shape[0] += 1; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.bytes += 1; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.bytes = ~uint64_t(0); }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.offset += 1; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.offset = 0; }).empty());
    CHECK(!with_entry(i, [&](TensorEntry& e) { e.offset = h0.meta_offset / 64 * 64; }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.offset = ~uint64_t(63); }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { std::memset(e.name, 'a', sizeof e.name); }).empty());
    CHECK(!with_entry(i, [](TensorEntry& e) { e.name[0] = 0; }).empty());
  }
  // Two tensors at the same place, and two with the same name.
  {
    std::string b = good;
    TensorEntry e0 = entry_of(b, 0), e6 = entry_of(b, 6);
    e6.offset = e0.offset;
    set_entry(b, 6, e6);
    rehash(b);
    CHECK(open_error(p, b).find("overlap") != std::string::npos);
  }
  {
    std::string b = good;
    TensorEntry e0 = entry_of(b, 0), e6 = entry_of(b, 6);
    std::memcpy(e6.name, e0.name, sizeof e0.name);
    set_entry(b, 6, e6);
    rehash(b);
    CHECK(open_error(p, b).find("duplicate") != std::string::npos);
  }
  // A quantized 1-D tensor, and a quantized tensor whose columns do not split into groups.
  {
    CHECK(!with_entry(2, [](TensorEntry& e) { e.format = uint32_t(Format::Q8); e.bytes = tensor_bytes(Format::Q8, 1, 64); }).empty());
    CHECK(!with_entry(3, [](TensorEntry& e) { e.format = uint32_t(Format::Q8); e.bytes = tensor_bytes(Format::Q8, 3, 5); }).empty());
  }

  // Metadata: garbage of the same size, a valid frame of something that is not a JSON object.
  {
    std::string b = good;
    std::mt19937 rng(5);
    for (uint64_t i = h0.meta_offset; i < h0.file_size; i++) b[i] = char(rng());
    rehash(b);
    CHECK(!open_error(p, b).empty());
  }
  for (const std::string& js : {std::string("[1,2,3]"), std::string("{\"a\": "), std::string("")}) {
    std::string b = good.substr(0, h0.meta_offset);
    std::string z(ZSTD_compressBound(js.size()), '\0');
    size_t zn = ZSTD_compress(z.data(), z.size(), js.data(), js.size(), 3);
    REQUIRE(!ZSTD_isError(zn));
    b += z.substr(0, zn);
    FileHeader h = header_of(b);
    h.meta_size = zn;
    h.meta_raw_size = js.size();
    h.file_size = b.size();
    std::memcpy(b.data(), &h, sizeof h);
    rehash(b);
    INFO("metadata " << js);
    CHECK(open_error(p, b).find("metadata") != std::string::npos);
  }
}

TEST_CASE("r1m: open refuses what is not an .r1m file", "[r1m]") {
  TempDir dir("r1m");
  CHECK(!open_error(dir / "empty.r1m", "").empty());
  CHECK(!open_error(dir / "text.r1m", std::string(4096, 'a')).empty());
  CHECK_THROWS_AS(R1File::open(dir / "missing.r1m"), Error);
  CHECK_THROWS_AS(R1File::open(dir.path()), Error);  // a directory
  CliResult r = run_r1({"verify", dir / "missing.r1m"});
  CHECK(r.code == 2);
  CHECK(count_lines(r.err) == 1);
}

TEST_CASE("r1m: r1 verify passes a packed model and names a tensor with a flipped byte", "[r1m]") {
  TempDir dir("r1m");
  const std::string p = dir / "m.r1m";
  CliResult pk = run_r1({"pack", fixture_model("tiny-qwen2"), "-o", p, "--quant", "q8", "-q"});
  REQUIRE(pk.code == 0);
  CliResult ok = run_r1({"verify", p});
  CHECK(ok.code == 0);
  CHECK(ok.out.find(": ok") != std::string::npos);

  const std::string good = slurp(p);
  std::vector<std::pair<std::string, uint64_t>> where;
  {
    auto f = R1File::open(p);
    for (auto& t : f->tensors()) where.push_back({t.name, t.offset + t.bytes / 3});
  }
  // A few tensors: first, a middle one, last; each flip names exactly that tensor.
  for (size_t k : {size_t(0), where.size() / 2, where.size() - 1}) {
    std::string b = good;
    b[where[k].second] = char(b[where[k].second] ^ 0x01);
    write_file(p, b);
    INFO(where[k].first);
    CHECK(R1File::open(p)->verify() == int64_t(k));  // open does not read tensor bytes
    CliResult r = run_r1({"verify", p});
    CHECK(r.code == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("tensor " + where[k].first + "\n") != std::string::npos);
  }
}
