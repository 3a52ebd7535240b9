// r1 serve: the protocol (core/openai_api.h) field by field, the scheduler's prefix reuse, and a
// real server on a free loopback port, checked against r1 run --json for the same greedy request:
// streaming and not, usage, stop strings, seeds, every error status, the API key, a client that
// leaves mid-stream, and SIGTERM with a request in flight.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <regex>
#include <thread>

#include "core/batch_sched.h"
#include "core/openai_api.h"
#include "fixture_models.h"
#include "models/cpu_backend.h"
#include "models/runtime.h"
#include "test_util.h"

using namespace r1::test;
using json = nlohmann::json;
namespace api = r1::api;

namespace {

int api_status(const std::string& body, bool chat = true) {
  try {
    api::parse_request(body, chat);
  } catch (const api::ApiError& e) {
    return e.status;
  }
  return 200;
}
std::string api_param(const std::string& body) {
  try {
    api::parse_request(body, true);
  } catch (const api::ApiError& e) {
    return e.param;
  }
  return "(none)";
}

}  // namespace

TEST_CASE("serve api: fields are read, wrong types are a 400 naming the field, unknown fields ignored", "[serve]") {
  const std::string msgs = R"("messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}],"name":"bob"}])";
  auto r = api::parse_request("{" + msgs + R"(,"max_tokens":7,"temperature":0.2,"top_p":0.5,"top_k":3,"min_p":0.1,"seed":-1,
    "stop":["a","bc"],"stream":true,"stream_options":{"include_usage":true},"think_budget":5,"n":1,
    "frequency_penalty":0,"user":"x","logit_bias":{}})", true);
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages[0].role == "system");
  CHECK(r.messages[1].content == "Hi");
  CHECK(*r.max_tokens == 7);
  CHECK(*r.temperature == Approx(0.2f));
  CHECK(*r.top_k == 3);
  CHECK(*r.seed == ~uint64_t(0));
  CHECK(r.stop == std::vector<std::string>{"a", "bc"});
  CHECK((r.stream && r.include_usage));
  CHECK(*r.think_budget == 5);
  CHECK(*api::parse_request("{" + msgs + R"(,"max_completion_tokens":9,"max_tokens":3})", true).max_tokens == 9);

  CHECK(api_param("{" + msgs + R"(,"temperature":"hot"})") == "temperature");
  CHECK(api_param("{" + msgs + R"(,"temperature":3})") == "temperature");
  CHECK(api_param("{" + msgs + R"(,"max_tokens":0})") == "max_tokens");
  CHECK(api_param("{" + msgs + R"(,"max_tokens":1.5})") == "max_tokens");
  CHECK(api_param("{" + msgs + R"(,"n":2})") == "n");
  CHECK(api_param("{" + msgs + R"(,"stop":["a","b","c","d","e"]})") == "stop");
  CHECK(api_param("{" + msgs + R"(,"stop":[""]})") == "stop");
  CHECK(api_param("{" + msgs + R"(,"stream":"yes"})") == "stream");
  CHECK(api_param("{" + msgs + R"(,"seed":"1"})") == "seed");
  CHECK(api_param(R"({"messages":[]})") == "messages");
  CHECK(api_param(R"({"messages":[{"role":"usr","content":"x"}]})") == "messages");
  CHECK(api_param(R"({"messages":[{"role":"user","content":5}]})") == "messages");
  CHECK(api_param(R"({"model":"x"})") == "messages");
  CHECK(api_status("[1,2]") == 400);
  CHECK(api_status("{\"messages\": [") == 400);
  CHECK(api_status(std::string(1000, '[') + std::string(1000, ']')) == 400);
  CHECK(api_status("{\"prompt\":\"\xff\"}", false) == 400);  // invalid UTF-8
  CHECK(api_status(R"({"prompt":5})", false) == 400);
  CHECK(api_status(R"({"prompt":"def f():"})", false) == 200);

  const json e = api::error_json({400, "bad", "temperature", "invalid_request_error"});
  CHECK(e["error"]["message"] == "bad");
  CHECK(e["error"]["param"] == "temperature");
  CHECK(e["error"]["type"] == "invalid_request_error");
}

TEST_CASE("serve api: stop strings end the text before them, also when split across pieces", "[serve]") {
  api::StopMatcher m({"STOP", "xy"});
  std::string out;
  for (const char* piece : {"hello S", "TO", "P and more"}) out += m.push(piece);
  CHECK(m.hit());
  CHECK(out == "hello ");
  CHECK(m.push("more").empty());  // nothing after a hit
  api::StopMatcher two({"STOP", "xy"});
  out = two.push("ax");
  out += two.push("yb");
  CHECK(two.hit());
  CHECK(out == "a");
  api::StopMatcher n({"STOP"});
  out.clear();
  for (const char* piece : {"ab", "cST", "O", "P tail"}) out += n.push(piece);
  CHECK(n.hit());
  CHECK(out == "abc");
  api::StopMatcher k({"END"});
  out = k.push("no E");
  CHECK(out == "no ");  // "E" held back: it may begin "END"
  out += k.push("nding");
  out += k.flush();
  CHECK_FALSE(k.hit());
  CHECK(out == "no Ending");
  CHECK(std::string(api::finish_reason(r1::Finish::Context)) == "length");
  CHECK(std::string(api::finish_reason(r1::Finish::Loop)) == "stop");
}

TEST_CASE("serve scheduler: a job that extends a cached conversation runs only its new tokens", "[serve]") {
  auto rt = r1::Runtime::load(r1test::packed("tiny-qwen2-py", "q8"));
  r1::ThreadPool pool(2);
  const r1::Tokenizer& tok = *rt.tok;
  r1::CpuBatch batch(*rt.model, 2, 512, r1::KvFormat::F16, pool);
  r1::BatchPlan plan;
  plan.reuse_prefix = true;
  r1::BatchScheduler sched(batch, tok, plan);
  auto job_of = [&](const std::string& text) {
    r1::BatchJob j;
    j.prompt = tok.encode(text);
    j.opt.sampling.temperature = 0;
    j.opt.max_new = 12;
    j.opt.on_loop = r1::OnLoop::Off;
    return j;
  };
  auto run_one = [&](r1::BatchScheduler& s, const std::string& text) {
    bool given = false;
    r1::GenResult got;
    s.run([&](r1::BatchJob& j) { return !given && (j = job_of(text), given = true); },
          [&](const r1::BatchJob&, r1::GenResult& g) { got = g; });
    return got;
  };
  const std::string first = "def add(a, b):\n";
  const r1::GenResult a = run_one(sched, first);
  CHECK(a.stats.prefilled_tokens == a.stats.prompt_tokens);
  // an unrelated job in between takes the empty slot, not the one holding the conversation
  const r1::GenResult u = run_one(sched, "import os\nimport sys\n");
  CHECK(u.stats.prefilled_tokens == u.stats.prompt_tokens);
  const std::string second = first + tok.decode(a.ids) + "\n\ndef sub(a, b):\n";
  const r1::GenResult b = run_one(sched, second);
  // the first prompt and all but the last generated token were cached
  CHECK(b.stats.prompt_tokens - b.stats.prefilled_tokens >= a.stats.prompt_tokens);
  // and the result is what a scheduler without the cache gives
  r1::CpuBatch fresh_batch(*rt.model, 2, 512, r1::KvFormat::F16, pool);
  r1::BatchScheduler fresh(fresh_batch, tok, {});
  const r1::GenResult c = run_one(fresh, second);
  CHECK(c.stats.prefilled_tokens == c.stats.prompt_tokens);
  CHECK(b.ids == c.ids);
}

namespace {

// `r1 serve` on a free loopback port, for one test; SIGKILLed if the test did not stop it.
class ServeProc {
 public:
  explicit ServeProc(std::vector<std::string> args) {
    args.insert(args.begin(), {"serve", "--port", "0"});
    pid_ = spawn_r1(args, dir_ / "out", dir_ / "err");
    for (int i = 0; i < 400 && port_ == 0; i++) {
      const std::string e = slurp(dir_ / "err");
      const size_t at = e.find("http://127.0.0.1:");
      if (at != std::string::npos && e.find(' ', at) != std::string::npos) port_ = std::atoi(e.c_str() + at + 17);
      else std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    INFO(slurp(dir_ / "err"));
    REQUIRE(port_ > 0);
  }
  ~ServeProc() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string err() const { return slurp(dir_ / "err"); }
  // Sends sig and waits (bounded) for the exit; the exit code, or 128 + signal.
  int stop(int sig = SIGTERM, int wait_s = 20) {
    ::kill(pid_, sig);
    int st = 0;
    for (int i = 0; i < wait_s * 20; i++) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;  // still running
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }

 private:
  TempDir dir_{"r1serve"};
  pid_t pid_ = -1;
  int port_ = 0;
};

struct Reply {
  int status = 0;
  json body;
  std::string retry_after;
};
Reply post(const ServeProc& s, const std::string& path, const std::string& body, const httplib::Headers& h = {}) {
  auto c = s.client();
  auto r = c.Post(path.c_str(), h, body, "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = json::parse(r->body, nullptr, false);
  out.retry_after = r->get_header_value("Retry-After");
  return out;
}

// A streamed request: every event's JSON, whether "[DONE]" ended it. on_event returning false
// closes the connection (a client that leaves).
struct Stream {
  int status = 0;
  std::vector<json> events;
  int comments = 0;  // SSE comment lines (":"), the server's heartbeats
  bool done = false;
  std::string reasoning, content;
};
Stream post_stream(const ServeProc& s, const std::string& path, const std::string& body,
                   const std::function<bool(const json&)>& on_event = {}) {
  auto c = s.client();
  Stream out;
  std::string buf;
  httplib::Request q;
  q.method = "POST";
  q.path = path;
  q.body = body;
  q.set_header("Content-Type", "application/json");
  q.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    buf.append(d, n);
    for (size_t e; (e = buf.find("\n\n")) != std::string::npos; buf.erase(0, e + 2)) {
      const std::string ev = buf.substr(0, e);
      out.comments += ev.rfind(":", 0) == 0;
      if (ev.rfind("data: ", 0) != 0) continue;
      if (ev == "data: [DONE]") {
        out.done = true;
        continue;
      }
      json j = json::parse(ev.substr(6), nullptr, false);
      out.events.push_back(j);
      if (j.contains("choices") && !j["choices"].empty()) {
        const json& ch = j["choices"][0];
        const json& d = ch.contains("delta") ? ch["delta"] : ch;
        if (d.contains("reasoning_content")) out.reasoning += d["reasoning_content"].get<std::string>();
        if (d.contains("content") && d["content"].is_string()) out.content += d["content"].get<std::string>();
        if (d.contains("text")) out.content += d["text"].get<std::string>();
      }
      if (on_event && !on_event(j)) return false;
    }
    return true;
  };
  httplib::Response r;
  httplib::Error err;
  c.send(q, r, err);
  out.status = r.status;
  return out;
}

// Tokens a request had made when the server noticed its client gone (its log line), or -1.
int gone_after(const ServeProc& s) {
  const std::string err = s.err();
  INFO(err);
  const size_t at = err.find("499 client gone after ");
  CHECK(at != std::string::npos);
  return at == std::string::npos ? -1 : std::atoi(err.c_str() + at + 22);
}

json run_json(const std::string& model, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"run", "-m", model, "--json", "-q"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_r1(args);
  INFO(r.err);
  REQUIRE(r.code == 0);
  return json::parse(r.out);
}

std::string chat_body(const std::string& user, const std::string& more = "") {
  return R"({"model":"m","messages":[{"role":"user","content":)" + json(user).dump() + "}]" + more + "}";
}

}  // namespace

TEST_CASE("serve: chat answers equal r1 run --json for the same greedy request, streamed or not", "[serve]") {
  const std::string model = r1test::packed("tiny-qwen2", "q8");
  ServeProc s({"-m", model, "--temp", "0", "--on-loop", "off"});
  for (const char* prompt : {"What is 2+2?", "Name three colors."}) {
    INFO(prompt);
    const json want = run_json(model, {"-p", prompt, "--temp", "0", "-n", "40", "--think-budget", "12", "--on-loop", "off"});
    REQUIRE(!want["answer"].get<std::string>().empty());
    REQUIRE(!want["reasoning"].get<std::string>().empty());
    const std::string body = chat_body(prompt, R"(,"max_tokens":40,"think_budget":12)");
    Reply r = post(s, "/v1/chat/completions", body);
    REQUIRE(r.status == 200);
    const json& ch = r.body["choices"][0];
    CHECK(r.body["object"] == "chat.completion");
    CHECK(ch["message"]["role"] == "assistant");
    CHECK(ch["message"]["reasoning_content"] == want["reasoning"]);
    CHECK(ch["message"]["content"] == want["answer"]);
    CHECK(ch["finish_reason"] == "length");
    CHECK(ch["reasoning_finish"] == "think_budget");
    CHECK(r.body["usage"]["prompt_tokens"] == want["prompt_tokens"]);
    CHECK(r.body["usage"]["completion_tokens"] == want["completion_tokens"]);
    CHECK(r.body["usage"]["completion_tokens_details"]["reasoning_tokens"] == want["reasoning_tokens"]);
    CHECK(r.body["usage"]["total_tokens"] == want["prompt_tokens"].get<int>() + want["completion_tokens"].get<int>());

    Stream st = post_stream(s, "/v1/chat/completions", chat_body(prompt, R"(,"max_tokens":40,"think_budget":12,"stream":true,"stream_options":{"include_usage":true})"));
    CHECK(st.status == 200);
    CHECK(st.done);
    REQUIRE(st.events.size() >= 4);
    CHECK(st.events.front()["choices"][0]["delta"]["role"] == "assistant");
    CHECK(st.reasoning == want["reasoning"]);
    CHECK(st.content == want["answer"]);
    const json& last = st.events[st.events.size() - 2];
    CHECK(last["choices"][0]["finish_reason"] == "length");
    CHECK(st.events.back()["choices"].empty());
    CHECK(st.events.back()["usage"]["completion_tokens"] == want["completion_tokens"]);
    for (const json& e : st.events) CHECK(e["object"] == "chat.completion.chunk");
  }
  // the same conversation again reuses the cached prompt (the log line says how much)
  post(s, "/v1/chat/completions", chat_body("What is 2+2?", R"(,"max_tokens":4)"));
  CHECK(s.stop() == 0);
  CHECK(s.err().find("200 prompt") != std::string::npos);
  CHECK(std::regex_search(s.err(), std::regex("\\(cached [1-9][0-9]*\\)")));
}

TEST_CASE("serve: completions, stop strings, seeds, models and health", "[serve]") {
  const std::string model = r1test::packed("tiny-qwen2-py", "q8");
  ServeProc s({"-m", model, "--on-loop", "off", "--name", "py"});
  const json want = run_json(model, {"-p", "def main():\n", "--raw", "--temp", "0", "-n", "30", "--on-loop", "off"});
  const std::string text = want["answer"];
  REQUIRE(text.size() > 20);
  Reply r = post(s, "/v1/completions", R"({"prompt":"def main():\n","max_tokens":30,"temperature":0})");
  REQUIRE(r.status == 200);
  CHECK(r.body["object"] == "text_completion");
  CHECK(r.body["model"] == "py");
  CHECK(r.body["choices"][0]["text"] == text);
  // a stop string from the middle of that text: everything before it, finish "stop"
  const std::string stop = text.substr(10, 3);
  r = post(s, "/v1/completions", json{{"prompt", "def main():\n"}, {"max_tokens", 30}, {"temperature", 0}, {"stop", {stop}}}.dump());
  CHECK(r.body["choices"][0]["text"] == text.substr(0, text.find(stop)));
  CHECK(r.body["choices"][0]["finish_reason"] == "stop");
  CHECK(r.body["usage"]["completion_tokens"].get<int>() < 30);
  Stream st = post_stream(s, "/v1/completions", json{{"prompt", "def main():\n"}, {"max_tokens", 30}, {"temperature", 0}, {"stop", stop}, {"stream", true}}.dump());
  CHECK(st.content == text.substr(0, text.find(stop)));
  CHECK(st.done);
  // seeds: the same seed, the same text; another seed, another text
  auto sampled = [&](int seed) {
    return post(s, "/v1/completions", json{{"prompt", "import"}, {"max_tokens", 24}, {"temperature", 1.0}, {"seed", seed}}.dump())
        .body["choices"][0]["text"];
  };
  CHECK(sampled(7) == sampled(7));
  CHECK(sampled(7) != sampled(8));
  // without a seed in the request: --seed when given, else a fresh seed each time
  auto unseeded = [](const ServeProc& p) {
    return post(p, "/v1/completions", R"({"prompt":"import","max_tokens":24,"temperature":1.0})").body["choices"][0]["text"];
  };
  CHECK(unseeded(s) != unseeded(s));
  ServeProc fixed({"-m", model, "--on-loop", "off", "--seed", "11"});
  CHECK(unseeded(fixed) == unseeded(fixed));
  auto c = s.client();
  auto m = c.Get("/v1/models");
  REQUIRE(m);
  CHECK(json::parse(m->body)["data"][0]["id"] == "py");
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(json::parse(h->body)["status"] == "ok");
}

TEST_CASE("serve: every bad request gets its status and an OpenAI error object", "[serve]") {
  const std::string model = r1test::packed("tiny-qwen2", "q8");
  ServeProc s({"-m", model, "--ctx", "64", "--max-body", "4096", "--on-loop", "off"});
  auto is_error = [](const Reply& r, int status) {
    INFO(r.body.dump());
    CHECK(r.status == status);
    CHECK(r.body["error"]["message"].is_string());
    CHECK(r.body["error"]["type"].is_string());
  };
  is_error(post(s, "/v1/chat/completions", chat_body("hi", R"(,"temperature":"hot")")), 400);
  is_error(post(s, "/v1/chat/completions", "{not json"), 400);
  is_error(post(s, "/v1/chat/completions", chat_body("hi", R"(,"n":3)")), 400);
  Reply ctx = post(s, "/v1/chat/completions", chat_body(std::string(300, 'a') + " b c d e f g h i j k l m n o p q r s t u v w x y z"));
  is_error(ctx, 400);
  CHECK(ctx.body["error"]["message"].get<std::string>().find("context holds 64") != std::string::npos);
  is_error(post(s, "/v1/chat/completions", chat_body(std::string(5000, 'x'))), 413);
  is_error(post(s, "/v1/nothing", "{}"), 404);
  // one slot, no queue: while a stream holds the slot (a greedy "yo" runs to 4000 tokens on this
  // fixture), another request is a 503 with Retry-After
  ServeProc one({"-m", model, "--max-concurrent", "1", "--max-queue", "0", "--on-loop", "off"});
  Reply busy;
  Stream held = post_stream(one, "/v1/chat/completions", chat_body("yo", R"(,"max_tokens":4000,"temperature":0,"stream":true)"),
                            [&](const json&) {
                              if (busy.status == 0) busy = post(one, "/v1/chat/completions", chat_body("hello"));
                              return true;
                            });
  is_error(busy, 503);
  CHECK(busy.retry_after == "1");
  CHECK(held.done);
  CHECK(post(one, "/v1/chat/completions", chat_body("hello", R"(,"max_tokens":2)")).status == 200);  // free again

  // a second server on a port in use is refused (not started beside the first)
  const CliResult twice = run_r1({"serve", "-m", model, "--port", std::to_string(s.port())});
  CHECK(twice.code == 1);
  CHECK(twice.err.find("cannot listen on 127.0.0.1:" + std::to_string(s.port())) != std::string::npos);

  ServeProc k({"-m", model, "--api-key", "sekrit", "--on-loop", "off"});
  is_error(post(k, "/v1/chat/completions", chat_body("hi", R"(,"max_tokens":2)")), 401);
  is_error(post(k, "/v1/chat/completions", chat_body("hi", R"(,"max_tokens":2)"), {{"Authorization", "Bearer wrong"}}), 401);
  CHECK(post(k, "/v1/chat/completions", chat_body("hi", R"(,"max_tokens":2)"), {{"Authorization", "Bearer sekrit"}}).status == 200);
  CHECK(k.client().Get("/health")->status == 200);  // health needs no key
}

// Requests that must hold a slot for a while say "yo" greedily: on this random fixture that runs
// to 4000 tokens, where sampled text often meets the end-of-sentence token within a few hundred.
TEST_CASE("serve: a client that leaves mid-stream frees its slot; SIGTERM finishes requests in flight", "[serve]") {
  const std::string model = r1test::packed("tiny-qwen2", "q8");
  {
    ServeProc s({"-m", model, "--max-concurrent", "1", "--on-loop", "off"});
    int seen = 0;
    Stream st = post_stream(s, "/v1/chat/completions", chat_body("yo", R"(,"max_tokens":4000,"temperature":0,"stream":true)"),
                            [&](const json&) { return ++seen < 3; });
    CHECK_FALSE(st.done);
    // the slot is free long before 4000 tokens: the next request needs it (one slot)
    Reply next = post(s, "/v1/chat/completions", chat_body("hello", R"(,"max_tokens":2)"));
    CHECK(next.status == 200);
    CHECK(s.stop() == 0);
    CHECK(gone_after(s) < 4000);
  }
  {
    // not streamed: past the heartbeat the response is chunked, spaces first; a client that
    // closes its socket is noticed at the next heartbeat
    ServeProc s({"-m", model, "--max-concurrent", "1", "--heartbeat-ms", "1", "--on-loop", "off"});
    Reply whole = post(s, "/v1/chat/completions", chat_body("yo", R"(,"max_tokens":300,"temperature":0)"));
    CHECK(whole.status == 200);
    CHECK(whole.body["usage"]["completion_tokens"].get<int>() > 0);
    {
      const std::string body = chat_body("yo", R"(,"max_tokens":4000,"temperature":0)");
      const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(uint16_t(s.port()));
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
      REQUIRE(::send(fd, req.data(), req.size(), 0) == ssize_t(req.size()));
      char c;
      REQUIRE(::recv(fd, &c, 1, 0) == 1);  // the response has begun
      ::close(fd);
    }
    CHECK(post(s, "/v1/chat/completions", chat_body("hello", R"(,"max_tokens":2)")).status == 200);
    // a stream waiting for the one slot gets SSE comments (heartbeats) until its turn
    Stream waiting;
    std::thread second;
    Stream first = post_stream(s, "/v1/chat/completions", chat_body("yo", R"(,"max_tokens":600,"temperature":0,"stream":true)"),
                               [&](const json&) {
                                 if (!second.joinable())
                                   second = std::thread([&] {
                                     waiting = post_stream(s, "/v1/chat/completions", chat_body("yo", R"(,"max_tokens":4,"stream":true)"));
                                   });
                                 return true;
                               });
    second.join();
    CHECK(first.done);
    CHECK(waiting.done);
    CHECK(waiting.comments > 0);
    CHECK(s.stop() == 0);
    CHECK(gone_after(s) < 4000);
  }
  {
    ServeProc s({"-m", model, "--on-loop", "off"});
    bool sent = false;
    Stream st = post_stream(s, "/v1/chat/completions", chat_body("yo", R"(,"max_tokens":4000,"temperature":0,"stream":true)"),
                            [&](const json&) {
                              if (!sent) ::kill(s.pid(), SIGTERM), sent = true;
                              return true;
                            });
    CHECK(st.done);  // finished after the signal
    REQUIRE(st.events.size() >= 2);
    CHECK(st.events.back()["choices"][0]["finish_reason"].is_string());
    CHECK(s.stop(0) == 0);  // (signal 0: only waits)
    CHECK(s.err().find("stopping; 1 requests in flight") != std::string::npos);
  }
}
