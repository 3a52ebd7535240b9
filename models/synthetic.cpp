#include "models/synthetic.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "core/error.h"
#include "quant/half.h"
#include "quant/pack.h"

namespace r1 {
namespace {

Config qwen2(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv, double theta,
             float eps) {
  Config c;
  c.arch = Arch::Qwen2;
  c.vocab_size = vocab;
  c.hidden = hidden;
  c.intermediate = inter;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv;
  c.head_dim = 128;
  c.max_pos = 131072;
  c.rope_theta = theta;
  c.norm_eps = eps;
  c.qkv_bias = true;
  c.bos_id = 151646;
  c.eos_ids = {151643};
  return c;
}

Config llama(int64_t hidden, int64_t inter, int64_t layers, int64_t heads) {
  Config c = qwen2(128256, hidden, inter, layers, heads, 8, 500000, 1e-5f);
  c.arch = Arch::Llama;
  c.qkv_bias = false;
  c.rope_scaling = RopeScaling{"llama3", 8, 1, 4, 8192};
  c.bos_id = 128000;
  c.eos_ids = {128001};
  return c;
}

const std::map<std::string, Config>& presets() {
  static const std::map<std::string, Config> m = [] {
    std::map<std::string, Config> p;
    p["qwen-1.5b"] = qwen2(151936, 1536, 8960, 28, 12, 2, 10000, 1e-6f);
    p["qwen-7b"] = qwen2(152064, 3584, 18944, 28, 28, 4, 10000, 1e-6f);
    p["llama-8b"] = llama(4096, 14336, 32, 32);
    p["qwen-14b"] = qwen2(152064, 5120, 13824, 48, 40, 8, 1000000, 1e-5f);
    p["qwen-32b"] = qwen2(152064, 5120, 27648, 64, 40, 8, 1000000, 1e-5f);
    p["llama-70b"] = llama(8192, 28672, 80, 64);
    // tiny: every code path (GQA, bias, tail-free quant groups) in well under a megabyte
    Config t = qwen2(512, 128, 256, 2, 4, 2, 10000, 1e-6f);
    t.head_dim = 32;
    t.max_pos = 4096;
    t.bos_id = 1;
    t.eos_ids = {2};
    p["tiny"] = t;
    return p;
  }();
  return m;
}

// What a byte range holds, so it can be filled without knowing which tensor it belongs to.
enum class Fill { Codes8, Codes4, Scales, BF16, F16, F32, Ones, Bias };

struct Segment {
  uint8_t* p;
  uint64_t bytes;
  Fill kind;
};

inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Each 8-byte word from the PRNG, shaped into 8 codes / 4 halves / 2 floats of the right size.
inline uint64_t shape_word(uint64_t r, Fill k) {
  switch (k) {
    case Fill::Codes8: {
      // q8 codes are in [-127, 127]: turn the byte 0x80 (-128) into 0x81 (exact zero-byte test
      // on r ^ 0x80..., no borrow between bytes)
      const uint64_t y = r ^ 0x8080808080808080ull, lo = 0x7f7f7f7f7f7f7f7full;
      const uint64_t zero = ~(((y & lo) + lo) | y | lo);  // 0x80 in each byte where y == 0
      return r ^ (zero >> 7);
    }
    case Fill::Codes4: return r;  // every nibble (and q5 high bit) is a valid code
    case Fill::Scales: {
      // f16 scales near 2.5e-4 (codes of std ~70 -> weights of std ~0.02), low mantissa bits random
      const uint64_t base = f32_to_f16(2.2e-4f);
      return (r & 0x007f007f007f007full) | base * 0x0001000100010001ull;
    }
    case Fill::BF16:  // random sign and mantissa, magnitude in [2^-6, 2^-5)
      return (r & 0x807f807f807f807full) | 0x3c803c803c803c80ull;
    case Fill::F16:  // the same magnitudes in IEEE half
      return (r & 0x83ff83ff83ff83ffull) | 0x2400240024002400ull;
    case Fill::F32:
      return (r & 0x807fffff807fffffull) | (uint64_t(121) << 55) | (uint64_t(121) << 23);
    case Fill::Ones: {
      const uint64_t one = f32_to_bits(1.0f);
      return one | one << 32;
    }
    case Fill::Bias:  // small: |b| in [2^-8, 2^-7)
      return (r & 0x807fffff807fffffull) | (uint64_t(119) << 55) | (uint64_t(119) << 23);
  }
  return r;
}

void fill_piece(uint8_t* p, uint64_t bytes, Fill kind, uint64_t seed) {
  uint64_t s = seed;
  uint64_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    const uint64_t w = shape_word(splitmix(s), kind);
    std::memcpy(p + i, &w, 8);
  }
  if (i < bytes) {  // tails only occur for odd-sized 1-D tensors; whole elements still (4-byte f32)
    const uint64_t w = shape_word(splitmix(s), kind);
    std::memcpy(p + i, &w, size_t(bytes - i));
  }
}

// Fills all segments on every core: pieces of <= 4 MB handed out by an atomic counter.
void fill_parallel(const std::vector<Segment>& segs, uint64_t seed) {
  struct Piece {
    uint8_t* p;
    uint64_t bytes;
    Fill kind;
  };
  constexpr uint64_t kPiece = 4 << 20;  // multiple of 8: words never straddle pieces
  std::vector<Piece> pieces;
  for (auto& s : segs)
    for (uint64_t o = 0; o < s.bytes; o += kPiece) pieces.push_back({s.p + o, std::min(kPiece, s.bytes - o), s.kind});
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < pieces.size();)
      fill_piece(pieces[i].p, pieces[i].bytes, pieces[i].kind, seed * 0x100000001b3ull + i);
  };
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> th;
  for (unsigned t = 1; t < n; t++) th.emplace_back(work);
  work();
  for (auto& t : th) t.join();
}

}  // namespace

const std::vector<std::string>& synthetic_presets() {
  static const std::vector<std::string> names = {"qwen-1.5b", "qwen-7b", "llama-8b", "qwen-14b",
                                                 "qwen-32b",  "llama-70b", "tiny"};
  return names;
}

Config synthetic_config(const std::string& preset) {
  auto it = presets().find(preset);
  if (it == presets().end()) {
    std::string all;
    for (auto& n : synthetic_presets()) all += (all.empty() ? "" : ", ") + n;
    fail_usage("unknown synthetic preset '" + preset + "' (one of: " + all + ")");
  }
  return it->second;
}

std::unique_ptr<Model> make_synthetic_model(const Config& c, Format quant, uint64_t seed) {
  validate_config(c);
  // Layout: every tensor at a 64-byte boundary of one allocation, in the schema's order.
  struct Placed {
    std::string name;
    Role role;
    Format fmt;
    uint64_t rows, cols, off;
  };
  std::vector<Placed> placed;
  uint64_t total = 0;
  for (const ModelTensor& e : model_tensors(c)) {
    const uint64_t rows = e.matrix() ? e.shape[0] : 1, cols = e.shape.back();
    const Format f = recipe_format(quant, e, c.tied_embeddings);
    placed.push_back({e.name, e.role, f, rows, cols, total});
    total = align_up(total + tensor_bytes(f, rows, cols), 64);
  }
  auto* base = static_cast<uint8_t*>(std::aligned_alloc(4096, align_up(total, 4096)));
  if (!base) fail_input("synthetic model: cannot allocate " + std::to_string(total >> 20) + " MiB");

  auto m = std::make_unique<Model>();
  m->owned = std::shared_ptr<uint8_t>(base, [](uint8_t* p) { std::free(p); });
  m->cfg = c;
  std::vector<Segment> segs;
  std::map<std::string, const Placed*> by_name;
  for (auto& t : placed) {
    uint8_t* p = base + t.off;
    by_name[t.name] = &t;
    const bool bias = t.role == Role::QBias || t.role == Role::KBias || t.role == Role::VBias;
    switch (t.fmt) {
      case Format::Q8:
      case Format::Q5:
      case Format::Q4: {
        const uint64_t cb = codes_bytes(t.fmt, t.rows, t.cols), sb = t.rows * (t.cols / kGroup) * 2;
        segs.push_back({p, cb, t.fmt == Format::Q8 ? Fill::Codes8 : Fill::Codes4});
        segs.push_back({p + align_up(cb, 64), sb, Fill::Scales});
        break;
      }
      case Format::BF16: segs.push_back({p, t.rows * t.cols * 2, Fill::BF16}); break;
      case Format::F16: segs.push_back({p, t.rows * t.cols * 2, Fill::F16}); break;
      case Format::F32:
        segs.push_back({p, t.rows * t.cols * 4, t.rows > 1 ? Fill::F32 : bias ? Fill::Bias : Fill::Ones});
        break;
    }
  }
  fill_parallel(segs, seed);

  auto mat = [&](const ModelTensor& e) {
    const Placed& t = *by_name.at(e.name);
    return make_view(t.fmt, t.rows, t.cols, base + t.off);
  };
  auto vec = [&](const ModelTensor& e) { return reinterpret_cast<const float*>(base + by_name.at(e.name)->off); };
  m->bind(mat, vec);
  return m;
}

}  // namespace r1
