// The OpenAI-compatible protocol of r1 serve, without the HTTP: what a request body may say
// (checked field by field, wrong types refused with OpenAI's error object; unknown fields
// ignored, as OpenAI does), the response and stream-chunk objects, and stop strings. The
// reasoning goes to `reasoning_content` (DeepSeek's API), the answer to `content`.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/chat_template.h"
#include "core/generate.h"

namespace r1::api {

// An error the client gets as HTTP `status` with {"error": {message, type, param, code}}.
struct ApiError {
  int status = 400;
  std::string message, param;
  std::string type = "invalid_request_error";
};
nlohmann::json error_json(const ApiError& e);

struct Request {
  bool chat = true;                 // /v1/chat/completions; else /v1/completions
  std::vector<Message> messages;    // chat
  std::string prompt;               // completions: the raw text, no template
  std::optional<int64_t> max_tokens, think_budget, top_k;
  std::optional<float> temperature, top_p, min_p;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;    // at most 4, none empty
  bool stream = false, include_usage = false;
};

// Parses a body of /v1/chat/completions (chat) or /v1/completions; throws ApiError (400).
Request parse_request(const std::string& body, bool chat);

// The sampling a request asks for over the server's defaults.
SamplerParams sampling_for(const Request& r, const SamplerParams& defaults, uint64_t random_seed);

// OpenAI's finish_reason: "stop" (a stop token or string, or r1 ended a loop) or "length" (the
// token cap or the context).
const char* finish_reason(Finish f);

struct Usage {
  int64_t prompt = 0, completion = 0, reasoning = 0;
};
Usage usage_of(const GenResult& g);
nlohmann::json usage_json(const Usage& u);

// The whole response of a request that did not stream. `finish`: r1's own word for why it ended
// ("stop", "length", "context", "loop") in `r1_finish`, beside OpenAI's finish_reason.
nlohmann::json completion_json(const Request& r, const std::string& id, int64_t created, const std::string& model,
                               const std::string& reasoning, const std::string& content, const GenResult& g);
// One streamed chunk: a delta of reasoning or content (chat), or text (completions); with
// `finish`, the last chunk (empty delta and the finish_reason).
nlohmann::json chunk_json(const Request& r, const std::string& id, int64_t created, const std::string& model,
                          const std::string& reasoning, const std::string& content, const char* finish = nullptr);
// The usage chunk after the last (stream_options.include_usage): no choices.
nlohmann::json usage_chunk_json(const Request& r, const std::string& id, int64_t created, const std::string& model,
                                const Usage& u);

// Stop strings over streamed text: push() returns what is safe to send (never a part that could
// still become a stop string); once a stop string is complete, hit() is true and nothing from it
// on is returned. flush() returns what was held back when the text ends without a hit.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string push(const std::string& text);
  std::string flush();
  bool hit() const { return hit_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool hit_ = false;
};

}  // namespace r1::api
