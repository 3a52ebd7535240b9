// r1 bench: prefill and decode speed of a packed model or of a synthetic one built in memory at
// a real checkpoint's shapes, against the memory read bandwidth measured on the spot (decode
// reads every weight byte once per token, so that bandwidth is its ceiling).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/term.h"
#include "core/error.h"
#include "core/membench.h"
#include "core/sampler.h"
#include "kernels/cpu/cpu.h"
#include "models/backend.h"
#include "models/cuda_batch.h"
#include "models/synthetic.h"
#include "models/cpu_backend.h"
#include "quant/half.h"
#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif

namespace {

using namespace r1;
using namespace r1::cli;
using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string model, synthetic, quant, device = "cpu", kv = "f16";
  int64_t p = 512, n = 128, depth = 0, bw_mib = 1024, batch = 0;
  int threads = 0, repeat = 3;
  bool json = false, profile = false;
};

double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stats {  // of per-repeat rates
  double median = 0, min = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const size_t k = v.size();
  const double med = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
  return {med, v.front(), v.back()};
}

int32_t argmax(const float* x, int64_t n) {
  return int32_t(std::max_element(x, x + n) - x);
}

// Positions [0, depth) of every layer's K and V get random values in +-[0.5, 1): decode at
// depth reads them exactly as it would read a prefilled history (only the traffic matters).
void fill_kv(KVCache& kv, int64_t depth, ThreadPool& pool) {
  const int64_t rows = kv.n_layers * kv.n_slots;  // of the cache, each [n_kv, depth] positions
  pool.parallel_for(rows, [&](int64_t b, int64_t e, int) {
    std::vector<float> kx(size_t(kv.n_kv * kv.head_dim)), vx(kx.size());
    for (int64_t r = b; r < e; r++) {
      std::mt19937 g(uint32_t(r + 1));
      for (int64_t p = 0; p < depth; p++) {
        for (auto* x : {&kx, &vx})
          for (float& f : *x) f = f16_to_f32(uint16_t((g() & 0x83ffu) | 0x3800u));
        kv.store(r % kv.n_layers, p, kx.data(), vx.data(), r / kv.n_layers);
      }
    }
  });
}

// Size of the largest CPU cache (the last level, shared by cpu0's cores), from sysfs; 0 if
// unknown. (sysconf's _SC_LEVEL3_CACHE_SIZE reads cpuid, which in a VM may describe the host.)
uint64_t last_level_cache_bytes() {
  uint64_t best = 0;
  for (int i = 0; i < 8; i++) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    FILE* f = std::fopen((dir + "size").c_str(), "r");
    if (!f) continue;
    unsigned long long v = 0;
    char unit = 0;
    if (std::fscanf(f, "%llu%c", &v, &unit) >= 1)
      best = std::max<uint64_t>(best, v << (unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0));
    std::fclose(f);
  }
  return best;
}

// What a packed file's weights are, as `r1 pack --quant` named it: under q4 and q5 some matrices
// get more bits (layer 0's MLP is q5 in a q4 file), so no single tensor says it.
std::string file_quant(const Model& m) {
  const auto& prov = m.file->meta().value("provenance", nlohmann::json::object());
  if (prov.contains("recipe") && prov["recipe"].is_object() && prov["recipe"].contains("quant") &&
      prov["recipe"]["quant"].is_string())
    return prov["recipe"]["quant"].get<std::string>();
  std::map<std::string, uint64_t> bytes;  // no provenance: the format holding most block weights
  for (auto& L : m.layers)
    for (const WeightView* w : L.matrices())
      bytes[format_name(w->fmt)] += tensor_bytes(w->fmt, uint64_t(w->rows), uint64_t(w->cols));
  return std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

// One sequence in a session: a p-token prefill (one forward call), then n greedy decode steps at
// positions [depth, depth + n) over a cache filled with random values.
// fill_kv(depth) puts random history at positions [0, depth) of the session's cache;
// steps(t, pos, k) runs k greedy steps from token t at pos and returns the last token.
template <class S, class FillKV, class Steps>
void bench_single(const BenchArgs& a, const Model& model, S& s, FillKV fill_kv, Steps steps, int64_t warm,
                  std::mt19937& g, std::vector<double>& prefill, std::vector<double>& decode) {
  const Config& c = model.cfg;
  std::uniform_int_distribution<int32_t> tok(0, int32_t(c.vocab_size - 1));

  int32_t t = tok(g);
  s.forward(&t, 1);
  s.truncate(0);

  if (a.p > 0) {
    std::vector<int32_t> prompt(size_t(a.p));
    for (auto& x : prompt) x = tok(g);
    for (int r = 0; r < a.repeat; r++) {
      s.truncate(0);
      const auto t0 = Clock::now();
      s.forward(prompt.data(), a.p);
      prefill.push_back(double(a.p) / secs(t0));
    }
  }
  if (a.n > 0) {
    s.truncate(0);
    fill_kv(a.depth);
    t = steps(tok(g), a.depth, warm);
    for (int r = 0; r < a.repeat; r++) {
      const auto t0 = Clock::now();
      t = steps(t, a.depth, a.n);  // same positions every repeat: same KV traffic
      decode.push_back(double(a.n) / secs(t0));
    }
  }
}

// --batch B: B sequences in the slots of one CpuBatch (what r1 batch runs). Each gets its own
// p-token prompt (in the session's prefill chunks, a pass per chunk); then every decode step is one
// pass with one token of each sequence, so the weights are read once for B tokens. Rates are
// aggregate: tokens of all sequences per second.
void bench_batched(const BenchArgs& a, const Model& model, BatchSession& s, int64_t warm, std::mt19937& g,
                   std::vector<double>& prefill, std::vector<double>& decode) {
  const Config& c = model.cfg;
  const int64_t B = a.batch, V = c.vocab_size;
  std::uniform_int_distribution<int32_t> tok(0, int32_t(V - 1));
  std::vector<float> logits(static_cast<size_t>(B * V));
  std::vector<int32_t> next(static_cast<size_t>(B));
  for (auto& t : next) t = tok(g);
  SlotRun first{0, 0, 1, SlotRun::Last};  // untimed: scratch buffers, page faults (overwritten below)
  s.forward(next.data(), &first, 1, logits.data());
  if (a.p > 0) {
    std::vector<int32_t> prompt(size_t(a.p));
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < B; i++) {
      for (auto& x : prompt) x = tok(g);
      for (int64_t done = 0; done < a.p; done += s.prefill_chunk()) {
        const int64_t len = std::min(s.prefill_chunk(), a.p - done);
        const bool last = done + len == a.p;
        SlotRun run{i, done, len, last ? SlotRun::Last : SlotRun::None};
        s.forward(prompt.data() + done, &run, 1, logits.data());
      }
      next[size_t(i)] = argmax(logits.data(), V);
    }
    prefill.push_back(double(B * a.p) / secs(t0));  // once: B prompts are already a long run
  }
  if (a.n == 0) return;
  std::vector<SlotRun> runs(static_cast<size_t>(B));
  // where the backend picks tokens (the GPU's fused kernels), the argmax runs there and only the
  // tokens come back, as in r1 batch
  SamplerParams greedy;
  greedy.temperature = 0;
  const bool pick = s.picks(greedy);
  std::vector<BatchSession::RowPick> picks(static_cast<size_t>(B), {&greedy, 0.0});
  std::vector<int32_t> picked(static_cast<size_t>(B));
  auto step = [&](int64_t pos) {  // one token of every sequence at position pos
    for (int64_t i = 0; i < B; i++) runs[size_t(i)] = {i, pos, 1, SlotRun::Last};
    if (pick) {
      s.forward_pick(next.data(), runs.data(), B, picks.data(), picked.data(), logits.data());
      next.swap(picked);
      return;
    }
    s.forward(next.data(), runs.data(), B, logits.data());
    for (int64_t i = 0; i < B; i++) next[size_t(i)] = argmax(logits.data() + i * V, V);
  };
  for (int64_t i = 0; i < warm; i++) step(a.p + i);
  for (int r = 0; r < a.repeat; r++) {
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < a.n; i++) step(a.p + i);  // same positions every repeat: same KV traffic
    decode.push_back(double(B * a.n) / secs(t0));
  }
}

int run(const BenchArgs& a) {
  std::string why;
  if (a.device == "cuda" && !cuda_available(&why)) fail_usage("--device cuda: " + why);
  const bool gpu = a.device == "cuda";
  const KvFormat kv = kv_format("--kv", a.kv);
  if (gpu && kv == KvFormat::F32) fail_usage("--device cuda keeps an f16 or q8 KV cache; --kv f32 needs --device cpu");
  if (a.model.empty() == a.synthetic.empty()) fail_usage("give one of -m MODEL.r1m or --synthetic PRESET");
  if (!a.model.empty() && !a.quant.empty())
    fail_usage("--quant applies to --synthetic; a packed model's formats are fixed (r1 pack --quant)");
  if (a.p == 0 && a.n == 0) fail_usage("nothing to measure: -p and -n are both 0");
  if (a.batch > 0 && a.depth > 0) fail_usage("--depth is for one sequence; with --batch each sequence's prompt (-p) is its depth");
  if (a.profile && (!gpu || a.batch > 0)) fail_usage("--profile is for one sequence on --device cuda");

  // This machine's read bandwidth and int8-dot peak can move while the benchmark runs (a VM's
  // neighbours): each is measured before and after the runs, and the best is the ceiling. The
  // first bandwidth run is in a child process, so its buffer stays out of the peak RSS.
  const int nthreads = a.threads > 0 ? a.threads : ThreadPool::default_threads();
  const uint64_t bw_bytes = uint64_t(a.bw_mib) << 20;
  const double bw_before = gpu ? 0.0 : measure_read_bandwidth_apart(nthreads, bw_bytes);

  // The model: mapped from a file, or built in memory.
  const auto t_load = Clock::now();
  std::unique_ptr<Model> model;
  std::string name, quant = a.quant.empty() ? "q4" : a.quant;
  if (!a.synthetic.empty()) {
    Format f;
    if (!parse_format(quant, &f)) fail_usage("--quant: unknown format '" + quant + "' (q4, q5, q8, bf16, f16, f32)");
    model = make_synthetic_model(synthetic_config(a.synthetic), f);
    name = "synthetic " + a.synthetic;
  } else {
    std::error_code ec;
    if (!std::filesystem::exists(a.model, ec)) fail_input(a.model + ": no such file");
    model = Model::load(a.model);
    name = std::filesystem::path(a.model).filename().string();
    quant = file_quant(*model);
  }
  const double load_s = secs(t_load);
  const Config& c = model->cfg;
  // Positions the run fills, within what the model was made for (else --depth 4194304 allocated
  // gigabytes of cache for a 4096-position model).
  const int64_t positions = a.batch > 0 ? a.p + std::max<int64_t>(2, a.n) : std::max<int64_t>(a.p, a.depth + 2 + a.n);
  if (positions > c.max_pos)
    fail_usage(std::string(a.batch > 0 ? "-p + -n" : a.p >= a.depth + 2 + a.n ? "-p" : "--depth + -n (+ 2 warm-up tokens)") +
               " needs " + std::to_string(positions) + " positions; the model has " + std::to_string(c.max_pos));

  // q4/q5/q8 on the CPU are compute-bound when many tokens share each weight read (prefill, big
  // batches): their matrix MACs per second are compared with the measured peak of the int8 dot.
  bool all_q = is_quantized(model->lm_head.fmt);
  double layer_macs = 0;
  for (auto& L : model->layers)
    for (const WeightView* w : L.matrices()) {
      all_q = all_q && is_quantized(w->fmt);
      layer_macs += double(w->rows) * double(w->cols);
    }
  const double head_macs = double(model->lm_head.rows) * double(model->lm_head.cols);
  const bool compute = !gpu && all_q && std::string(cpu::kernel_set()) != "ref";

  ThreadPool pool(nthreads);
  const double peak_before = compute ? cpu::int8_dot_peak_gmacs(pool) : 0.0;
  const int64_t warm = 2;  // untimed decode steps first: scratch buffers, page faults of a mapped file
  const int64_t B = std::max<int64_t>(a.batch, 1);  // sequences decoded together
  std::mt19937 g(7);
  std::vector<double> prefill, decode;
  std::vector<nlohmann::json> profile;  // bench --profile (cuda): per kernel kind
  int64_t ctx, chunk = kPrefillChunk;
  if (a.batch > 0) {
    ctx = std::max<int64_t>(a.p + std::max(warm, a.n), 1);
    std::unique_ptr<BatchSession> s = make_batch(gpu ? "cuda" : "cpu", *model, B, ctx, kv, pool);
    chunk = s->prefill_chunk();
    bench_batched(a, *model, *s, warm, g, prefill, decode);
  } else {
    ctx = std::max<int64_t>({a.p, a.depth + warm + a.n, 1});
#ifdef R1_HAVE_CUDA
    if (gpu) {  // the token loop on the device: argmax feeds the next step, nothing comes back
      CudaSession s(*model, ctx, kv);
      auto steps = [&](int32_t t, int64_t pos, int64_t k) { return s.batch().decode_greedy(t, pos, k); };
      bench_single(a, *model, s, [&](int64_t depth) { s.batch().fill_kv_random(depth); }, steps, warm, g, prefill,
                   decode);
      if (a.profile && a.n > 0) {
        const int64_t k = std::min<int64_t>(a.n, 32);
        std::vector<CudaBatch::KindTime> kt = s.batch().profile_decode(1, a.depth, k);
        const std::vector<StepBytes> sb = cuda_step_bytes(*model, a.depth + k / 2, kv);
        for (const auto& e : kt) {
          if (e.launches == 0) continue;
          uint64_t bytes = 0;
          for (const auto& x : sb)
            if (x.kind == e.kind) bytes = x.bytes;
          profile.push_back({{"kind", e.kind}, {"launches_per_token", double(e.launches) / double(k)},
                             {"us_per_token", e.ms * 1e3 / double(k)}, {"bytes_per_token", bytes}});
        }
      }
    }
#endif
    if (!gpu) {
      CpuSession s(*model, ctx, kv, pool);
      auto steps = [&](int32_t t, int64_t pos, int64_t k) {
        s.set_n_past(pos);
        for (int64_t i = 0; i < k; i++) t = argmax(s.forward(&t, 1), c.vocab_size);
        return t;
      };
      bench_single(a, *model, s, [&](int64_t depth) { fill_kv(s.kv_mut(), depth, pool); }, steps, warm, g, prefill,
                   decode);
    }
  }
  const uint64_t rss = peak_rss_bytes();  // before the bandwidth buffer exists
  // On the GPU the ceiling is the device-to-device copy bandwidth (read + write), as llama.cpp's
  // and the reference sheet's numbers are quoted; the pure read bandwidth is reported beside it.
  double copy_bw = 0;
#ifdef R1_HAVE_CUDA
  const double bw_after = gpu ? cuda::read_bandwidth_gbs(bw_bytes) : measure_read_bandwidth(pool, bw_bytes);
  const std::string devname = gpu ? cuda::device_info().name : std::string("cpu ") + cpu::kernel_set();
  if (gpu) copy_bw = cuda::copy_bandwidth_gbs(std::max<uint64_t>(bw_bytes, 2ull << 30));
  const std::string kernels = gpu ? cuda_kernels_name(cuda_fused(*model) ? CudaKernels::Fused : CudaKernels::Legacy)
                                  : cpu::kernel_set();
#else
  const double bw_after = measure_read_bandwidth(pool, bw_bytes);
  const std::string devname = std::string("cpu ") + cpu::kernel_set();
  const std::string kernels = cpu::kernel_set();
#endif
  const double bw = gpu && copy_bw > 0 ? copy_bw : std::max(bw_before, bw_after);

  // Bytes per decode step: every matrix once, plus K and V of every cached position of each
  // sequence at the mean position of the timed tokens. A step makes B tokens.
  const Stats ps = stats(prefill), ds = stats(decode);
  // the weights as the decode reads them: on the GPU in its formats (legacy: q5 as q8)
  uint64_t wb = model->weight_bytes();
  if (gpu) {
    wb = 0;
    for (const auto& x : cuda_step_bytes(*model, 0))
      if (x.kind != "attention") wb += x.bytes;
  }
  const int64_t depth = a.batch > 0 ? a.p : a.depth;
  const double mean_pos = double(depth) + double(a.n + 1) / 2;
  const double kvb =
      a.n > 0 ? double(c.n_layers) * 2.0 * double(c.n_kv_heads * kv_row_bytes(kv, c.head_dim)) * mean_pos : 0.0;
  const double per_step = double(wb) + double(B) * kvb, per_tok = per_step / double(B);
  const double gbs = per_tok * ds.median / 1e9;
  // A model whose bytes per step fit in the CPU's cache is read from it, not from memory: its
  // rate is no fraction of the memory bandwidth (it exceeds it).
  const uint64_t cache = gpu ? 0 : last_level_cache_bytes();
  const bool in_cache = cache > 0 && per_step <= double(cache);

  const double peak = compute ? std::max(peak_before, cpu::int8_dot_peak_gmacs(pool)) : 0;
  // prefill: every prompt token through the layers, the lm_head once per prompt
  const double pf_gmacs = a.p > 0 ? ps.median * (layer_macs + head_macs / double(a.p)) / 1e9 : 0;
  const double dec_gmacs = ds.median * (layer_macs + head_macs) / 1e9;  // every decoded token

  if (a.json) {
    nlohmann::json j = {{"model", name},
                        {"arch", c.arch_name()},
                        {"quant", quant},
                        {"device", gpu ? "cuda" : "cpu"},
                        {"device_name", devname},
                        {"kernel_set", gpu ? "cuda " + kernels : kernels},
                        {"threads", pool.size()},
                        {"prompt_tokens", a.p},
                        {"gen_tokens", a.n},
                        {"depth", depth},
                        {"batch", B},
                        {"kv", a.kv},
                        {"repeat", a.repeat},
                        {"prefill_tok_s", ps.median},
                        {"prefill_tok_s_min", ps.min},
                        {"prefill_tok_s_max", ps.max},
                        {"decode_tok_s", ds.median},
                        {"decode_tok_s_min", ds.min},
                        {"decode_tok_s_max", ds.max},
                        {"decode_tok_s_per_seq", ds.median / double(B)},
                        {"weight_bytes", wb},
                        {"kv_bytes_per_token", uint64_t(kvb)},
                        {"bytes_per_token", uint64_t(per_tok)},
                        {"decode_gb_s", gbs},
                        {"read_bw_gb_s", bw},
                        {"read_bw_before_gb_s", bw_before},
                        {"read_bw_after_gb_s", bw_after},
                        {"copy_bw_gb_s", copy_bw},
                        {"bw_fraction", bw > 0 ? gbs / bw : 0.0},
                        {"fits_in_cache", in_cache},
                        {"cache_bytes", cache},
                        {"peak_rss_bytes", rss},
                        {"prefill_gmac_s", pf_gmacs},
                        {"decode_gmac_s", a.n > 0 ? dec_gmacs : 0.0},
                        {"int8_peak_gmac_s", peak},
                        {"load_s", load_s}};
    if (!profile.empty()) {
      for (auto& e : profile) {
        const double us = e["us_per_token"].get<double>(), by = double(e["bytes_per_token"].get<uint64_t>());
        e["gb_s"] = us > 0 ? by / (us * 1e3) : 0.0;
        e["bw_fraction"] = us > 0 && bw > 0 ? by / (us * 1e3) / bw : 0.0;
      }
      j["profile"] = profile;
      double sum = 0;
      for (auto& e : profile) sum += e["us_per_token"].get<double>();
      j["profile_kernels_us"] = sum;
      j["step_us"] = ds.median > 0 ? 1e6 / ds.median : 0.0;
    }
    out(stdout, j.dump() + "\n");
    return 0;
  }
  char buf[512];
  std::string o;
  auto line = [&](const char* fmt, auto... v) {
    std::snprintf(buf, sizeof buf, fmt, v...);
    o += buf;
  };
  if (gpu)
    line("%s: %s, %lld layers, %s | cuda (%s kernels), %s | kv %s, ctx %lld\n", name.c_str(), c.arch_name(),
         (long long)c.n_layers, quant.c_str(), kernels.c_str(), devname.c_str(), a.kv.c_str(), (long long)ctx);
  else
    line("%s: %s, %lld layers, %s | %s, %d thread%s | kv %s, ctx %lld\n", name.c_str(), c.arch_name(),
         (long long)c.n_layers, quant.c_str(), devname.c_str(), pool.size(), pool.size() == 1 ? "" : "s", a.kv.c_str(),
         (long long)ctx);
  if (a.batch > 0) {
    line("batch   %5lld sequences, one pass per decode step; rates are aggregate\n", (long long)B);
    if (a.p > 0)
      line("prefill %5lld x %lld tokens  %8.1f tok/s   (once, a pass per %lld-token chunk)\n", (long long)B, (long long)a.p,
           ps.median, (long long)chunk);
  } else if (a.p > 0) {
    line("prefill %5lld tokens  %8.1f tok/s   (median of %d; min %.1f, max %.1f)\n", (long long)a.p, ps.median,
         a.repeat, ps.min, ps.max);
  }
  if (a.n > 0) {
    if (a.batch > 0)
      line("decode  %5lld x %lld tokens  %8.1f tok/s   (%.1f per sequence; median of %d; min %.1f, max %.1f) at depth %lld\n",
           (long long)B, (long long)a.n, ds.median, ds.median / double(B), a.repeat, ds.min, ds.max, (long long)depth);
    else
      line("decode  %5lld tokens  %8.1f tok/s   (median of %d; min %.1f, max %.1f) at depth %lld\n", (long long)a.n,
           ds.median, a.repeat, ds.min, ds.max, (long long)depth);
    if (a.batch > 0)
      line("read per token        %8.3f GB      (weights %.3f / %lld + KV %.3f)\n", per_tok / 1e9, double(wb) / 1e9,
           (long long)B, kvb / 1e9);
    else
      line("read per token        %8.3f GB      (weights %.3f + KV %.3f)\n", per_tok / 1e9, double(wb) / 1e9, kvb / 1e9);
    if (in_cache)
      line("decode bandwidth      %8.1f GB/s    (%.1f MB per step fit in the %.0f MB CPU cache: not bound by the "
           "%.1f GB/s measured memory read bandwidth)\n", gbs, per_step / 1e6, double(cache) / (1 << 20), bw);
    else if (bw > 0 && gbs > bw)
      line("decode bandwidth      %8.1f GB/s    (above the %.1f GB/s measured %s bandwidth: it moved during the "
           "run; measure again)\n", gbs, bw, gpu ? "copy" : "read");
    else
      line("decode bandwidth      %8.1f GB/s    = %.0f%% of %.1f GB/s measured %s bandwidth\n", gbs,
           bw > 0 ? 100 * gbs / bw : 0.0, bw, gpu ? "copy" : "read");
  } else {
    line("read bandwidth        %8.1f GB/s    (measured)\n", bw);
  }
  if (bw_before > 0)
    line("                                     (best of %.1f before and %.1f after the runs)\n", bw_before, bw_after);
  if (gpu) line("                                     (device read bandwidth %.1f GB/s)\n", bw_after);
  if (!profile.empty()) {
    const double step = ds.median > 0 ? 1e6 / ds.median : 0.0;
    double sum = 0;
    line("profile (%d launches per token, device time without the graph):\n", [&] {
      double n = 0;
      for (auto& e : profile) n += e["launches_per_token"].get<double>();
      return int(n + 0.5);
    }());
    line("  %-10s %9s %10s %10s %8s %6s\n", "kind", "calls/tok", "us/tok", "MB/tok", "GB/s", "%bw");
    for (auto& e : profile) {
      const double us = e["us_per_token"].get<double>(), by = double(e["bytes_per_token"].get<uint64_t>());
      sum += us;
      if (by > 0)
        line("  %-10s %9.1f %10.1f %10.2f %8.0f %5.0f%%\n", e["kind"].get<std::string>().c_str(),
             e["launches_per_token"].get<double>(), us, by / 1e6, by / (us * 1e3), bw > 0 ? 100 * by / (us * 1e3) / bw : 0.0);
      else
        line("  %-10s %9.1f %10.1f %10s %8s %6s\n", e["kind"].get<std::string>().c_str(),
             e["launches_per_token"].get<double>(), us, "-", "-", "-");
    }
    line("  kernels %.1f us of a %.1f us step (graph): %.1f us between kernels and on the host\n", sum, step,
         step - sum);
  }
  if (peak > 0 && a.p > 0)
    line("prefill compute       %8.1f GMAC/s  = %.0f%% of %.1f GMAC/s measured int8-dot peak (matrix products)\n",
         pf_gmacs, 100 * pf_gmacs / peak, peak);
  if (peak > 0 && a.n > 0 && B > 1)
    line("decode compute        %8.1f GMAC/s  = %.0f%% of the int8-dot peak\n", dec_gmacs, 100 * dec_gmacs / peak);
  line("peak RSS              %8.2f GB      | model ready in %.2f s\n", double(rss) / 1e9, load_s);
  out(stdout, o);
  return 0;
}

R1_COMMAND("bench", "Measure prefill and decode speed (of a model file or a synthetic model)", 50, [](CLI::App& sub) {
  auto a = std::make_shared<BenchArgs>();
  sub.add_option("-m,--model", a->model, "Packed model file (.r1m)");
  sub.add_option("--synthetic", a->synthetic,
                 "Random weights in memory at a real model's shapes: qwen-1.5b, qwen-7b, llama-8b, qwen-14b, "
                 "qwen-32b, llama-70b, tiny");
  sub.add_option("--quant", a->quant, "Weight format of a synthetic model: q4, q5, q8, bf16 (also f16, f32); "
                                      "default q4, tensors as `r1 pack --quant` lays them out");
  sub.add_option("--device", a->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  sub.add_option("--kv", a->kv, "KV cache precision: f16, q8 (the GPU: with R1_CUDA_KERNELS=fused) or f32 (CPU only)")
      ->check(CLI::IsMember(kKvNames));
  sub.add_option("-p,--prompt-tokens", a->p, "Prompt length for prefill, one batched forward (0: skip)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  sub.add_option("-n,--gen-tokens", a->n, "Tokens to decode, greedy (0: skip)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  sub.add_option("--depth", a->depth,
                 "Decode after this many tokens already in the KV cache. The cache is filled with random f16 "
                 "values instead of running a prefill of that length: decode reads them the same way")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 22));
  sub.add_option("--batch", a->batch,
                 "Decode this many sequences together (continuous batching's pass: weights read once per step for "
                 "all); each first prefills its own -p prompt. Rates are aggregate over the sequences")
      ->check(CLI::Range(int64_t(1), int64_t(4096)));
  sub.add_option("--threads", a->threads, "CPU threads (default: physical cores in this process's CPU set and quota)")->check(CLI::Range(1, 512));
  sub.add_option("--repeat", a->repeat, "Repeats; speeds are the median, with min and max")->check(CLI::Range(1, 1000));
  sub.add_option("--bw-mib", a->bw_mib, "Size of the buffer the read bandwidth is measured on, MiB")
      ->check(CLI::Range(int64_t(16), int64_t(1) << 20));
  sub.add_flag("--json", a->json, "Print one JSON object instead of the table");
  sub.add_flag("--profile", a->profile,
               "With --device cuda: device time, bytes and bandwidth per kernel kind of a decode step (up to 32 "
               "steps launched without the graph), and the time between kernels");
  sub.footer("Decode GB/s = (weight bytes + KV bytes read per token) x tok/s; with --batch B the weights are read\n"
             "once per B tokens. The read bandwidth (and for q4/q5/q8 on the CPU the int8-dot peak) is measured\n"
             "before and after the runs with the same thread count, and the higher one is the ceiling; its\n"
             "buffer is not in the peak RSS.");
  return [a]() { return run(*a); };
});

}  // namespace
