// The fused kernels (cuda::gemv, attention_fused, the device-layout embed, argmax) against the
// scalar CPU reference, on random data and odd shapes, outputs
// poisoned first (see test_cuda_kernels.cpp for the conventions). Matrices go up in the device
// layout (kernels/cuda/layout.h); references read the file's layout, so the layout is checked too.
#include "cuda/cuda_test_util.h"

#include "quant/kv_format.h"
#include "kernels/cuda/layout.h"

using namespace r1;
using namespace r1test::gpu;

namespace {

const Format kQFormats[] = {Format::Q4, Format::Q5, Format::Q8};

// Activations whose RMSNorm is exact in any summation order: multiples of 1/8 in [-4, 4], so
// every square and partial sum of squares (below 2^24 / 64 for rows up to 16k wide) is a float
// without rounding, and the CPU and the GPU normalize (and then quantize) to the same bits.
// Other tests use Gaussian inputs.
std::vector<float> dyadic(Rng& g, size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(rand_in(g, -32, 32)) / 8.0f;
  return v;
}

// The reference input of token t: x row x_rows[t] (or t), normalized by w (if any) as ref::rmsnorm.
std::vector<float> ref_inputs(const std::vector<float>& x, int64_t cols, const std::vector<int32_t>& x_rows, int64_t n,
                              const std::vector<float>& norm, float eps) {
  std::vector<float> in(size_t(n * cols));
  for (int64_t t = 0; t < n; t++) {
    const float* src = x.data() + (x_rows.empty() ? t : x_rows[size_t(t)]) * cols;
    if (norm.empty()) std::copy(src, src + cols, in.begin() + t * cols);
    else ref::rmsnorm(in.data() + t * cols, src, norm.data(), cols, eps);
  }
  return in;
}

struct GemvCase {
  Format fmt;
  int64_t rows, cols, n;
  bool bias, accumulate, norm, remap;
};

// One Store / Accumulate launch of up to 3 outputs on n tokens (x rows remapped and normalized
// on request), each output against ref::matmul_q8act of the file-layout matrix.
void run_gemv(Rng& g, const std::vector<GemvCase>& cs) {
  const GemvCase& c0 = cs[0];
  const int64_t cols = c0.cols, n = c0.n, xr = c0.remap ? n + 3 : n;
  INFO("gemv cols " << cols << ", n " << n << (c0.norm ? ", normalized" : "") << (c0.remap ? ", remapped rows" : ""));
  const std::vector<float> x = c0.norm ? dyadic(g, size_t(xr * cols)) : randn(g, size_t(xr * cols));
  std::vector<int32_t> rows_map;
  if (c0.remap) {
    for (int64_t t = 0; t < n; t++) rows_map.push_back(int32_t(rand_in(g, 0, xr - 1)));
  }
  std::vector<float> norm;
  if (c0.norm) norm = randn(g, size_t(cols));
  const float eps = c0.norm ? pick(g, std::vector<float>{1e-6f, 1e-5f}) : 0.0f;
  const DevBuf dx = upload(x), dmap = upload(rows_map), dnorm = upload(norm);
  cuda::GemvIn in;
  in.x = dx.as<float>();
  in.x_rows = c0.remap ? dmap.as<int32_t>() : nullptr;
  in.norm = c0.norm ? dnorm.as<float>() : nullptr;
  in.eps = eps;
  const std::vector<float> xin = ref_inputs(x, cols, rows_map, n, norm, eps);
  std::vector<Mat> mats;
  mats.reserve(cs.size());
  std::vector<std::vector<float>> bias(cs.size()), y0(cs.size());
  std::vector<DevBuf> dbias(cs.size()), dy(cs.size());
  std::vector<cuda::GemvOut> outs(cs.size());
  for (size_t k = 0; k < cs.size(); k++) {
    const GemvCase& c = cs[k];
    mats.emplace_back(g, c.fmt, c.rows, cols, /*device_layout=*/true);
    outs[k].w = mats[k].dv;
    dy[k] = DevBuf(uint64_t(n * c.rows) * 4);
    if (c.accumulate) {
      y0[k] = randn(g, size_t(n * c.rows));
      cuda::to_device(dy[k].as<void>(), y0[k].data(), dy[k].bytes());
    } else {
      dy[k].poison();
    }
    outs[k].y = dy[k].as<float>();
    outs[k].epi = c.accumulate ? cuda::Epilogue::Accumulate : cuda::Epilogue::Store;
    if (c.bias && !c.accumulate) {
      bias[k] = randn(g, size_t(c.rows));
      dbias[k] = upload(bias[k]);
      outs[k].bias = dbias[k].as<float>();
    }
  }
  cuda::gemv(outs.data(), int(outs.size()), in, n);
  for (size_t k = 0; k < cs.size(); k++) {
    const GemvCase& c = cs[k];
    INFO("output " << k << ": " << format_name(c.fmt) << " rows " << c.rows << (outs[k].bias ? " +bias" : "")
                   << (c.accumulate ? " +accumulate" : ""));
    std::vector<float> want(size_t(n * c.rows));
    ref::matmul_q8act(mats[k].hv, xin.data(), n, want.data(), 0, c.rows);
    for (int64_t t = 0; t < n; t++)
      for (int64_t r = 0; r < c.rows; r++) {
        float& w = want[size_t(t * c.rows + r)];
        if (outs[k].bias) w += bias[k][size_t(r)];
        if (c.accumulate) w += y0[k][size_t(t * c.rows + r)];
      }
    const double floor = n * c.rows < 16 ? dot_scale(mats[k].hv, xin, n) : 0.0;
    check_close(download<float>(dy[k], want.size()), want, 1e-5, 0, floor);
  }
}

const std::vector<int64_t> kCols = {32, 96, 160, 384, 1536, 2080, 4096 + 32, 8960};
const std::vector<int64_t> kRows = {1, 7, 33, 129, 1000};
const std::vector<int64_t> kNs = {1, 2, 3, 5, 8, 9, 17, 64};

}  // namespace

TEST_CASE("cuda gemv matches ref::matvec_q8act for q4, q5 and q8, with the norm and row map", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(101);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : kQFormats) {
    // the grid's corners, then a random sample
    std::vector<GemvCase> cases = {{f, 1, 32, 1, false, false, false, false},     {f, 1000, 4128, 17, true, false, true, false},
                                   {f, 7, 8960, 1, false, true, false, false},     {f, 1000, 32, 1, true, false, false, true},
                                   {f, 129, 1536, 9, false, false, true, true},    {f, 33, 96, 8, true, false, false, false}};
    for (int i = 0; i < 30; i++)
      cases.push_back({f, pick(g, kRows), pick(g, kCols), pick(g, kNs), i % 4 == 1, i % 4 == 2, i % 3 == 0, i % 5 == 0});
    for (size_t i = 0; i < cases.size(); i++) {
      INFO(format_name(f) << " case " << i);
      run_gemv(g, {cases[i]});
    }
  }
}

TEST_CASE("cuda gemv with two or three matrices of mixed formats in one launch", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(102);
  Rng g(seed);
  INFO("seed " << seed);
  const std::vector<std::vector<Format>> sets = {{Format::Q4, Format::Q8, Format::Q8}, {Format::Q5, Format::Q4, Format::Q8},
                                                 {Format::Q8, Format::Q5}, {Format::Q4, Format::Q4, Format::Q4}};
  for (size_t k = 0; k < sets.size(); k++)
    for (int rep = 0; rep < 4; rep++) {
      const int64_t cols = pick(g, kCols), n = pick(g, kNs);
      const bool norm = rep % 2 == 0;
      std::vector<GemvCase> cs;
      for (Format f : sets[k]) cs.push_back({f, pick(g, kRows), cols, n, rand_in(g, 0, 1) == 1, rand_in(g, 0, 2) == 0, norm, rep == 3});
      INFO("set " << k << ", repetition " << rep);
      run_gemv(g, cs);
    }
}

TEST_CASE("cuda gemv glu writes silu(gate) * up", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(103);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : kQFormats)
    for (int i = 0; i < 10; i++) {
      const int64_t rows = pick(g, std::vector<int64_t>{7, 33, 129, 1000}), cols = pick(g, kCols), n = pick(g, kNs);
      const bool norm = i % 2 == 0;
      INFO(format_name(f) << " glu rows " << rows << ", cols " << cols << ", n " << n << (norm ? ", normalized" : ""));
      const std::vector<float> x = norm ? dyadic(g, size_t(n * cols)) : randn(g, size_t(n * cols));
      const std::vector<float> w = norm ? randn(g, size_t(cols)) : std::vector<float>{};
      const DevBuf dx = upload(x), dw = upload(w);
      const Mat gate(g, f, rows, cols, true), up(g, f, rows, cols, true);
      DevBuf dy(uint64_t(n * rows) * 4);
      dy.poison();
      cuda::GemvOut o;
      o.w = gate.dv;
      o.up = up.dv;
      o.y = dy.as<float>();
      o.epi = cuda::Epilogue::Glu;
      cuda::GemvIn in;
      in.x = dx.as<float>();
      in.norm = norm ? dw.as<float>() : nullptr;
      in.eps = 1e-6f;
      cuda::gemv(&o, 1, in, n);
      const std::vector<float> xin = ref_inputs(x, cols, {}, n, w, 1e-6f);
      std::vector<float> gr(size_t(n * rows)), ur(gr.size()), want(gr.size());
      ref::matmul_q8act(gate.hv, xin.data(), n, gr.data(), 0, rows);
      ref::matmul_q8act(up.hv, xin.data(), n, ur.data(), 0, rows);
      for (size_t k = 0; k < want.size(); k++) want[k] = gr[k] / (1.0f + std::exp(-gr[k])) * ur[k];
      check_close(download<float>(dy, want.size()), want, 1e-5);
    }
}

TEST_CASE("cuda gemv q/k/v epilogues: bias, RoPE at each row's position, k and v into the cache", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(104);
  Rng g(seed);
  INFO("seed " << seed);
  struct Shape {
    int n_heads, n_kv, hd;
    int64_t cols, ctx;
  };
  const Shape shapes[] = {{6, 2, 64, 384, 300}, {12, 2, 128, 1536, 4099}, {4, 4, 64, 160, 77}, {32, 8, 128, 4096, 1031}};
  const int64_t S = 3, L = 2, layer = 1;
  for (const Shape& sh : shapes)
    for (const auto& fm : std::vector<std::vector<Format>>{{Format::Q4, Format::Q8, Format::Q8}, {Format::Q5, Format::Q5, Format::Q4}}) {
      const int64_t hd = sh.hd, Q = sh.n_heads * hd, KV = sh.n_kv * hd, cols = sh.cols, ctx = sh.ctx;
      Config c;
      c.head_dim = hd;
      c.rope_theta = 1e6;
      const std::vector<float> inv_freq = rope_inv_freq(c);
      const DevBuf dfreq = upload(inv_freq);
      for (int64_t n : {1, 3, 9}) {
        const std::vector<cuda::RowPos> rows = make_rows(g, n, S, ctx, {ctx - 1, 0, 1, 65536});
        INFO("qkv " << format_name(fm[0]) << "/" << format_name(fm[1]) << "/" << format_name(fm[2]) << ", heads "
                    << sh.n_heads << "/" << sh.n_kv << ", hd " << hd << ", cols " << cols << ", n " << n << ", "
                    << describe(rows));
        const std::vector<float> x = dyadic(g, size_t(n * cols)), norm = randn(g, size_t(cols));
        const Mat wq(g, fm[0], Q, cols, true), wk(g, fm[1], KV, cols, true), wv(g, fm[2], KV, cols, true);
        const std::vector<float> bq = randn(g, size_t(Q)), bk = randn(g, size_t(KV)), bv = randn(g, size_t(KV));
        const std::vector<uint16_t> K0 = rand_f16_pm1(g(), size_t(S * L * KV * ctx)), V0 = rand_f16_pm1(g(), K0.size());
        const DevBuf dx = upload(x), dn = upload(norm), dbq = upload(bq), dbk = upload(bk), dbv = upload(bv), drows = upload(rows);
        DevBuf dK = upload(K0), dV = upload(V0), dq(uint64_t(n * Q) * 4);
        dq.poison();
        cuda::KVLayout kv;
        kv.k = dK.as<uint16_t>();
        kv.v = dV.as<uint16_t>();
        kv.layers = L;
        kv.n_kv = sh.n_kv;
        kv.ctx = ctx;
        kv.hd = hd;
        const cuda::GemvOut outs[3] = {{wq.dv, {}, dq.as<float>(), dbq.as<float>(), cuda::Epilogue::RopeQ},
                                       {wk.dv, {}, nullptr, dbk.as<float>(), cuda::Epilogue::RopeK},
                                       {wv.dv, {}, nullptr, dbv.as<float>(), cuda::Epilogue::CacheV}};
        cuda::GemvIn in;
        in.x = dx.as<float>();
        in.norm = dn.as<float>();
        in.eps = 1e-6f;
        in.rows = drows.as<cuda::RowPos>();
        in.inv_freq = dfreq.as<float>();
        in.kv = kv;
        in.layer = layer;
        cuda::gemv(outs, 3, in, n);
        // reference: norm, products, bias, then RoPE of q and k at each row's position
        const std::vector<float> xin = ref_inputs(x, cols, {}, n, norm, 1e-6f);
        std::vector<float> q(size_t(n * Q)), k(size_t(n * KV)), v(size_t(n * KV));
        ref::matmul_q8act(wq.hv, xin.data(), n, q.data(), 0, Q);
        ref::matmul_q8act(wk.hv, xin.data(), n, k.data(), 0, KV);
        ref::matmul_q8act(wv.hv, xin.data(), n, v.data(), 0, KV);
        std::vector<float> cs(size_t(hd / 2)), sn(size_t(hd / 2));
        for (int64_t t = 0; t < n; t++) {
          for (int64_t i = 0; i < Q; i++) q[size_t(t * Q + i)] += bq[size_t(i)];
          for (int64_t i = 0; i < KV; i++) k[size_t(t * KV + i)] += bk[size_t(i)], v[size_t(t * KV + i)] += bv[size_t(i)];
          for (int64_t i = 0; i < hd / 2; i++) {
            const float a = float(rows[size_t(t)].pos) * inv_freq[size_t(i)];
            cs[size_t(i)] = std::cos(a);
            sn[size_t(i)] = std::sin(a);
          }
          ref::rope(q.data() + t * Q, sh.n_heads, hd, cs.data(), sn.data());
          ref::rope(k.data() + t * KV, sh.n_kv, hd, cs.data(), sn.data());
        }
        {
          INFO("q");
          check_close(download<float>(dq, q.size()), q, 1e-5);
        }
        // the rows' cache entries within one f16 ulp of the reference; everything else untouched
        std::vector<uint16_t> Kout = download<uint16_t>(dK, K0.size()), Vout = download<uint16_t>(dV, V0.size());
        size_t k_bad = 0, v_bad = 0;
        for (int64_t t = 0; t < n; t++)
          for (int64_t h = 0; h < sh.n_kv; h++) {
            const size_t base = size_t((((rows[size_t(t)].slot * L + layer) * sh.n_kv + h) * ctx + rows[size_t(t)].pos) * hd);
            for (int64_t i = 0; i < hd; i++) {
              const uint16_t kw = f32_to_f16(k[size_t(t * KV + h * hd + i)]), vw = f32_to_f16(v[size_t(t * KV + h * hd + i)]);
              if (!f16_finite(Kout[base + size_t(i)]) || std::abs(f16_order(Kout[base + size_t(i)]) - f16_order(kw)) > 1) k_bad++;
              if (!f16_finite(Vout[base + size_t(i)]) || std::abs(f16_order(Vout[base + size_t(i)]) - f16_order(vw)) > 1) v_bad++;
              Kout[base + size_t(i)] = K0[base + size_t(i)];
              Vout[base + size_t(i)] = V0[base + size_t(i)];
            }
          }
        INFO("cache entries of the rows: " << k_bad << " k and " << v_bad << " v halves off by more than one ulp, of " << n * KV);
        CHECK(k_bad == 0);
        CHECK(v_bad == 0);
        check_bits(Kout, K0, "K cache outside the rows' entries");
        check_bits(Vout, V0, "V cache outside the rows' entries");
      }
    }
}

// A token's results may not depend on the other tokens of its launch (batch passes rely on it).
TEST_CASE("cuda gemv gives a token the same bits alone and among others", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(105);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : kQFormats)
    for (int64_t cols : {384, 1536, 4096 + 32}) {
      const int64_t rows = 257, n = 19;
      INFO(format_name(f) << " cols " << cols);
      const Mat w(g, f, rows, cols, true);
      const std::vector<float> x = randn(g, size_t(n * cols)), norm = randn(g, size_t(cols));
      const DevBuf dx = upload(x), dn = upload(norm);
      auto run = [&](int64_t first, int64_t count) {
        DevBuf dy(uint64_t(count * rows) * 4);
        dy.poison();
        cuda::GemvOut o{w.dv, {}, dy.as<float>(), nullptr, cuda::Epilogue::Store};
        cuda::GemvIn in;
        in.x = dx.as<float>() + first * cols;
        in.norm = dn.as<float>();
        in.eps = 1e-5f;
        cuda::gemv(&o, 1, in, count);
        return download<float>(dy, size_t(count * rows));
      };
      const std::vector<float> all = run(0, n);
      for (int64_t t : {int64_t(0), int64_t(5), n - 1}) {
        const std::vector<float> one = run(t, 1);
        CHECK(std::memcmp(one.data(), all.data() + t * rows, size_t(rows) * 4) == 0);
      }
      const std::vector<float> three = run(8, 3);  // a tile of 2 then 1
      CHECK(std::memcmp(three.data(), all.data() + 8 * rows, size_t(3 * rows) * 4) == 0);
    }
}

// The large tiles (16 tokens or more, given a workspace) must give the tile kernel's bits for
// every output and epilogue: batches and prompt chunks then match decoding alone.
TEST_CASE("cuda gemv in large tiles gives the small tiles' bits", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(110);
  Rng g(seed);
  INFO("seed " << seed);
  const int n_heads = 8, n_kv = 2, hd = 64, Q = n_heads * hd, KV = n_kv * hd, S = 2, L = 1, ctx = 300;
  Config c;
  c.head_dim = hd;
  const std::vector<float> inv_freq = rope_inv_freq(c);
  const DevBuf dfreq = upload(inv_freq);
  for (int64_t cols : {384, 1536, 2080})
    for (int64_t n : {16, 17, 64, 65, 130}) {
      INFO("cols " << cols << ", n " << n);
      const std::vector<float> x = randn(g, size_t(n * cols)), norm = randn(g, size_t(cols));
      const DevBuf dx = upload(x), dn = upload(norm);
      const Format fq = pick(g, std::vector<Format>{Format::Q4, Format::Q5, Format::Q8});
      const Mat wq(g, fq, Q, cols, true), wk(g, Format::Q8, KV, cols, true), wv(g, Format::Q5, KV, cols, true);
      const Mat gate(g, fq, 200, cols, true), up(g, fq, 200, cols, true), plain(g, Format::Q4, 77, cols, true);
      const std::vector<float> bq = randn(g, size_t(Q));
      const DevBuf dbq = upload(bq);
      std::vector<cuda::RowPos> rows;
      for (int64_t t = 0; t < n; t++) rows.push_back({int32_t(t % S), int32_t(t / S)});
      const DevBuf drows = upload(rows);
      DevBuf wqs(uint64_t(n * cols)), wds(uint64_t(n * cols / 32) * 4);
      const std::vector<float> y0 = randn(g, size_t(n * 77));
      // every output of both runs: q, the K and V caches, glu, an accumulated plain product
      auto run = [&](bool large) {
        DevBuf dq(uint64_t(n * Q) * 4), dK(uint64_t(S * L * n_kv * ctx * hd) * 2), dV(dK.bytes()), dg(uint64_t(n * 200) * 4),
            dy = upload(y0);
        for (DevBuf* d : {&dq, &dK, &dV, &dg}) d->poison(0);
        cuda::KVLayout kv;
        kv.k = dK.as<uint16_t>(), kv.v = dV.as<uint16_t>(), kv.layers = L, kv.n_kv = n_kv, kv.ctx = ctx, kv.hd = hd;
        cuda::GemvIn in;
        in.x = dx.as<float>(), in.norm = dn.as<float>(), in.eps = 1e-6f, in.rows = drows.as<cuda::RowPos>();
        in.inv_freq = dfreq.as<float>(), in.kv = kv;
        if (large) in.work_q = wqs.as<int8_t>(), in.work_d = wds.as<float>();
        const cuda::GemvOut qkv[3] = {{wq.dv, {}, dq.as<float>(), dbq.as<float>(), cuda::Epilogue::RopeQ},
                                      {wk.dv, {}, nullptr, nullptr, cuda::Epilogue::RopeK},
                                      {wv.dv, {}, nullptr, nullptr, cuda::Epilogue::CacheV}};
        cuda::gemv(qkv, 3, in, n);
        const cuda::GemvOut gu{gate.dv, up.dv, dg.as<float>(), nullptr, cuda::Epilogue::Glu};
        cuda::gemv(&gu, 1, in, n);
        in.norm = nullptr;
        const cuda::GemvOut pl{plain.dv, {}, dy.as<float>(), nullptr, cuda::Epilogue::Accumulate};
        cuda::gemv(&pl, 1, in, n);
        return std::vector<std::vector<uint8_t>>{download<uint8_t>(dq, size_t(dq.bytes())), download<uint8_t>(dK, size_t(dK.bytes())),
                                                 download<uint8_t>(dV, size_t(dV.bytes())), download<uint8_t>(dg, size_t(dg.bytes())),
                                                 download<uint8_t>(dy, size_t(dy.bytes()))};
      };
      const auto small = run(false), large = run(true);
      const char* what[] = {"q", "K cache", "V cache", "glu", "accumulated"};
      for (size_t k = 0; k < small.size(); k++) check_bits(large[k], small[k], what[k]);
    }
}

// f16 halves (uniform in [-1, 1)) as cache rows of format f: f16 as they are, q8 re-encoded.
std::vector<uint8_t> cache_rows(const std::vector<uint16_t>& h, int64_t hd, KvFormat f) {
  const int64_t rows = int64_t(h.size()) / hd, rb = kv_row_bytes(f, hd);
  std::vector<uint8_t> out(size_t(rows * rb));
  if (f == KvFormat::F16) {
    std::memcpy(out.data(), h.data(), out.size());
    return out;
  }
  std::vector<float> x(static_cast<size_t>(hd));
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t i = 0; i < hd; i++) x[size_t(i)] = f16_to_f32(h[size_t(r * hd + i)]);
    kv_encode_row(f, x.data(), hd, out.data() + r * rb);
  }
  return out;
}

TEST_CASE("cuda attention_fused matches ref::attention for each row, and merges its chunks in one launch", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(106);
  Rng g(seed);
  INFO("seed " << seed);
  const int64_t S = 3, L = 2, layer = 1;
  const int heads[][2] = {{4, 4}, {6, 2}, {12, 2}, {28, 4}, {32, 8}, {64, 8}};
  for (KvFormat kf : {KvFormat::F16, KvFormat::Q8})
  for (int hd : {64, 128})
    for (const auto& nh : heads) {
      const int n_heads = nh[0], n_kv = nh[1];
      REQUIRE(cuda::attention_fused_supports(n_heads, n_kv, hd));
      if (kf == KvFormat::Q8 && n_heads != 28 && n_heads != 6) continue;  // q8: two shapes suffice
      const int64_t ctx = 8200 + rand_in(g, 0, 60), Q = int64_t(n_heads) * hd;
      const std::vector<uint8_t> K = cache_rows(rand_f16_pm1(g(), size_t(S * L * n_kv * ctx * hd)), hd, kf),
                                 V = cache_rows(rand_f16_pm1(g(), size_t(S * L * n_kv * ctx * hd)), hd, kf);
      const DevBuf dK = upload(K), dV = upload(V);
      cuda::KVLayout kv;
      kv.k = dK.as<uint16_t>();
      kv.v = dV.as<uint16_t>();
      kv.layers = L;
      kv.n_kv = n_kv;
      kv.ctx = ctx;
      kv.hd = hd;
      kv.q8 = kf == KvFormat::Q8;
      // positions at the chunk sizes' edges (64 positions per chunk up to 4096, then 128, ...)
      std::vector<int64_t> special = {0, 1, 63, 64, 65, 255, 256, 4095, 4096, 4097, 8191, 8192, ctx - 1};
      std::shuffle(special.begin(), special.end(), g);
      std::vector<std::vector<cuda::RowPos>> sets;
      sets.push_back(make_rows(g, 1, S, ctx, {special[0]}));
      sets.push_back(make_rows(g, 1, S, ctx, {special[1]}));
      sets.push_back(make_rows(g, 5, S, ctx, {special[2], special[3], special[4], special[5], special[6]}));
      sets.push_back(make_rows(g, 6, S, ctx, {special[7], special[8], special[9], special[10], special[11], special[12]}));
      {  // a prompt chunk: one slot, consecutive positions across a chunk edge
        const int32_t slot = int32_t(rand_in(g, 0, S - 1));
        std::vector<cuda::RowPos> pre;
        for (int32_t p = 60; p < 70; p++) pre.push_back({slot, p});
        sets.push_back(pre);
      }
      for (const auto& rows : sets) {
        const int64_t n = int64_t(rows.size());
        INFO("attention " << kv_format_name(kf) << " cache, hd " << hd << ", heads " << n_heads << "/" << n_kv << ", ctx " << ctx
                          << ", " << describe(rows));
        std::vector<float> q = randn(g, size_t(n * Q));
        for (int64_t t = 0; t < n; t++) {  // sharper and flatter softmaxes
          const float s = pick(g, std::vector<float>{0.5f, 2.0f, 4.0f});
          for (int64_t i = 0; i < Q; i++) q[size_t(t * Q + i)] *= s;
        }
        std::vector<float> want(q.size()), scores(static_cast<size_t>(ctx));
        for (int64_t t = 0; t < n; t++) {
          const size_t base = size_t((rows[size_t(t)].slot * L + layer) * n_kv * ctx * kv_row_bytes(kf, hd));
          ref::attention(want.data() + t * Q, q.data() + t * Q, K.data() + base, V.data() + base, kf, ctx,
                         rows[size_t(t)].pos + 1, n_heads, n_kv, hd, scores.data());
        }
        const DevBuf dq = upload(q), drows = upload(rows);
        DevBuf work(cuda::attention_fused_work_floats(n, n_heads, hd) * 4), counters(uint64_t(n * n_kv) * 4), dout(q.size() * 4);
        work.poison();
        counters.poison(0);
        dout.poison();
        cuda::attention_fused(dout.as<float>(), dq.as<float>(), drows.as<cuda::RowPos>(), n, n_heads, kv, layer,
                              work.as<float>(), counters.as<int32_t>());
        const std::vector<float> got = download<float>(dout, want.size());
        check_close(got, want, 1e-5, size_t(Q));  // each row on its own
        const std::vector<int32_t> cnt = download<int32_t>(counters, size_t(n * n_kv));
        CHECK(std::count(cnt.begin(), cnt.end(), 0) == int64_t(cnt.size()));  // left zero for the next launch
        // each row alone gives the same bits
        for (int64_t t = 0; t < n; t += 2) {
          DevBuf d1(uint64_t(Q) * 4);
          d1.poison();
          cuda::attention_fused(d1.as<float>(), dq.as<float>() + t * Q, drows.as<cuda::RowPos>() + t, 1, n_heads, kv, layer,
                                work.as<float>(), counters.as<int32_t>());
          const std::vector<float> one = download<float>(d1, size_t(Q));
          CHECK(std::memcmp(one.data(), got.data() + t * Q, size_t(Q) * 4) == 0);
        }
      }
    }
}

TEST_CASE("cuda prompt_attention matches ref::attention for every row of a run, whatever the tiling", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(112);
  Rng g(seed);
  INFO("seed " << seed);
  struct Shape {
    int n_heads, n_kv, hd;
  };
  const Shape shapes[] = {{4, 4, 64}, {6, 2, 64}, {12, 2, 128}, {28, 4, 128}, {32, 8, 128}, {64, 8, 128}, {40, 8, 128}};
  const int64_t S = 2, L = 2, layer = 1, ctx = 4300;
  for (const Shape& sh : shapes) {
    const int64_t hd = sh.hd, Q = int64_t(sh.n_heads) * hd;
    const std::vector<uint16_t> K = rand_f16_pm1(g(), size_t(S * L * sh.n_kv * ctx * hd)), V = rand_f16_pm1(g(), K.size());
    const DevBuf dK = upload(K), dV = upload(V);
    cuda::KVLayout kv;
    kv.k = dK.as<uint16_t>(), kv.v = dV.as<uint16_t>(), kv.layers = L, kv.n_kv = sh.n_kv, kv.ctx = ctx, kv.hd = hd;
    const int R = cuda::prompt_rows_per_tile(sh.n_heads, sh.n_kv);
    for (const auto& run : std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {37, 17}, {4000, 100}, {63, 66}}) {
      const int64_t p0 = run.first, n = run.second;
      const int32_t slot = int32_t(rand_in(g, 0, S - 1));
      INFO("heads " << sh.n_heads << "/" << sh.n_kv << ", hd " << hd << ", rows at " << p0 << ".." << p0 + n - 1
                    << ", tiles of " << R);
      std::vector<cuda::RowPos> rows;
      for (int64_t t = 0; t < n; t++) rows.push_back({slot, int32_t(p0 + t)});
      std::vector<float> q = randn(g, size_t(n * Q), pick(g, std::vector<float>{0.5f, 2.0f}));
      std::vector<float> want(q.size()), scores(static_cast<size_t>(ctx));
      const size_t base = size_t((slot * L + layer) * sh.n_kv * ctx * hd);
      for (int64_t t = 0; t < n; t++)
        ref::attention(want.data() + t * Q, q.data() + t * Q, K.data() + base, V.data() + base, KvFormat::F16, ctx,
                       p0 + t + 1, sh.n_heads, sh.n_kv, int(hd), scores.data());
      const DevBuf dq = upload(q), drows = upload(rows);
      auto run_tiles = [&](int64_t per) {  // tiles of `per` rows
        std::vector<cuda::PromptTile> tiles;
        for (int64_t t = 0; t < n; t += per) tiles.push_back({int32_t(t), int32_t(std::min(per, n - t))});
        const DevBuf dt = upload(tiles);
        DevBuf out(q.size() * 4);
        out.poison();
        cuda::prompt_attention(out.as<float>(), dq.as<float>(), drows.as<cuda::RowPos>(), dt.as<cuda::PromptTile>(),
                               int64_t(tiles.size()), sh.n_heads, kv, layer);
        return download<float>(out, q.size());
      };
      const std::vector<float> got = run_tiles(R);
      // products of f16 halves (q and the softmax weights each split in two): within 3e-5
      check_close(got, want, 3e-5, size_t(Q));
      check_bits(run_tiles(1), got, "rows in tiles of 1 against full tiles");
      check_bits(run_tiles(std::max(1, R / 3)), got, "rows in tiles of a third");
    }
  }
}

TEST_CASE("cuda kv_store_q8 writes the CPU cache's q8 rows bit for bit, and only the rows' own", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(111);
  Rng g(seed);
  INFO("seed " << seed);
  for (int hd : {64, 128}) {
    const int64_t S = 2, L = 3, layer = 2, n_kv = 4, ctx = 50, rb = kv_row_bytes(KvFormat::Q8, hd), n = 7;
    const std::vector<cuda::RowPos> rows = make_rows(g, n, S, ctx, {0, ctx - 1});
    std::vector<float> k = randn(g, size_t(n * n_kv * hd), 3.0f), v = randn(g, k.size(), 0.01f);
    std::fill_n(k.begin() + hd, 32, 0.0f);      // an all-zero group: scale 0, codes 0
    k[5] = NAN, v[7] = INFINITY;                 // clamped like the CPU's
    std::vector<uint8_t> K0(size_t(S * L * n_kv * ctx * rb)), V0(K0.size());
    for (auto* c : {&K0, &V0})
      for (auto& b : *c) b = uint8_t(g());
    const DevBuf dk = upload(k), dv = upload(v), drows = upload(rows);
    DevBuf dK = upload(K0), dV = upload(V0);
    cuda::KVLayout kv;
    kv.k = dK.as<uint16_t>(), kv.v = dV.as<uint16_t>(), kv.layers = L, kv.n_kv = n_kv, kv.ctx = ctx, kv.hd = hd, kv.q8 = true;
    cuda::kv_store_q8(dk.as<float>(), dv.as<float>(), drows.as<cuda::RowPos>(), n, kv, layer);
    std::vector<uint8_t> Kw = K0, Vw = V0;
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 0; h < n_kv; h++) {
        const size_t at = size_t((((rows[size_t(t)].slot * L + layer) * n_kv + h) * ctx + rows[size_t(t)].pos) * rb);
        kv_quantize_q8(k.data() + (t * n_kv + h) * hd, hd, Kw.data() + at);
        kv_quantize_q8(v.data() + (t * n_kv + h) * hd, hd, Vw.data() + at);
      }
    INFO("hd " << hd << ", " << describe(rows));
    check_bits(download<uint8_t>(dK, K0.size()), Kw, "K cache");
    check_bits(download<uint8_t>(dV, V0.size()), Vw, "V cache");
  }
}

TEST_CASE("cuda argmax picks the first largest logit of each row and advances the position", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(107);
  Rng g(seed);
  INFO("seed " << seed);
  for (int64_t vocab : {1, 31, 1000, 151936}) {
    const int64_t n = 5;
    std::vector<float> x = randn(g, size_t(n * vocab));
    if (vocab > 1) {
      x[size_t(1 * vocab + vocab - 1)] = x[size_t(1 * vocab)] = 100.0f;  // a tie: the first index wins
      x[size_t(2 * vocab + vocab / 2)] = NAN;                            // a NaN never wins
      x[size_t(3 * vocab + vocab - 1)] = 50.0f;                          // the last element
    }
    const DevBuf dx = upload(x);
    DevBuf out(uint64_t(n) * 4), pos = upload(std::vector<int32_t>{7, 7});
    out.poison();
    cuda::argmax(dx.as<float>(), n, vocab, out.as<int32_t>(), pos.as<int32_t>() + 1);
    const std::vector<int32_t> got = download<int32_t>(out, size_t(n));
    for (int64_t t = 0; t < n; t++) {
      int64_t b = 0;
      for (int64_t i = 1; i < vocab; i++)
        if (x[size_t(t * vocab + i)] > x[size_t(t * vocab + b)] || std::isnan(x[size_t(t * vocab + b)])) b = i;
      INFO("vocab " << vocab << ", row " << t);
      CHECK(got[size_t(t)] == b);
    }
    CHECK(download<int32_t>(pos, 2) == std::vector<int32_t>{7, 8});
  }
}

TEST_CASE("cuda embed reads the device layout exactly for q4, q5 and q8", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(108);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : kQFormats)
    for (const auto& sh : std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {1000, 896}, {3001, 1536}, {17, 4128}}) {
      const Mat E(g, f, sh.first, sh.second, true);
      for (int64_t n : {1, 4, 37}) {
        std::vector<int32_t> tok(static_cast<size_t>(n));
        for (auto& t : tok) t = int32_t(rand_in(g, 0, sh.first - 1));
        INFO("embed " << format_name(f) << " [" << sh.first << ", " << sh.second << "], n " << n);
        std::vector<float> want(size_t(n * sh.second));
        for (int64_t t = 0; t < n; t++) ref::dequant_row(E.hv, tok[size_t(t)], want.data() + t * sh.second);
        const DevBuf dtok = upload(tok);
        DevBuf dx(want.size() * 4);
        dx.poison();
        cuda::embed(E.dv, dtok.as<int32_t>(), n, dx.as<float>(), /*device_layout=*/true);
        check_bits(download<float>(dx, want.size()), want, "embedding values");
      }
    }
}
