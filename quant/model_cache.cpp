#include "quant/model_cache.h"

#include <sys/statvfs.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include "core/error.h"
#include "core/r1m.h"
#include "quant/pack.h"
#include "quant/pack_common.h"

namespace r1 {
namespace fs = std::filesystem;

std::string default_cache_dir() {
  // XDG: a relative XDG_CACHE_HOME is invalid and ignored.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && xdg[0] == '/') return std::string(xdg) + "/r1";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/r1";
  fail_input("no cache directory for packed models: set XDG_CACHE_HOME or HOME, or r1 pack the model yourself");
}

namespace {

enum class Kind { R1m, Gguf, Checkpoint };

const char kWhat[] = ": r1 runs an .r1m file, a GGUF file or a Hugging Face checkpoint directory (r1 pack makes an "
                     ".r1m of the last two)";

Kind kind_of(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail_input(path + ": no such file or directory");
  if (fs::is_directory(st)) {
    if (fs::is_regular_file(fs::path(path) / "config.json", ec)) return Kind::Checkpoint;
    fail_input(path + " is a directory without config.json" + kWhat);
  }
  if (!fs::is_regular_file(st)) fail_input(path + " is not a regular file" + kWhat);
  char magic[8] = {};
  std::ifstream f(path, std::ios::binary);
  f.read(magic, sizeof magic);
  if (f.gcount() == 8 && std::memcmp(magic, kR1Magic, 8) == 0) return Kind::R1m;
  if (f.gcount() >= 4 && std::memcmp(magic, "GGUF", 4) == 0) return Kind::Gguf;
  fail_input(path + " is neither an .r1m nor a GGUF file" + kWhat);
}

// The files a source is read from: every file of a checkpoint directory; a GGUF file and, when
// it is split (NAME-00001-of-0000N.gguf), its other parts.
std::vector<fs::path> source_files(const fs::path& src, Kind k) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (k == Kind::Checkpoint) {
    for (auto& e : fs::directory_iterator(src, ec))
      if (e.is_regular_file(ec)) files.push_back(e.path());
  } else {
    files.push_back(src);
    static const std::regex split(R"((.*)-\d{5}(-of-\d{5}\.gguf))");
    std::smatch m;
    const std::string name = src.filename().string();
    if (std::regex_match(name, m, split))
      for (auto& e : fs::directory_iterator(src.parent_path(), ec)) {
        const std::string other = e.path().filename().string();
        std::smatch o;
        if (other != name && std::regex_match(other, o, split) && o[1] == m[1] && o[2] == m[2]) files.push_back(e.path());
      }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string hex8(uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%08llx", (unsigned long long)(h & 0xffffffffull));
  return s;
}

std::string gb(uint64_t b) {  // GB, or MB for what is smaller
  char s[32];
  std::snprintf(s, sizeof s, b >= 1000000000 ? "%.2f GB" : "%.1f MB", double(b) / (b >= 1000000000 ? 1e9 : 1e6));
  return s;
}

uint64_t statvfs_free(const std::string& dir) {
  struct statvfs s;
  if (::statvfs(dir.c_str(), &s) != 0) return UINT64_MAX;  // unknown: the writes will say
  return uint64_t(s.f_bavail) * uint64_t(s.f_frsize);
}

}  // namespace

std::string resolve_model(const std::string& path, const CacheOptions& o) {
  const Kind kind = kind_of(path);
  if (kind == Kind::R1m) return path;
  auto note = [&](const std::string& line) {
    if (o.on_note) o.on_note(line);
  };

  const fs::path src = fs::canonical(path);
  // The entry's name: the source's own name (made safe), its path, and the state of its files.
  std::string stem = (kind == Kind::Gguf ? src.stem() : src.filename()).string().substr(0, 64);
  for (char& c : stem)
    if (!std::isalnum(uint8_t(c)) && c != '.' && c != '_' && c != '-') c = '_';
  std::string state = "r1m " + std::to_string(kR1Version) + ", default quant\n";
  std::error_code ec;
  for (const fs::path& f : source_files(src, kind)) {
    const auto t = fs::last_write_time(f, ec).time_since_epoch().count();
    state += f.filename().string() + " " + std::to_string(fs::file_size(f, ec)) + " " + std::to_string(t) + "\n";
  }
  const std::string prefix = stem + "-" + hex8(XXH64(src.c_str(), src.native().size(), 0)) + "-";
  const std::string name = prefix + hex8(XXH64(state.data(), state.size(), 0)) + ".r1m";

  const std::string dir = o.dir.empty() ? default_cache_dir() : o.dir;
  fs::create_directories(dir, ec);
  if (ec) fail_input("cannot make the cache directory " + dir + ": " + ec.message());
  const std::string out = dir + "/" + name;
  if (fs::exists(out, ec)) {
    try {
      R1File::open(out);  // header, table and metadata checks
      return out;
    } catch (const Error& e) {
      note("the cached copy is damaged (" + std::string(e.what()) + "); packing it again");
    }
  }

  PackOptions po;
  po.src = path;
  po.out = out;
  po.on_progress = o.on_progress;
  po.threads = o.threads;
  if (!parse_format("q4", &po.quant)) fail_input("internal: no q4 format");
  const auto t0 = std::chrono::steady_clock::now();
  po.before_write = [&](uint64_t bytes) {
    const uint64_t need = bytes + (uint64_t(64) << 20);  // the metadata, and some slack
    const uint64_t free = (o.free_bytes ? o.free_bytes : statvfs_free)(dir);
    if (free < need)
      fail_input("packing " + path + " needs " + gb(need) + " in " + dir + ", which has " + gb(free) +
                 " free: make room, set XDG_CACHE_HOME to a disk with room, or r1 pack it elsewhere and give that file");
    note("packing " + path + " into " + out + " (" + gb(bytes) + "; once: reused while the source is unchanged)");
  };
  if (kind == Kind::Gguf) pack_gguf(po, /*quant_given=*/false);
  else pack_checkpoint(po);
  char took[64];
  std::snprintf(took, sizeof took, "packed in %.1fs", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  note(took);

  // The copies of this source's earlier states are stale now.
  for (auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n != name && n.size() > prefix.size() + 4 && n.compare(0, prefix.size(), prefix) == 0 &&
        n.compare(n.size() - 4, 4, ".r1m") == 0)
      fs::remove(e.path(), ec);
  }
  return out;
}

}  // namespace r1
