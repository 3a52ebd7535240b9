// CUDA kernels (kernels/cuda/cuda.h) against the scalar CPU reference (kernels/cpu/ref.h), on
// fresh random data and random shapes with odd sizes. Every output is poisoned before a launch
// (0xFF bytes: each f32 a NaN; 0x80 for int8 codes: -128, which quantization never produces), so
// an element a kernel does not write fails; any NaN/inf fails; float results are compared by
// relative L2 error ||out - ref|| / ||ref|| in double, with the max abs error in the report.
// Seeds are fixed (plus Catch's --rng-seed when given) and printed with every check.
// This binary runs on GPU machines only: a missing device is a failure, not a skip.
#include "cuda/cuda_test_util.h"

using namespace r1;
using namespace r1test::gpu;

// The device's codes and scales against ref::quantize_act_q8 of the host floats x: bit for bit.
void check_quantized(const DevBuf& dq, const DevBuf& dd, const std::vector<float>& x, int64_t n, int64_t cols) {
  std::vector<int8_t> q;
  std::vector<float> d;
  ref_quantize_rows(x, n, cols, q, d);
  check_bits(download<int8_t>(dq, q.size()), q, "codes");
  check_bits(download<float>(dd, d.size()), d, "scales");
}

TEST_CASE("cuda quantize matches ref::quantize_act_q8 bit for bit", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(1);
  Rng g(seed);
  INFO("seed " << seed);
  for (int64_t n : {1, 3, 9})
    for (int64_t cols : {32, 96, 1536, 4096 + 32}) {
      INFO("n " << n << ", cols " << cols);
      const int64_t G = cols / kGroup;
      std::vector<float> x = randn(g, size_t(n * cols));
      for (int64_t t = 0; t < n; t++) {
        const float scale = std::exp(std::normal_distribution<float>(0.0f, 2.0f)(g));  // rows of any magnitude
        for (int64_t i = 0; i < cols; i++) x[size_t(t * cols + i)] *= scale;
        for (int64_t grp = 0; grp < G; grp++) {
          float* xg = x.data() + t * cols + grp * kGroup;
          const int64_t k = (t * G + grp) % 5;
          if (k == 2) {  // an all-zero group: d = 0, codes 0
            std::fill(xg, xg + kGroup, 0.0f);
          } else if (k == 3) {  // amax = 127 * 2^e, so x * (127 / amax) lands on exact .5 ties
            const float s = std::ldexp(1.0f, int(rand_in(g, -8, 8)));
            for (int i = 0; i < kGroup; i++) xg[i] = (float(rand_in(g, -126, 125)) + 0.5f) * s;
            xg[rand_in(g, 0, kGroup - 1)] = (rand_in(g, 0, 1) ? 127.0f : -127.0f) * s;
          }
        }
      }
      const DevBuf dx = upload(x);
      DevBuf dq(uint64_t(n * cols)), dd(uint64_t(n * G) * sizeof(float));
      dq.poison(0x80);
      dd.poison(0xFF);
      cuda::quantize(dx.as<float>(), n, cols, dq.as<int8_t>(), dd.as<float>());
      check_quantized(dq, dd, x, n, cols);
    }
}

TEST_CASE("cuda rmsnorm matches ref::rmsnorm, and its quantized form quantize_act_q8 of its output", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(2);
  Rng g(seed);
  INFO("seed " << seed);
  for (bool quantized : {false, true})
    for (int64_t dim : {1, 7, 32, 33, 96, 100, 896, 1536, 4096 + 32})
      for (int64_t n : {1, 3, 9}) {
        if (quantized && dim % kGroup) continue;
        const float eps = pick(g, std::vector<float>{1e-6f, 1e-5f});
        INFO("rmsnorm n " << n << ", dim " << dim << ", eps " << eps << (quantized ? ", with xq/xd" : ""));
        std::vector<float> x = randn(g, size_t(n * dim)), w = randn(g, size_t(dim));
        for (int64_t t = 0; t < n; t++) {  // rows of any magnitude, and one small enough that eps matters
          const float scale = t == 1 ? 1e-3f : std::exp(std::normal_distribution<float>(0.0f, 2.0f)(g));
          for (int64_t i = 0; i < dim; i++) x[size_t(t * dim + i)] *= scale;
        }
        std::vector<float> want(x.size());
        std::vector<double> exact(x.size());
        for (int64_t t = 0; t < n; t++) {
          const float* xt = x.data() + t * dim;
          ref::rmsnorm(want.data() + t * dim, xt, w.data(), dim, eps);
          double ss = 0;
          for (int64_t i = 0; i < dim; i++) ss += double(xt[i]) * xt[i];
          const double inv = 1.0 / std::sqrt(ss / double(dim) + double(eps));
          for (int64_t i = 0; i < dim; i++) exact[size_t(t * dim + i)] = double(xt[i]) * inv * double(w[size_t(i)]);
        }
        const DevBuf dx = upload(x), dw = upload(w);
        DevBuf dout(x.size() * sizeof(float)), dq, dd;
        dout.poison();
        if (quantized) {
          dq = DevBuf(x.size());
          dd = DevBuf(x.size() / kGroup * sizeof(float));
          dq.poison(0x80);
          dd.poison(0xFF);
        }
        cuda::rmsnorm(dout.as<float>(), dx.as<float>(), dw.as<float>(), n, dim, eps, dq.as<int8_t>(), dd.as<float>());
        const std::vector<float> out = download<float>(dout, x.size());
        // ref::rmsnorm's serial float sum of squares is itself off by up to ~2e-6 at dim 4128
        // (measured against double): the GPU is held to 1e-6 of the exact value and 5e-6 of ref.
        {
          INFO("against ref::rmsnorm");
          check_close(out, want, 5e-6, size_t(dim));
        }
        {
          INFO("against the exact (double) rmsnorm");
          check_close(out, std::vector<float>(exact.begin(), exact.end()), 1e-6, size_t(dim));
        }
        if (quantized) {
          check_quantized(dq, dd, out, n, dim);  // of the GPU's own floats: must be exact
        }
      }
}

TEST_CASE("cuda embed matches ref::dequant_row exactly for every format", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(3);
  Rng g(seed);
  INFO("seed " << seed);
  struct Shape {
    int64_t rows, cols;
  };
  const std::vector<Shape> shapes = {{1, 32}, {5, 96}, {1000, 896}, {3001, 1536}, {17, 4096 + 32}, {13, 7}, {100, 33}, {50, 1001}};
  for (Format f : kFormats)
    for (const Shape& sh : shapes) {
      if (!format_fits(f, uint64_t(sh.cols))) continue;
      const Mat E(g, f, sh.rows, sh.cols);
      for (int64_t n : {1, 4, 37}) {
        std::vector<int32_t> tok(static_cast<size_t>(n));
        for (auto& t : tok) t = int32_t(rand_in(g, 0, sh.rows - 1));
        tok[0] = 0;
        if (n > 1) tok[1] = int32_t(sh.rows - 1);
        std::shuffle(tok.begin(), tok.end(), g);
        INFO("embed " << format_name(f) << " [" << sh.rows << ", " << sh.cols << "], n " << n);
        std::vector<float> want(size_t(n * sh.cols));
        for (int64_t t = 0; t < n; t++) ref::dequant_row(E.hv, tok[size_t(t)], want.data() + t * sh.cols);
        const DevBuf dtok = upload(tok);
        DevBuf dx(want.size() * sizeof(float));
        dx.poison();
        cuda::embed(E.dv, dtok.as<int32_t>(), n, dx.as<float>());
        check_bits(download<float>(dx, want.size()), want, "embedding values");
      }
    }
}

TEST_CASE("cuda matmul with one output matches the reference for every format", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(4);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : kFormats) {
    const std::vector<MatShape> shapes = matmul_shapes(g, 40);
    for (size_t i = 0; i < shapes.size(); i++) {
      const MatShape& s = shapes[i];
      // plain, +bias, +accumulate, both; activations from cuda::quantize or from the host
      const OutSpec spec{f, s.rows, i % 4 == 1 || i % 4 == 3, i % 4 >= 2};
      INFO("combo " << i << ": " << describe(spec));
      run_matmul(g, {spec}, s.cols, s.n, i % 2 == 0);
    }
  }
}

// Launches of several outputs, each set of formats `reps` times at a random shape: different
// rows per output (q, k, v), random bias / accumulate each, every output against its reference.
void run_launch_sets(int seed_index, const std::vector<std::vector<Format>>& sets, int reps) {
  const uint32_t seed = seed_for(seed_index);
  Rng g(seed);
  INFO("seed " << seed);
  for (size_t k = 0; k < sets.size(); k++)
    for (int rep = 0; rep < reps; rep++) {
      const int64_t cols = pick(g, std::vector<int64_t>{32, 96, 160, 1536, 2080});
      const int64_t n = pick(g, std::vector<int64_t>{1, 2, 3, 5, 8, 9, 17, 64});
      std::vector<OutSpec> specs;
      for (Format f : sets[k])
        specs.push_back({f, pick(g, std::vector<int64_t>{1, 7, 33, 129, 1000}), rand_in(g, 0, 1) == 1, rand_in(g, 0, 2) == 0});
      INFO("set " << k << ", repetition " << rep);
      run_matmul(g, specs, cols, n, rep % 2 == 0);
    }
}

TEST_CASE("cuda matmul with two or three outputs in one launch matches each reference", "[cuda]") {
  R1_REQUIRE_GPU();
  run_launch_sets(5,
                  {{Format::Q4, Format::Q8, Format::Q8}, {Format::Q8, Format::Q8, Format::Q8}, {Format::Q4, Format::Q4, Format::Q4},
                   {Format::BF16, Format::BF16, Format::BF16}, {Format::F16, Format::F16, Format::F16},
                   {Format::F32, Format::F32, Format::F32}, {Format::Q4, Format::Q8}, {Format::BF16, Format::BF16}},
                  3);
}

// GGUF imports can keep some of q/k/v in bf16 and quantize others: one launch must mix them.
TEST_CASE("cuda matmul mixing float and quantized formats in one launch", "[cuda]") {
  R1_REQUIRE_GPU();
  run_launch_sets(6, {{Format::Q4, Format::BF16, Format::BF16}, {Format::F16, Format::Q8, Format::F32}, {Format::BF16, Format::Q4}},
                  4);
}

// Float matrices whose cols are no multiple of 32 exist (pack falls back to bf16 for them).
TEST_CASE("cuda matmul of float formats with cols not a multiple of 32", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(7);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : {Format::F32, Format::F16, Format::BF16})
    for (int i = 0; i < 12; i++) {
      const int64_t cols = pick(g, std::vector<int64_t>{1, 7, 33, 100, 1001});
      const OutSpec spec{f, pick(g, std::vector<int64_t>{1, 7, 129}), i % 2 == 1, i % 3 == 2};
      INFO("combo " << i << ": " << describe(spec));
      run_matmul(g, {spec}, cols, pick(g, std::vector<int64_t>{1, 3, 17}), false);
    }
}

TEST_CASE("cuda matmul with glu writes silu(gate) * up to the gate output only", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(8);
  Rng g(seed);
  INFO("seed " << seed);
  for (Format f : kFormats) {
    const std::vector<MatShape> shapes = matmul_shapes(g, 8, 7);
    for (size_t i = 0; i < shapes.size(); i++) {
      const MatShape& s = shapes[i];
      INFO("glu " << format_name(f) << " combo " << i << ": rows " << s.rows << ", cols " << s.cols << ", n " << s.n);
      const DevAct act(g, s.n, s.cols, i % 2 == 0);
      const Mat gate(g, f, s.rows, s.cols), up(g, f, s.rows, s.cols);
      const uint64_t ybytes = uint64_t(s.n * s.rows) * sizeof(float);
      DevBuf dg(ybytes), du(ybytes);
      dg.poison();
      du.poison();
      cuda::MatOut outs[2];
      outs[0].w = gate.dv;
      outs[0].y = dg.as<float>();
      outs[1].w = up.dv;
      outs[1].y = du.as<float>();
      cuda::matmul(outs, 2, act.a, s.n, true);
      const std::vector<float> gr = ref_matmul(gate.hv, act.x, s.n), ur = ref_matmul(up.hv, act.x, s.n);
      std::vector<float> want(gr.size());
      for (size_t k = 0; k < want.size(); k++) want[k] = gr[k] / (1.0f + std::exp(-gr[k])) * ur[k];
      check_close(download<float>(dg, want.size()), want, 1e-5);
      const std::vector<uint8_t> ub = download<uint8_t>(du, size_t(ybytes));
      const size_t touched = size_t(std::count_if(ub.begin(), ub.end(), [](uint8_t b) { return b != 0xFF; }));
      INFO("bytes of the up output written: " << touched << " of " << ub.size());
      CHECK(touched == 0);
    }
  }
}

TEST_CASE("cuda rope_store rotates q and k like ref::rope and writes only its rows' cache entries", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(9);
  Rng g(seed);
  INFO("seed " << seed);
  struct Shape {
    int n_heads, n_kv, hd;
    int64_t ctx;
  };
  const Shape shapes[] = {{4, 1, 64, 100003}, {12, 2, 128, 4099}, {28, 4, 128, 300}, {8, 8, 64, 777}, {32, 8, 128, 1031}};
  const int64_t S = 3, L = 2, layer = 1;
  for (const Shape& sh : shapes) {
    const int64_t hd = sh.hd, n_kv = sh.n_kv, ctx = sh.ctx, Q = sh.n_heads * hd, KV = n_kv * hd;
    Config c;
    c.head_dim = hd;
    c.rope_theta = 1e6;
    const std::vector<float> inv_freq = rope_inv_freq(c);
    const DevBuf dfreq = upload(inv_freq);
    const std::vector<uint16_t> K0 = rand_f16_pm1(g(), size_t(S * L * KV * ctx)), V0 = rand_f16_pm1(g(), K0.size());
    auto at = [&](int64_t slot, int64_t h, int64_t pos) { return size_t((((slot * L + layer) * n_kv + h) * ctx + pos) * hd); };
    for (int64_t n : {1, 5, 16}) {
      std::vector<cuda::RowPos> rows = make_rows(g, n, S, ctx, {ctx - 1, 0, 1, 99991, 65536});
      INFO("rope_store n_heads " << sh.n_heads << ", n_kv " << n_kv << ", hd " << hd << ", ctx " << ctx << ", n " << n
                                 << ", " << describe(rows));
      const std::vector<float> q = randn(g, size_t(n * Q)), k = randn(g, size_t(n * KV)), v = randn(g, size_t(n * KV));
      // the reference: angles in float like models/cpu_backend.cpp, then ref::rope
      std::vector<float> qr = q, kr = k, cs(size_t(hd / 2)), sn(size_t(hd / 2));
      for (int64_t t = 0; t < n; t++) {
        for (int64_t i = 0; i < hd / 2; i++) {
          const float a = float(rows[size_t(t)].pos) * inv_freq[size_t(i)];
          cs[size_t(i)] = std::cos(a);
          sn[size_t(i)] = std::sin(a);
        }
        ref::rope(qr.data() + t * Q, sh.n_heads, hd, cs.data(), sn.data());
        ref::rope(kr.data() + t * KV, n_kv, hd, cs.data(), sn.data());
      }
      // the cache: random everywhere, NaN halves where the rows go (so a missing write shows)
      std::vector<uint16_t> Kin = K0, Vin = V0;
      for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < n_kv; h++) {
          std::fill_n(Kin.begin() + ptrdiff_t(at(rows[size_t(t)].slot, h, rows[size_t(t)].pos)), hd, uint16_t(0xFFFF));
          std::fill_n(Vin.begin() + ptrdiff_t(at(rows[size_t(t)].slot, h, rows[size_t(t)].pos)), hd, uint16_t(0xFFFF));
        }
      DevBuf dq = upload(q), dk = upload(k), dK = upload(Kin), dV = upload(Vin);
      const DevBuf dv = upload(v), drows = upload(rows);
      cuda::KVLayout kv;
      kv.k = dK.as<uint16_t>();
      kv.v = dV.as<uint16_t>();
      kv.layers = L;
      kv.n_kv = n_kv;
      kv.ctx = ctx;
      kv.hd = hd;
      cuda::rope_store(dq.as<float>(), dk.as<float>(), dv.as<float>(), drows.as<cuda::RowPos>(), n, sh.n_heads,
                       dfreq.as<float>(), kv, layer);
      {
        INFO("q");
        check_close(download<float>(dq, q.size()), qr, 1e-5);
      }
      {
        INFO("k");
        check_close(download<float>(dk, k.size()), kr, 1e-5);
      }
      check_bits(download<float>(dv, v.size()), v, "v (an input)");
      // the rows' entries: k within one f16 ulp of the reference's, v exact; then put the
      // initial contents back there and require the whole cache unchanged
      std::vector<uint16_t> Kout = download<uint16_t>(dK, K0.size()), Vout = download<uint16_t>(dV, V0.size());
      size_t k_bad = 0, v_bad = 0;
      for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < n_kv; h++) {
          const size_t base = at(rows[size_t(t)].slot, h, rows[size_t(t)].pos);
          for (int64_t i = 0; i < hd; i++) {
            const uint16_t kw = f32_to_f16(kr[size_t(t * KV + h * hd + i)]), vw = f32_to_f16(v[size_t(t * KV + h * hd + i)]);
            const uint16_t kg = Kout[base + size_t(i)], vg = Vout[base + size_t(i)];
            if (!f16_finite(kg) || std::abs(f16_order(kg) - f16_order(kw)) > 1) k_bad++;
            if (vg != vw) v_bad++;
            Kout[base + size_t(i)] = Kin[base + size_t(i)];
            Vout[base + size_t(i)] = Vin[base + size_t(i)];
          }
        }
      INFO("cache entries of the rows: " << k_bad << " k halves off by more than one ulp, " << v_bad << " v halves wrong, of "
                                          << n * KV);
      CHECK(k_bad == 0);
      CHECK(v_bad == 0);
      check_bits(Kout, Kin, "K cache outside the rows' entries");
      check_bits(Vout, Vin, "V cache outside the rows' entries");
    }
  }
}

TEST_CASE("cuda attention matches ref::attention for each row's slot and positions", "[cuda]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(10);
  Rng g(seed);
  INFO("seed " << seed);
  const int64_t S = 3, L = 2, layer = 1;
  const int heads[][2] = {{4, 4}, {12, 2}, {28, 4}, {32, 8}};
  for (int hd : {64, 128})
    for (const auto& nh : heads) {
      const int n_heads = nh[0], n_kv = nh[1];
      const int64_t ctx = 4101 + rand_in(g, 0, 60), Q = int64_t(n_heads) * hd;
      const std::vector<uint16_t> K = rand_f16_pm1(g(), size_t(S * L * n_kv * ctx * hd)), V = rand_f16_pm1(g(), K.size());
      const DevBuf dK = upload(K), dV = upload(V);
      cuda::KVLayout kv;
      kv.k = dK.as<uint16_t>();
      kv.v = dV.as<uint16_t>();
      kv.layers = L;
      kv.n_kv = n_kv;
      kv.ctx = ctx;
      kv.hd = hd;
      // positions around any split boundary: each appears in one of the row sets below
      std::vector<int64_t> special = {0, 1, 255, 256, 257, 1000, 4100};
      std::shuffle(special.begin(), special.end(), g);
      std::vector<std::vector<cuda::RowPos>> sets;
      sets.push_back(make_rows(g, 1, S, ctx, {special[0]}));
      sets.push_back(make_rows(g, 2, S, ctx, {special[1], special[2]}));
      sets.push_back(make_rows(g, 5, S, ctx, {special[3], special[4], special[5], special[6]}));
      {  // a prefill: one slot, consecutive positions across 256
        const int32_t slot = int32_t(rand_in(g, 0, S - 1));
        std::vector<cuda::RowPos> pre;
        for (int32_t p = 250; p < 259; p++) pre.push_back({slot, p});
        sets.push_back(pre);
      }
      for (const auto& rows : sets) {
        const int64_t n = int64_t(rows.size());
        int64_t true_max = 0;
        for (const auto& r : rows) true_max = std::max<int64_t>(true_max, r.pos);
        std::vector<float> q = randn(g, size_t(n * Q));
        for (int64_t t = 0; t < n; t++) {  // sharper and flatter softmaxes
          const float s = pick(g, std::vector<float>{0.5f, 2.0f, 4.0f});
          for (int64_t i = 0; i < Q; i++) q[size_t(t * Q + i)] *= s;
        }
        std::vector<float> want(q.size()), scores(static_cast<size_t>(ctx));
        for (int64_t t = 0; t < n; t++) {
          const size_t base = size_t((rows[size_t(t)].slot * L + layer) * n_kv * ctx * hd);
          ref::attention(want.data() + t * Q, q.data() + t * Q, K.data() + base, V.data() + base, KvFormat::F16, ctx,
                         rows[size_t(t)].pos + 1, n_heads, n_kv, hd, scores.data());
        }
        const DevBuf dq = upload(q), drows = upload(rows);
        for (int64_t max_pos : {true_max, ctx - 1}) {
          INFO("attention hd " << hd << ", n_heads " << n_heads << ", n_kv " << n_kv << ", ctx " << ctx << ", n " << n
                               << ", max_pos " << max_pos << ", " << describe(rows));
          DevBuf work(std::max<uint64_t>(1, cuda::attention_work_floats(n, n_heads, hd, max_pos)) * sizeof(float));
          DevBuf dout(q.size() * sizeof(float));
          work.poison();
          dout.poison();
          cuda::attention(dout.as<float>(), dq.as<float>(), drows.as<cuda::RowPos>(), n, n_heads, kv, layer, max_pos,
                          work.as<float>());
          const std::vector<float> got = download<float>(dout, want.size());
          check_close(got, want, 1e-5, size_t(Q));  // each row on its own
          // with xq/xd: the same output, and its int8 form bit for bit what quantize_act_q8 makes of it
          DevBuf dxq(q.size()), dxd(q.size() / 32 * sizeof(float));
          dxq.poison();
          dxd.poison();
          dout.poison();
          cuda::attention(dout.as<float>(), dq.as<float>(), drows.as<cuda::RowPos>(), n, n_heads, kv, layer, max_pos,
                          work.as<float>(), dxq.as<int8_t>(), dxd.as<float>());
          CHECK(download<float>(dout, want.size()) == got);
          std::vector<int8_t> wq(q.size());
          std::vector<float> wd(q.size() / 32);
          ref::quantize_act_q8(got.data(), int64_t(got.size()), wq.data(), wd.data());
          CHECK(download<int8_t>(dxq, wq.size()) == wq);
          const std::vector<float> gd = download<float>(dxd, wd.size());
          CHECK(std::memcmp(gd.data(), wd.data(), wd.size() * sizeof(float)) == 0);
        }
      }
    }
}
