// r1 serve's request bodies: any bytes either parse into a request or are refused with an
// ApiError (a 400 for the client); the response objects built from a parsed request dump as
// valid JSON; stop strings never let a complete stop string through.
#include <string>

#include "core/openai_api.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (bool chat : {true, false}) {
    r1::api::Request r;
    try {
      r = r1::api::parse_request(body, chat);
    } catch (const r1::api::ApiError& e) {
      if (e.status != 400 || e.message.empty()) __builtin_trap();
      continue;
    }
    if (r.stop.size() > 4 || (r.max_tokens && *r.max_tokens < 1)) __builtin_trap();
    r1::GenResult g;
    r1::api::completion_json(r, "id", 0, "m", "", "", g).dump();
    r1::api::chunk_json(r, "id", 0, "m", "", "", "stop").dump();
    // the body itself as streamed text, cut in 7-byte pieces
    r1::api::StopMatcher m(r.stop);
    std::string out;
    for (size_t i = 0; i < body.size(); i += 7) out += m.push(body.substr(i, 7));
    out += m.flush();
    for (const std::string& s : r.stop)
      if (out.find(s) != std::string::npos) __builtin_trap();
  }
  return 0;
}
