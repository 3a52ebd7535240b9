// The GPU memory plan runs before anything is allocated, so it is testable without a GPU: a
// simulated card's free memory in, the refusal (or nothing) out. The same check refuses for real
// on the GPU machine (tests/cuda: "a model that does not fit is refused before allocating").
#include <catch2/catch.hpp>

#include "fixture_models.h"
#include "models/cuda_batch.h"

using namespace r1;

TEST_CASE("GPU out of memory is refused up front with what would fit", "[cuda][plan]") {
  auto model = Model::load(r1test::packed("tiny-qwen2", "q8"));
  const uint64_t GB = 1000000000ull, weights = cuda_weight_bytes(*model);
  REQUIRE(weights > 0);
  CHECK(cuda_fit_problem(*model, 1, 4096, 80 * GB, "H100").empty());

  // a context whose KV cache cannot fit: the message names the parts and the longest --ctx that fits
  const int64_t huge = int64_t(1) << 30;
  const std::string msg = cuda_fit_problem(*model, 1, huge, 80 * GB, "H100");
  INFO(msg);
  CHECK(msg.find("does not fit on H100") == 0);
  CHECK(msg.find("KV cache") != std::string::npos);
  const size_t at = msg.find("try --ctx ");
  REQUIRE(at != std::string::npos);
  const int64_t suggested = std::stoll(msg.substr(at + 10));
  CHECK(suggested % 256 == 0);
  CHECK(cuda_fit_problem(*model, 1, suggested, 80 * GB, "H100").empty());        // it fits
  CHECK(!cuda_fit_problem(*model, 1, suggested + 256, 80 * GB, "H100").empty());  // and is the longest

  // more slots need more cache: the same context fits one sequence but not 4096 of them
  CHECK(!cuda_fit_problem(*model, 4096, suggested, 80 * GB, "H100").empty());

  // weights alone beyond the card: no context helps
  const std::string small = cuda_fit_problem(*model, 1, 1024, weights / 2, "tiny card");
  INFO(small);
  CHECK(small.find("does not fit on tiny card") == 0);
  CHECK(small.find("try a smaller (q4) file, or --device cpu") != std::string::npos);
}
