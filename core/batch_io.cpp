#include "core/batch_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"

namespace r1 {

static std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t b = 0;
  while (b < text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    std::string l = text.substr(b, e - b);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(std::move(l));
    b = e + 1;
  }
  return lines;
}

static bool blank(const std::string& s) { return s.find_first_not_of(" \t") == std::string::npos; }

std::vector<BatchRecord> parse_batch_input(const std::string& text, const std::string& what) {
  auto lines = split_lines(text);
  // JSONL if the first non-blank line is a JSON object
  bool jsonl = false;
  for (auto& l : lines)
    if (!blank(l)) {
      jsonl = l.find_first_not_of(" \t") != std::string::npos && l[l.find_first_not_of(" \t")] == '{';
      break;
    }
  std::vector<BatchRecord> out;
  std::set<std::string> ids;
  for (size_t n = 0; n < lines.size(); n++) {
    const std::string& l = lines[n];
    if (blank(l)) continue;
    const std::string where = what + " line " + std::to_string(n + 1);
    BatchRecord r;
    r.index = out.size();
    if (!jsonl) {
      r.id = std::to_string(n + 1);
      r.messages.push_back({"user", l});
    } else {
      nlohmann::json j = parse_json(l, where);
      if (!j.is_object()) fail_input(where + ": not a JSON object");
      check_keys(j, {"id", "prompt", "messages", "max_tokens", "temperature", "seed", "think_budget"}, where);
      if (j.contains("prompt") && j.contains("messages")) fail_input(where + ": give \"prompt\" or \"messages\", not both");
      try {
        if (!j.contains("id") || !(j["id"].is_string() || j["id"].is_number_integer()))
          fail_input(where + ": needs an \"id\" (string or integer)");
        r.id = j["id"].dump();
        if (j.contains("prompt")) {
          if (!j["prompt"].is_string()) fail_input(where + ": \"prompt\" must be a string");
          r.messages.push_back({"user", j["prompt"].get<std::string>()});
        } else if (j.contains("messages")) {
          try {
            r.messages = messages_from_json(j["messages"]);
          } catch (const Error& e) {
            fail_input(where + ": " + e.what());
          }
          if (r.messages.empty()) fail_input(where + ": \"messages\" is empty");
        } else {
          fail_input(where + ": needs \"prompt\" or \"messages\"");
        }
        if (j.contains("max_tokens")) {
          if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1)
            fail_input(where + ": \"max_tokens\" must be a positive integer");
          r.max_tokens = j["max_tokens"].get<int64_t>();
        }
        if (j.contains("temperature")) {
          if (!j["temperature"].is_number() || !(j["temperature"].get<double>() >= 0) ||
              !(j["temperature"].get<double>() <= 1e6))
            fail_input(where + ": \"temperature\" must be a number >= 0");
          r.temperature = j["temperature"].get<float>();
        }
        if (j.contains("seed")) {
          if (!j["seed"].is_number_unsigned()) fail_input(where + ": \"seed\" must be a non-negative integer");
          r.seed = j["seed"].get<uint64_t>();
        }
        if (j.contains("think_budget")) {
          if (!j["think_budget"].is_number_integer() || j["think_budget"].get<int64_t>() < 0)
            fail_input(where + ": \"think_budget\" must be a non-negative integer");
          r.think_budget = j["think_budget"].get<int64_t>();
        }
      } catch (const nlohmann::json::exception& e) {
        fail_input(where + ": " + e.what());
      }
    }
    if (!ids.insert(r.id).second) fail_input(where + ": duplicate id " + r.id);
    out.push_back(std::move(r));
  }
  if (out.empty()) fail_input(what + ": no prompts");
  return out;
}

namespace {
// A non-negative integer variable, or -1 when unset; a malformed one is an error.
int64_t env_int(const std::function<const char*(const char*)>& env, const char* name) {
  const char* v = env(name);
  if (!v) return -1;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (end == v || *end || errno || x < 0) fail_usage(std::string("--shard auto: ") + name + "=" + v + " is not a non-negative integer");
  return x;
}
}  // namespace

Shard parse_shard(const std::string& value, int64_t shards, const std::function<const char*(const char*)>& env) {
  Shard s;
  if (value.empty()) return s;
  if (value != "auto") {
    char slash = 0;
    std::istringstream ss(value);
    if (!(ss >> s.i >> slash >> s.n) || slash != '/' || !ss.eof() || s.n < 1 || s.i < 0 || s.i >= s.n)
      fail_usage("--shard wants I/N with 0 <= I < N (e.g. 0/4), or auto");
    if (shards > 0) fail_usage("--shards goes with --shard auto; --shard I/N already says N");
    s.from = "--shard";
    return s;
  }
  if (const int64_t id = env_int(env, "SLURM_ARRAY_TASK_ID"); id >= 0) {
    const int64_t lo = env_int(env, "SLURM_ARRAY_TASK_MIN"), hi = env_int(env, "SLURM_ARRAY_TASK_MAX");
    int64_t step = env_int(env, "SLURM_ARRAY_TASK_STEP");
    if (step <= 0) step = 1;
    if (lo < 0 || hi < lo || id < lo || id > hi || (id - lo) % step)
      fail_usage("--shard auto: SLURM_ARRAY_TASK_ID is not within SLURM_ARRAY_TASK_MIN..MAX (is this a job array?)");
    s.i = (id - lo) / step;
    s.n = shards > 0 ? shards : (hi - lo) / step + 1;
    s.from = "Slurm array task " + std::to_string(id);
  } else if (const int64_t idx = env_int(env, "JOB_COMPLETION_INDEX"); idx >= 0) {
    if (shards <= 0) fail_usage("--shard auto in a Kubernetes Indexed Job needs --shards N (the Job's completions)");
    s.i = idx;
    s.n = shards;
    s.from = "Kubernetes completion index " + std::to_string(idx);
  } else {
    fail_usage("--shard auto: no SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX here (not a Slurm job array or an "
               "Indexed Job); give --shard I/N");
  }
  if (s.i >= s.n) fail_usage("--shard auto: shard " + std::to_string(s.i) + " of " + std::to_string(s.n) + " (" + s.from + ") is out of range; check --shards");
  return s;
}

std::vector<BatchRecord> take_shard(const std::vector<BatchRecord>& all, int64_t i, int64_t n) {
  if (n < 1 || i < 0 || i >= n) fail_usage("--shard I/N needs 0 <= I < N");
  std::vector<BatchRecord> out;
  for (auto& r : all)
    if (int64_t(r.index % uint64_t(n)) == i) out.push_back(r);
  return out;
}

BatchOutput::BatchOutput(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);  // a fifo must not block
  if (fd_ < 0) fail_input(path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {  // a fifo or a device cannot be resumed from
    ::close(fd_);
    fd_ = -1;
    fail_input(path + " is not a regular file; -o takes a file (or - for stdout)");
  }
  (void)fcntl(fd_, F_SETFL, 0);  // blocking writes again
  // One writer per output: a second process would write every id again. Held until close.
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    fail_input(path + (err == EWOULDBLOCK ? ": another r1 batch is writing to it; let it finish, or give each "
                                            "shard its own -o"
                                          : ": cannot lock: " + std::string(std::strerror(err))));
  }
  std::string text(size_t(st.st_size), '\0');
  if (st.st_size > 0 && pread(fd_, text.data(), text.size(), 0) != ssize_t(text.size()))
    fail_input(path + ": cannot read");
  // Keep the complete lines; a line cut by a kill (no '\n', or not JSON) is dropped.
  size_t keep = 0, b = 0;
  while (b < text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) break;
    const std::string_view line(text.data() + b, e - b);
    auto j = json_too_deep(line) ? nlohmann::json(nlohmann::json::value_t::discarded)
                                 : nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("id"))
      fail_input(path + " line " + std::to_string(std::count(text.begin(), text.begin() + int64_t(b), '\n') + 1) +
                 " is not an r1 batch result; refusing to append to it");
    done_.insert(j["id"].dump());
    keep = e + 1;
    b = e + 1;
  }
  if (keep != text.size() && ftruncate(fd_, off_t(keep)) != 0) fail_input(path + ": " + std::strerror(errno));
  if (lseek(fd_, 0, SEEK_END) < 0) fail_input(path + ": " + std::strerror(errno));
}

BatchOutput::~BatchOutput() {
  if (fd_ >= 0) ::close(fd_);
}

void BatchOutput::write_line(const std::string& id, const std::string& json_line) {
  std::string line = json_line + "\n";
  off_t start = lseek(fd_, 0, SEEK_END);
  size_t done = 0;
  while (done < line.size()) {
    ssize_t w = ::write(fd_, line.data() + done, line.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = w < 0 ? errno : ENOSPC;
      if (start >= 0 && ftruncate(fd_, start) != 0) {}  // keep the file a set of whole lines
      fail_input("writing " + path_ + ": " + std::strerror(err) + " (the output stays resumable)");
    }
    done += size_t(w);
  }
  done_.insert(id);
}

}  // namespace r1
