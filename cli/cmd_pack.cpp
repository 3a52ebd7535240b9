// r1 pack / info / verify: making and inspecting .r1m files.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "cli/command.h"
#include "cli/common.h"
#include "core/chat_template.h"
#include "core/config.h"
#include "core/error.h"
#include "core/kv_cache.h"
#include "core/out_file.h"
#include "core/r1m.h"
#include "quant/pack.h"
#include "quant/pack_common.h"

namespace {

using namespace r1;

R1_COMMAND("pack", "Pack a Hugging Face checkpoint directory or a GGUF file into an .r1m file", 10, [](CLI::App& sub) {
  auto o = std::make_shared<PackOptions>();
  auto quant = std::make_shared<std::string>();  // empty: q4 for a checkpoint, the GGUF's size class
  auto quiet = std::make_shared<bool>(false);
  sub.add_option("checkpoint", o->src, "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer), or a .gguf file (first part if split)")->required();
  sub.add_option("-o,--output", o->out, "Output .r1m file (written atomically)")->required();
  sub.add_option("--quant", *quant, "Weight format: q4 (about 4.7 bits/weight), q5 (about 5.6: better quality), q8, bf16, f16, f32 (default: q4; for a GGUF, its size class)")
      ->check(CLI::IsMember({"q4", "q5", "q8", "bf16", "f16", "f32"}));
  sub.add_option("--threads", o->threads, "Quantization threads (default: physical cores in this process's CPU set and quota)")->check(CLI::Range(0, 1024));
  sub.add_flag("-q,--quiet", *quiet, "No per-tensor error report");
  return [o, quant, quiet]() {
    // The destination first: a pack that cannot be written is refused before its work.
    if (o->out == "-") fail_usage("-o -: r1 pack writes a file (models run memory-mapped from it); give a file name");
    output_target(o->out);
    const bool quant_given = !quant->empty();
    if (!parse_format(quant_given ? *quant : "q4", &o->quant)) fail_usage("unknown --quant " + *quant);
    {
      cli::PackBar bar(isatty(2));
      o->on_progress = [&](size_t d, size_t t, uint64_t bd, uint64_t bt) { bar.draw(d, t, bd, bt); };
      if (!*quiet)
        o->on_error = [&](const std::string& name, Format f, double rel) {
          char buf[160];
          std::snprintf(buf, sizeof buf, "  %-48s %-4s rel-rms %.5f", name.c_str(), format_name(f), rel);
          bar.line(buf);
        };
      if (is_gguf_path(o->src)) pack_gguf(*o, quant_given);
      else pack_checkpoint(*o);
    }
    auto f = R1File::open(o->out);
    if (!*quiet) std::fprintf(stderr, "wrote %s (%.1f MB)\n", o->out.c_str(), double(f->size()) / 1e6);
    return 0;
  };
});

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

nlohmann::json info_json(const R1File& f) {
  Config c = config_from_json(f.meta().at("config"));
  std::map<std::string, uint64_t> bytes_by_fmt, params_by_fmt;
  uint64_t params = 0, block_params = 0, block_bytes = 0, total_bytes = 0;
  for (auto& t : f.tensors()) {
    bytes_by_fmt[format_name(t.fmt)] += t.bytes;
    params_by_fmt[format_name(t.fmt)] += t.numel();
    params += t.numel();
    total_bytes += t.bytes;
    if (t.name.rfind("model.layers.", 0) == 0 && t.shape.size() == 2) {
      block_params += t.numel();
      block_bytes += t.bytes;
    }
  }
  nlohmann::json j;
  j["path"] = f.path();
  j["file_bytes"] = f.size();
  j["config"] = config_to_json(c);
  j["parameters"] = params;
  j["bytes_by_format"] = bytes_by_fmt;
  j["params_by_format"] = params_by_fmt;
  j["bits_per_weight"] = {{"blocks", block_params ? 8.0 * double(block_bytes) / double(block_params) : 0},
                          {"tensors", params ? 8.0 * double(total_bytes) / double(params) : 0},
                          {"file", params ? 8.0 * double(f.size()) / double(params) : 0}};
  j["context_length"] = c.max_pos;
  // what one cached position costs (K and V of every layer), to size --ctx and --kv
  nlohmann::json kvb = nlohmann::json::object();
  for (KvFormat f : {KvFormat::F16, KvFormat::Q8, KvFormat::F32})
    if (f != KvFormat::Q8 || c.head_dim % kKvGroup == 0) kvb[kv_format_name(f)] = KVCache::bytes_for(c, 1, f);
  j["kv_bytes_per_token"] = kvb;
  const auto& tc = f.meta().value("tokenizer_config", nlohmann::json::object());
  nlohmann::json special = nlohmann::json::object();
  for (const char* k : {"bos_token", "eos_token", "pad_token", "unk_token"})
    if (tc.contains(k) && tc[k].is_string()) special[k] = tc[k];
  j["special_tokens"] = special;
  j["bos_token_id"] = c.bos_id;
  j["eos_token_ids"] = c.eos_ids;
  j["chat_template"] = tc.contains("chat_template") && tc["chat_template"].is_string();
  // Which of r1's templates it is (what run and chat will use), or why none applies.
  try {
    j["chat_template_kind"] = template_kind_name(ChatTemplate::from_config(tc.dump()).kind());
  } catch (const Error&) {
    j["chat_template_kind"] = nullptr;
  }
  j["generation"] = f.meta().value("generation", nlohmann::json::object());
  nlohmann::json prov = f.meta().value("provenance", nlohmann::json::object());
  prov.erase("rel_rms");
  if (prov.contains("created_unix") && prov["created_unix"].is_number_integer()) {
    const std::time_t t = std::time_t(prov["created_unix"].get<int64_t>());
    std::tm tm{};
    char date[32];
    if (gmtime_r(&t, &tm) && std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm)) prov["created"] = date;
  }
  j["provenance"] = prov;
  j["n_tensors"] = f.tensors().size();
  return j;
}

// The model of info and verify: positional, or -m like every other command that takes one.
std::shared_ptr<std::string> add_model_arg(CLI::App& sub) {
  auto path = std::make_shared<std::string>();
  auto* pos = sub.add_option("model", *path, "The .r1m file");
  auto* opt = sub.add_option("-m,--model", *path, "The .r1m file (or give it without -m)");
  pos->excludes(opt);
  sub.callback([path, &sub] {
    if (path->empty()) throw CLI::RequiredError("the model (r1 " + sub.get_name() + " MODEL, or -m MODEL)");
  });
  return path;
}

R1_COMMAND("info", "Describe an .r1m file: architecture, sizes, formats, tokens, provenance", 11, [](CLI::App& sub) {
  auto path = add_model_arg(sub);
  auto json = std::make_shared<bool>(false);
  sub.add_flag("--json", *json, "Machine-readable output");
  return [path, json]() {
    auto f = R1File::open(*path);
    auto j = info_json(*f);
    if (*json) {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    const auto& c = j["config"];
    std::printf("%s\n", path->c_str());
    std::printf("  architecture   %s, %lld layers, hidden %lld, ffn %lld, heads %lld (kv %lld) x %lld\n",
                c["arch"].get<std::string>().c_str(), (long long)c["num_layers"], (long long)c["hidden_size"],
                (long long)c["intermediate_size"], (long long)c["num_heads"], (long long)c["num_kv_heads"],
                (long long)c["head_dim"]);
    const double params = double(j["parameters"].get<uint64_t>());
    std::printf("  parameters     %s\n", params >= 1e9   ? fmt("%.2f B", params / 1e9).c_str()
                                        : params >= 1e6 ? fmt("%.1f M", params / 1e6).c_str()
                                                        : fmt("%.1f K", params / 1e3).c_str());
    std::printf("  file           %.2f MB\n", double(j["file_bytes"].get<uint64_t>()) / 1e6);
    for (auto& [fmt, b] : j["bytes_by_format"].items())
      std::printf("  %-14s %.2f MB, %llu weights\n", fmt.c_str(), double(b.get<uint64_t>()) / 1e6,
                  (unsigned long long)j["params_by_format"][fmt].get<uint64_t>());
    std::printf("  bits/weight    %.3f in blocks, %.3f whole file\n", j["bits_per_weight"]["blocks"].get<double>(),
                j["bits_per_weight"]["file"].get<double>());
    std::printf("  context        %lld tokens, rope theta %g%s\n", (long long)j["context_length"],
                c["rope_theta"].get<double>(), c["rope_scaling"].is_null() ? "" : " (llama3 scaling)");
    const auto& kv = j["kv_bytes_per_token"];
    const double full = double(std::min<int64_t>(j["context_length"].get<int64_t>(), 32768));
    auto size = [](double b) {
      char s[32];
      std::snprintf(s, sizeof s, b >= 1e9 ? "%.2f GB" : "%.1f MB", b >= 1e9 ? b / 1e9 : b / 1e6);
      return std::string(s);
    };
    std::printf("  KV cache       %.1f KB per token in f16 (%s at %.0f tokens)", kv["f16"].get<double>() / 1e3,
                size(kv["f16"].get<double>() * full).c_str(), full);
    if (kv.contains("q8"))
      std::printf(", %.1f KB in q8 (%s)", kv["q8"].get<double>() / 1e3, size(kv["q8"].get<double>() * full).c_str());
    std::printf("\n");
    std::printf("  tokens         bos %d, eos %s\n", j["bos_token_id"].get<int>(), j["eos_token_ids"].dump().c_str());
    const auto& kind = j["chat_template_kind"];
    std::printf("  chat template  %s\n", kind.is_string() ? (kind.get<std::string>() == "r1" ? "r1 (DeepSeek-R1)" : kind.get<std::string>().c_str())
                                      : j["chat_template"].get<bool>() ? "not one r1 knows (use --template)"
                                                                        : "none (use --template)");
    const auto& p = j["provenance"];
    auto field = [&](const char* k) { return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : std::string("?"); };
    if (p.contains("created")) std::printf("  packed         %s by r1 %s\n", field("created").c_str(), field("r1_version").c_str());
    if (p.contains("source"))
      std::printf("  source         %s%s\n", field("source").c_str(),
                  p.contains("source_format") ? (" (" + field("source_format") + ")").c_str() : "");
    if (p.contains("recipe") && p["recipe"].is_object()) {
      const auto& r = p["recipe"];
      std::printf("  recipe         %s%s\n", r.value("quant", std::string("?")).c_str(),
                  r.contains("mix") && r["mix"].is_string() ? (" (" + r["mix"].get<std::string>() + ")").c_str() : "");
    }
    return 0;
  };
});

R1_COMMAND("verify", "Recompute every checksum of an .r1m file", 12, [](CLI::App& sub) {
  auto path = add_model_arg(sub);
  return [path]() {
    auto f = R1File::open(*path);  // header and table checksums
    const bool tty = isatty(2);
    int64_t bad = f->verify([&](size_t done, size_t total) {
      if (tty) std::fprintf(stderr, "\rverifying %zu/%zu", done, total);
    });
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (bad >= 0) fail_input(*path + ": checksum mismatch in tensor " + f->tensors()[size_t(bad)].name);
    std::printf("%s: ok (%zu tensors, header, table and metadata checksums match)\n", path->c_str(), f->tensors().size());
    return 0;
  };
});

}  // namespace
