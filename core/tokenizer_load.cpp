// Finds a tokenizer on disk: a Hugging Face directory (tokenizer.json, tokenizer.json.zst or
// tokenizer.model, plus tokenizer_config.json), one of those files (or any SentencePiece *.model)
// named directly, or a .r1m file.
#include "core/tokenizer_load.h"

#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace r1 {
namespace fs = std::filesystem;

static std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail_input(p.string() + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail_input(p.string() + ": read error");
  return ss.str();
}

// Streaming decode: the frame may not record its size. Capped so a corrupt file cannot eat memory.
static std::string unzstd(const std::string& in, const std::string& what) {
  constexpr size_t kMax = size_t(1) << 31;
  std::string out;
  ZSTD_DStream* ds = ZSTD_createDStream();
  ZSTD_initDStream(ds);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  size_t ret = 1;
  bool full = false;  // the output buffer filled up: more may be waiting inside the stream
  while (ib.pos < ib.size || full) {
    ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
    ret = ZSTD_decompressStream(ds, &ob, &ib);
    if (ZSTD_isError(ret)) {
      std::string msg = ZSTD_getErrorName(ret);
      ZSTD_freeDStream(ds);
      fail_input(what + ": zstd: " + msg);
    }
    out.append(chunk.data(), ob.pos);
    if (out.size() > kMax) { ZSTD_freeDStream(ds); fail_input(what + ": decompressed size too large"); }
    full = ob.pos == ob.size;
  }
  ZSTD_freeDStream(ds);
  if (ret != 0) fail_input(what + ": truncated zstd stream");
  return out;
}

static TokenizerSource from_dir(const fs::path& dir) {
  TokenizerSource src;
  src.origin = dir.string();
  std::error_code ec;
  if (fs::is_regular_file(dir / "tokenizer.json", ec))
    src.tokenizer_json = read_file(dir / "tokenizer.json");
  else if (fs::is_regular_file(dir / "tokenizer.json.zst", ec))
    src.tokenizer_json = unzstd(read_file(dir / "tokenizer.json.zst"), (dir / "tokenizer.json.zst").string());
  else if (fs::is_regular_file(dir / "tokenizer.model", ec))
    src.sentencepiece_model = read_file(dir / "tokenizer.model");
  else
    fail_input(dir.string() + ": no tokenizer.json, tokenizer.json.zst or tokenizer.model");
  if (src.tokenizer_json.empty() && src.sentencepiece_model.empty())
    fail_input(dir.string() + ": tokenizer file is empty");
  src.tokenizer_config_json = fs::is_regular_file(dir / "tokenizer_config.json", ec)
                                  ? read_file(dir / "tokenizer_config.json")
                                  : std::string("{}");
  return src;
}

TokenizerSource load_tokenizer_source(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) return from_dir(p);
  if (!fs::exists(p, ec)) fail_input(path + ": no such file or directory");
  std::string name = p.filename().string();
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".r1m") == 0)
    return load_tokenizer_source_r1m(path);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (name == "tokenizer.json" || name == "tokenizer.json.zst") return from_dir(dir);
  if (name.size() > 6 && name.compare(name.size() - 6, 6, ".model") == 0) {
    // Any SentencePiece model file, with the tokenizer_config.json next to it if there is one.
    TokenizerSource src;
    src.origin = path;
    src.sentencepiece_model = read_file(p);
    src.tokenizer_config_json = fs::is_regular_file(dir / "tokenizer_config.json", ec)
                                    ? read_file(dir / "tokenizer_config.json")
                                    : std::string("{}");
    return src;
  }
  fail_input(path + ": not a model directory, tokenizer file or .r1m file");
}

}  // namespace r1
