// cuda::sample against the CPU's Sampler: the same token for the same logits, parameters and
// draw, on random, peaked and tied rows of odd and real vocabulary sizes (scratch poisoned).
#include "core/sampler.h"
#include "cuda/cuda_test_util.h"

using namespace r1;
using namespace r1test::gpu;

TEST_CASE("cuda sample picks the CPU sampler's token, bit for bit", "[cuda][fused]") {
  R1_REQUIRE_GPU();
  const uint32_t seed = seed_for(120);
  Rng g(seed);
  INFO("seed " << seed);
  struct P {
    float temperature, top_p, min_p;
    int top_k;
  };
  const P params[] = {{0.6f, 0.95f, 0, 0}, {1.0f, 1.0f, 0, 0},       {0.6f, 0.9f, 0, 40},
                      {0.8f, 1.0f, 0.05f, 0}, {1.3f, 1.0f, 0.01f, 3000}, {0.01f, 0.5f, 0, 0}};
  int64_t checked = 0;
  for (int64_t vocab : {1, 7, 1000, 2049, 50000, 151936}) {
    DevBuf scratch(cuda::sample_scratch_bytes(vocab)), out(4), du(8);
    for (int shape = 0; shape < 3; shape++) {
      std::vector<float> x = randn(g, size_t(vocab), shape == 1 ? 1.0f : 3.0f);
      if (shape == 1 && vocab > 1) x[size_t(rand_in(g, 0, vocab - 1))] = 12.0f;  // peaked
      if (shape == 2)
        for (auto& v : x) v = std::round(v * 2) / 2;  // many ties
      const DevBuf dx = upload(x);
      for (const P& pp : params) {
        SamplerParams sp;
        sp.temperature = pp.temperature, sp.top_p = pp.top_p, sp.min_p = pp.min_p, sp.top_k = pp.top_k;
        cuda::SampleParams cp;
        cp.temperature = pp.temperature, cp.top_p = pp.top_p, cp.min_p = pp.min_p, cp.top_k = pp.top_k;
        for (uint64_t s : {1ull, 2ull, 77ull, 4096ull}) {
          sp.seed = s;
          Sampler cpu(sp, vocab);
          std::vector<float> l = x;
          const int32_t want = cpu.sample(l.data(), {});
          uint64_t st = s;
          const double u = draw_uniform(st);
          cuda::to_device(du.as<void>(), &u, 8);
          scratch.poison();
          out.poison();
          cuda::sample(dx.as<float>(), vocab, cp, du.as<double>(), scratch.as<void>(), out.as<int32_t>());
          INFO("vocab " << vocab << " shape " << shape << " T " << pp.temperature << " top_p " << pp.top_p << " min_p "
                        << pp.min_p << " top_k " << pp.top_k << " u " << u);
          REQUIRE(download<int32_t>(out, 1)[0] == want);
          checked++;
        }
      }
    }
  }
  CHECK(checked == 6 * 3 * 6 * 4);
}
