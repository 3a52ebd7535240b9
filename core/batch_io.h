// Batch jobs on files: reading prompt records (JSONL or plain text), choosing a shard, and an
// output file whose lines are complete or absent, so a killed job resumes where it stopped.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/chat_template.h"

namespace r1 {

struct BatchRecord {
  std::string id;                  // the id as JSON text ("7", "\"q-12\""), unique in the input
  size_t index = 0;                // position in the input, from 0
  std::vector<Message> messages;   // a "prompt" becomes one user message
  std::optional<int64_t> max_tokens;
  std::optional<float> temperature;
  std::optional<uint64_t> seed;
  std::optional<int64_t> think_budget;
};

// JSONL ({"id", "prompt" | "messages", optional "max_tokens", "temperature", "seed",
// "think_budget"}) when every non-empty line is a JSON object, else plain text with one prompt
// per line (ids are line numbers from 1). `what` names the input in errors ("-" is stdin). A
// record with another key, or a message with an unknown role, is an error naming its line:
// nothing is dropped silently.
std::vector<BatchRecord> parse_batch_input(const std::string& text, const std::string& what);

// --shard's value: "I/N", or "auto" for the shard the cluster scheduler gave this process: a
// Slurm job array (SLURM_ARRAY_TASK_ID within SLURM_ARRAY_TASK_MIN..MAX, step
// SLURM_ARRAY_TASK_STEP) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX; the count from
// `shards`, --shards, which also overrides Slurm's). env reads a variable (nullptr: unset).
// Fails with a usage error naming what is missing. *from: where it came from, for the log.
struct Shard {
  int64_t i = 0, n = 1;
  std::string from;
};
Shard parse_shard(const std::string& value, int64_t shards, const std::function<const char*(const char*)>& env);

// Shard I/N of the records: every N-th, starting at I (by input position).
std::vector<BatchRecord> take_shard(const std::vector<BatchRecord>& all, int64_t i, int64_t n);

// Output JSONL: opened for append after dropping a trailing partial line (a run killed mid-line),
// each line written with one write() and removed again if the disk fills up. An exclusive lock
// (flock) keeps a second process off the same file: it is refused, not left to write every id
// again.
class BatchOutput {
 public:
  explicit BatchOutput(const std::string& path);
  ~BatchOutput();
  const std::set<std::string>& done_ids() const { return done_; }
  void write_line(const std::string& id, const std::string& json_line);  // line without '\n'

 private:
  std::string path_;
  int fd_ = -1;
  std::set<std::string> done_;
};

}  // namespace r1
