// A model given to run, chat, batch or score as its source (a GGUF file or a Hugging Face
// checkpoint directory) instead of an .r1m: packed once into the user's cache directory and
// reused while the source is unchanged, as `ollama run` pulls once.
//
//   $XDG_CACHE_HOME/r1 (else ~/.cache/r1) / NAME-SOURCE-STATE.r1m
//
// SOURCE hashes the source's path, STATE the size and modification time of each of its files
// (and the r1m format and default quant): an edited source gets a new entry, which replaces the
// old one of the same source.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace r1 {

struct CacheOptions {
  std::string dir;  // "": default_cache_dir()
  // Messages (where the copy goes, how long it took) and the packer's progress, for the caller
  // to show (null: nothing).
  std::function<void(const std::string& line)> on_note;
  std::function<void(size_t done, size_t total, uint64_t bytes_done, uint64_t bytes_total)> on_progress;
  int threads = 0;
  // Free bytes on the file system of a directory (statvfs); replaceable for tests.
  std::function<uint64_t(const std::string& dir)> free_bytes;
};

// $XDG_CACHE_HOME/r1, else $HOME/.cache/r1; fail_input if neither is set.
std::string default_cache_dir();

// The .r1m to load for `path`: the file itself if it is one; for a GGUF file or a checkpoint
// directory, its packed copy in the cache, made first if needed (saying where and how many GB
// on stderr, refused cleanly when the disk lacks the room). fail_input for anything else,
// naming `r1 pack`.
std::string resolve_model(const std::string& path, const CacheOptions& o = {});

}  // namespace r1
