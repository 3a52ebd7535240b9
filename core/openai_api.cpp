#include "core/openai_api.h"

#include <algorithm>

#include "core/error.h"
#include "core/json_input.h"

namespace r1::api {

using json = nlohmann::json;

json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json() : json(e.param)},
            {"code", json()}}}};
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw ApiError{400, "'" + param + "' " + what, param};
}

// Each optional field: absent or null is "not given"; a wrong type or range is a 400.
std::optional<double> number(const json& j, const char* k, double lo, double hi) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_number()) bad(k, "must be a number");
  const double v = j[k].get<double>();
  if (!(v >= lo && v <= hi)) bad(k, "must be between " + json(lo).dump() + " and " + json(hi).dump());
  return v;
}
std::optional<int64_t> integer(const json& j, const char* k, int64_t lo, int64_t hi) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_number_integer()) bad(k, "must be an integer");
  if (j[k].is_number_unsigned() && j[k].get<uint64_t>() > uint64_t(hi)) bad(k, "must be at most " + std::to_string(hi));
  const int64_t v = j[k].get<int64_t>();
  if (v < lo || v > hi) bad(k, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v;
}
bool boolean(const json& j, const char* k) {
  if (!j.contains(k) || j[k].is_null()) return false;
  if (!j[k].is_boolean()) bad(k, "must be a boolean");
  return j[k].get<bool>();
}

// OpenAI's messages carry more than role and content (name, reasoning_content of earlier turns,
// tool calls): only those two reach the template; "developer" is the newer name of "system".
std::vector<Message> messages(const json& j) {
  if (!j.contains("messages")) bad("messages", "is required");
  const json& m = j["messages"];
  if (!m.is_array() || m.empty()) bad("messages", "must be a non-empty array");
  json slim = json::array();
  for (const json& x : m) {
    if (!x.is_object()) bad("messages", "must hold objects {role, content}");
    json y = json::object();
    if (x.contains("role")) y["role"] = x["role"] == "developer" ? json("system") : x["role"];
    if (x.contains("content")) y["content"] = x["content"];
    slim.push_back(std::move(y));
  }
  try {
    return messages_from_json(slim);
  } catch (const Error& e) {
    throw ApiError{400, e.what(), "messages"};
  }
}

}  // namespace

Request parse_request(const std::string& body, bool chat) {
  json j;
  try {
    j = parse_json(body, "request body");
  } catch (const Error& e) {
    throw ApiError{400, e.what(), ""};
  }
  if (!j.is_object()) throw ApiError{400, "the request body must be a JSON object", ""};
  Request r;
  r.chat = chat;
  if (chat) {
    r.messages = messages(j);
  } else {
    if (!j.contains("prompt") || !j["prompt"].is_string()) bad("prompt", "must be a string");
    r.prompt = j["prompt"].get<std::string>();
    if (r.prompt.empty()) bad("prompt", "must not be empty");
  }
  constexpr int64_t kMaxTokens = int64_t(1) << 30;
  r.max_tokens = integer(j, "max_completion_tokens", 1, kMaxTokens);
  if (!r.max_tokens) r.max_tokens = integer(j, "max_tokens", 1, kMaxTokens);
  r.think_budget = integer(j, "think_budget", 0, kMaxTokens);
  r.top_k = integer(j, "top_k", 0, INT32_MAX);
  if (auto v = number(j, "temperature", 0, 2)) r.temperature = float(*v);
  if (auto v = number(j, "top_p", 0, 1)) r.top_p = float(*v);
  if (auto v = number(j, "min_p", 0, 1)) r.min_p = float(*v);
  if (j.contains("seed") && !j["seed"].is_null()) {  // any 64-bit integer, negative ones wrap
    if (!j["seed"].is_number_integer()) bad("seed", "must be an integer");
    r.seed = j["seed"].is_number_unsigned() ? j["seed"].get<uint64_t>() : uint64_t(j["seed"].get<int64_t>());
  }
  if (auto n = integer(j, "n", 1, 128); n && *n != 1) bad("n", "must be 1 (r1 serve returns one choice)");
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) r.stop.push_back(s.get<std::string>());
    else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) bad("stop", "must be a string or an array of up to 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "must be a string or an array of up to 4 strings");
    }
    for (const std::string& x : r.stop)
      if (x.empty()) bad("stop", "must not hold an empty string");
  }
  r.stream = boolean(j, "stream");
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& o = j["stream_options"];
    if (!o.is_object()) bad("stream_options", "must be an object");
    r.include_usage = boolean(o, "include_usage");
  }
  return r;
}

SamplerParams sampling_for(const Request& r, const SamplerParams& defaults, uint64_t random_seed) {
  SamplerParams p = defaults;
  if (r.temperature) p.temperature = *r.temperature;
  if (r.top_p) p.top_p = *r.top_p;
  if (r.top_k) p.top_k = int(*r.top_k);
  if (r.min_p) p.min_p = *r.min_p;
  p.seed = r.seed ? *r.seed : random_seed;
  return p;
}

const char* finish_reason(Finish f) {
  return f == Finish::Length || f == Finish::Context ? "length" : "stop";
}

Usage usage_of(const GenResult& g) {
  return {g.stats.prompt_tokens, g.stats.completion_tokens, g.stats.think_tokens};
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt},
          {"completion_tokens", u.completion},
          {"total_tokens", u.prompt + u.completion},
          {"completion_tokens_details", {{"reasoning_tokens", u.reasoning}}}};
}

namespace {
json envelope(const Request& r, const std::string& id, int64_t created, const std::string& model, bool chunk) {
  const char* object = r.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", id}, {"object", object}, {"created", created}, {"model", model}};
}
}  // namespace

json completion_json(const Request& r, const std::string& id, int64_t created, const std::string& model,
                     const std::string& reasoning, const std::string& content, const GenResult& g) {
  json o = envelope(r, id, created, model, false);
  json choice = {{"index", 0}, {"finish_reason", finish_reason(g.finish)}, {"logprobs", json()},
                 {"r1_finish", finish_name(g.finish)}};
  if (const char* t = think_end_name(g)) choice["reasoning_finish"] = t;
  if (r.chat) {
    json msg = {{"role", "assistant"}, {"content", content}};
    if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
    choice["message"] = std::move(msg);
  } else {
    choice["text"] = content;
    if (!reasoning.empty()) choice["reasoning_content"] = reasoning;
  }
  o["choices"] = json::array({std::move(choice)});
  o["usage"] = usage_json(usage_of(g));
  return o;
}

json chunk_json(const Request& r, const std::string& id, int64_t created, const std::string& model,
                const std::string& reasoning, const std::string& content, const char* finish) {
  json o = envelope(r, id, created, model, true);
  json choice = {{"index", 0}, {"finish_reason", finish ? json(finish) : json()}, {"logprobs", json()}};
  if (r.chat) {
    json delta = json::object();
    if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
    if (!content.empty()) delta["content"] = content;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = content;
    if (!reasoning.empty()) choice["reasoning_content"] = reasoning;
  }
  o["choices"] = json::array({std::move(choice)});
  return o;
}

json usage_chunk_json(const Request& r, const std::string& id, int64_t created, const std::string& model,
                      const Usage& u) {
  json o = envelope(r, id, created, model, true);
  o["choices"] = json::array();
  o["usage"] = usage_json(u);
  return o;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopMatcher::push(const std::string& text) {
  if (hit_) return "";
  held_ += text;
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    hit_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; k--)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out = hit_ ? "" : held_;
  held_.clear();
  return out;
}

}  // namespace r1::api
