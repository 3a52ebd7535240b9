// r1 serve: an OpenAI-compatible HTTP server (cpp-httplib). Every request joins one continuous
// batch (core/batch_sched.h) at the next step, reusing the KV rows of the longest prefix a slot
// still holds; the protocol (fields, objects, stop strings) is core/openai_api.h. Threads: the
// HTTP workers parse, tokenize and wait; one scheduler thread runs the model; a watcher turns
// SIGTERM into a drain (no new requests, those in flight finish within --shutdown-timeout).
#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "cli/command.h"
#include "cli/common.h"
#include "core/batch_sched.h"
#include "core/error.h"
#include "core/openai_api.h"

namespace {

using namespace r1;
using namespace r1::cli;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ServeArgs {
  ModelArgs model;
  SamplingArgs sampling;
  ReasoningArgs reasoning;
  std::string tmpl, host = "127.0.0.1", api_key, name;
  int port = 8080;
  int64_t max_concurrent = 8, max_queue = 64, n = 4096;
  size_t max_body = 4 << 20;
  int shutdown_timeout = 30, heartbeat_ms = 1000;
  bool quiet = false;
};

// One request from the HTTP worker that waits on it to the scheduler that runs it. Guarded by m,
// except the two flags the scheduler reads without it.
struct Live {
  api::Request req;
  std::string id, log_status = "200";
  int64_t created = 0;
  std::vector<int32_t> prompt;
  GenOptions opt;
  std::atomic<bool> cancel{false}, stop_now{false};
  std::atomic<bool> released{false};  // no longer counted against the slots and the queue
  std::mutex m;
  std::condition_variable cv;
  std::string reasoning, content;  // not yet sent (streaming) or all of it
  api::StopMatcher stop{{}};
  bool done = false, aborted = false;
  int64_t tokens = 0;  // streamed so far
  GenResult result;
  Clock::time_point t_arrive = Clock::now(), t_first;
};
using LivePtr = std::shared_ptr<Live>;

class Server {
 public:
  Server(ServeArgs& a, Loaded& L, BatchSession& s, ChatTemplate tmpl, SamplerParams base)
      : a_(a), L_(L), tok_(*L.rt.tok), tmpl_(std::move(tmpl)), base_(base), dry_(dry_breakers(tok_, base)),
        sched_(s, tok_, plan()), ctx_(s.ctx()) {
    name_ = a.name.empty() ? std::filesystem::path(a.model.model).stem().string() : a.name;
  }

  int serve() {
    httplib::Server svr;
    const size_t workers = size_t(a_.max_concurrent + a_.max_queue + 8);
    svr.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    svr.set_payload_max_length(a_.max_body);
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server on the
    // same port starts without a word and the kernel splits the connections between the two.
    svr.set_socket_options([](int sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    svr.set_read_timeout(10, 0);   // headers and body
    svr.set_write_timeout(10, 0);  // a client that stops reading a stream is dropped
    svr.set_keep_alive_timeout(5);
    svr.set_pre_routing_handler([this](const httplib::Request& q, httplib::Response& r) {
      if (a_.api_key.empty() || q.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      if (q.get_header_value("Authorization") == "Bearer " + a_.api_key) return httplib::Server::HandlerResponse::Unhandled;
      reply_error(r, {401, "a valid API key is required (Authorization: Bearer KEY)", "", "authentication_error"});
      return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler([](const httplib::Request&, httplib::Response& r) {
      if (!r.body.empty()) return;
      const char* what = r.status == 413 ? "the request body is larger than --max-body"
                         : r.status == 404 ? "no such endpoint"
                                           : "bad request";
      r.set_content(api::error_json({r.status, what, "", "invalid_request_error"}).dump(), "application/json");
    });
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& r, std::exception_ptr) {
      r.status = 500;
      r.set_content(api::error_json({500, "internal error", "", "server_error"}).dump(), "application/json");
    });
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
      r.status = draining_ ? 503 : 200;
      r.set_content(json{{"status", draining_ ? "draining" : "ok"}, {"slots", a_.max_concurrent}, {"in_flight", in_flight()}}.dump(),
                    "application/json");
    });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
      json m = {{"id", name_}, {"object", "model"}, {"created", started_}, {"owned_by", "r1"}};
      r.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) { handle(q, r, true); });
    svr.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) { handle(q, r, false); });

    const int port = a_.port == 0 ? svr.bind_to_any_port(a_.host) : (svr.bind_to_port(a_.host, a_.port) ? a_.port : -1);
    if (port < 0) fail_usage("cannot listen on " + a_.host + ":" + std::to_string(a_.port) + " (in use, or not an address here)");
    std::signal(SIGPIPE, SIG_IGN);
    install_interrupt();
    std::thread runner([this] { run_scheduler(); });
    std::thread watcher([this, &svr] { watch(svr); });
    std::fprintf(stderr, "r1 serve: %s on http://%s:%d (%lld slots of %lld positions)\n", name_.c_str(), a_.host.c_str(),
                 port, (long long)a_.max_concurrent, (long long)ctx_);
    svr.listen_after_bind();
    {
      std::lock_guard<std::mutex> lk(qm_);
      quit_ = true;
    }
    qcv_.notify_all();
    watcher.join();
    runner.join();
    return failed_ ? 2 : 0;
  }

 private:
  BatchPlan plan() {
    BatchPlan p;
    p.reuse_prefix = true;
    p.interrupt = &hard_stop_;
    return p;
  }

  static void reply_error(httplib::Response& r, const api::ApiError& e) {
    r.status = e.status;
    r.set_content(api::error_json(e).dump(), "application/json");
  }

  // SIGTERM or SIGINT: refuse new requests, let those in flight finish (bounded), then stop.
  void watch(httplib::Server& svr) {
    while (!interrupted().load() && !quit_ && !failed_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (quit_) return;
    draining_ = true;
    if (!failed_) std::fprintf(stderr, "r1 serve: stopping; %lld requests in flight\n", (long long)in_flight());
    const auto deadline = Clock::now() + std::chrono::seconds(a_.shutdown_timeout);
    while (in_flight() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (in_flight() > 0) abort_all();  // out of time: what still runs ends now
    // a signal right at start: stop() is a no-op until the server is listening
    for (int i = 0; i < 200 && !svr.is_running(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    svr.stop();
  }

  // Every request in flight gets a 503 (or an error event) now; new ones are refused.
  void abort_all() {
    draining_ = true;
    hard_stop_ = true;
    qcv_.notify_all();
    std::lock_guard<std::mutex> lk(lives_m_);
    for (const LivePtr& l : lives_) {
      std::lock_guard<std::mutex> g(l->m);
      l->aborted = true;
      l->cv.notify_all();
    }
  }

  void run_scheduler() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(qm_);
        qcv_.wait(lk, [&] { return quit_ || hard_stop_ || !queue_.empty(); });
        if ((quit_ && queue_.empty()) || hard_stop_) return;
      }
      try {
        sched_.run([this](BatchJob& j) { return next_job(j); },
                   [this](const BatchJob& j, GenResult& g) { finished(j, g); });
      } catch (const std::exception& e) {  // a failure of the model itself: every waiting request learns it
        std::fprintf(stderr, "r1 serve: %s\n", e.what());
        abort_all();
        failed_ = true;
        return;
      }
    }
  }

  // On the scheduler thread: the next request waiting, if any.
  bool next_job(BatchJob& job) {
    LivePtr l;
    {
      std::lock_guard<std::mutex> lk(qm_);
      while (!queue_.empty() && !l) {
        l = queue_.front();
        queue_.pop_front();
        if (l->cancel) l.reset();
      }
    }
    if (!l) return false;
    job.prompt = l->prompt;
    job.opt = l->opt;
    job.opt.stop_now = &l->stop_now;
    job.cancel = &l->cancel;
    job.on_event = [l](const GenEvent& e) { on_event(*l, e); };
    job.tag = size_t(l.get());
    running_[job.tag] = l;
    for (auto it = running_.begin(); it != running_.end();)  // dropped ones (client gone)
      it = it->second->cancel ? running_.erase(it) : std::next(it);
    return true;
  }

  static void on_event(Live& l, const GenEvent& e) {
    if (e.kind != GenEvent::Text) return;
    std::lock_guard<std::mutex> lk(l.m);
    if (l.t_first == Clock::time_point{}) l.t_first = Clock::now();
    l.tokens += e.id >= 0;
    if (e.in_think) {
      l.reasoning += e.text;
    } else {
      l.content += l.stop.push(e.text);
      if (l.stop.hit()) l.stop_now = true;
    }
    l.cv.notify_all();
  }

  void finished(const BatchJob& j, GenResult& g) {
    auto it = running_.find(j.tag);
    if (it == running_.end()) return;
    LivePtr l = it->second;
    running_.erase(it);
    release(*l);  // before the client hears of the end: its next request finds the slot free
    std::lock_guard<std::mutex> lk(l->m);
    l->content += l->stop.flush();
    l->result = g;
    l->done = true;
    l->cv.notify_all();
  }

  void handle(const httplib::Request& q, httplib::Response& r, bool chat) {
    auto l = std::make_shared<Live>();
    l->created = int64_t(std::time(nullptr));
    l->id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(++ids_);
    try {
      if (draining_) throw api::ApiError{503, "the server is shutting down", "", "server_error"};
      l->req = api::parse_request(q.body, chat);
      try {
        prepare(*l);
      } catch (const Error& e) {  // the template or the tokenizer refused the text
        throw api::ApiError{400, e.what(), chat ? "messages" : "prompt"};
      }
    } catch (const api::ApiError& e) {
      reply_error(r, e);
      log(*l, std::to_string(e.status) + " " + e.message);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(qm_);
      if (admitted_.load() >= a_.max_concurrent + a_.max_queue) {
        r.set_header("Retry-After", "1");
        reply_error(r, {503, "too many requests waiting; retry shortly", "", "server_error"});
        log(*l, "503 queue full");
        return;
      }
      {
        std::lock_guard<std::mutex> g(lives_m_);
        lives_.insert(l);
      }
      admitted_++;
      queue_.push_back(l);
    }
    qcv_.notify_one();
    if (l->req.stream) return stream(r, l);
    {
      std::unique_lock<std::mutex> lk(l->m);
      if (l->cv.wait_for(lk, heartbeat(), [&] { return l->done || l->aborted; })) {
        lk.unlock();
        Finally fin{this, l};
        if (l->aborted) return reply_error(r, kStopped);
        return r.set_content(whole_response(*l), "application/json");
      }
    }
    // Not ready within a heartbeat: the response goes out chunked, a space (JSON's leading
    // whitespace) every heartbeat until it is ready. A proxy then sees a live connection
    // through a long reasoning, and a client that left is noticed (the write fails) and its
    // slot freed, as for a stream.
    r.set_chunked_content_provider(
        "application/json",
        [this, l](size_t, httplib::DataSink& sink) {
          for (;;) {
            bool ready;
            {
              std::unique_lock<std::mutex> lk(l->m);
              ready = l->cv.wait_for(lk, heartbeat(), [&] { return l->done || l->aborted; });
            }
            if (!ready) {
              if (sink.is_writable() && sink.write(" ", 1)) continue;
              return client_gone(*l);
            }
            const std::string body =
                l->aborted ? api::error_json(kStopped).dump()
                           : whole_response(*l);
            sink.write(body.data(), body.size());
            sink.done();
            return true;
          }
        },
        [this, l](bool) {
          l->cancel = true;
          finish_request(l);
        });
  }

  static inline const api::ApiError kStopped{503, "the server stopped before the request finished", "", "server_error"};
  // A write to the client failed: the request is dropped (its slot freed before the next pass).
  static bool client_gone(Live& l) {
    l.cancel = true;
    l.log_status = "499 client gone";
    return false;
  }

  std::chrono::milliseconds heartbeat() const { return std::chrono::milliseconds(a_.heartbeat_ms); }
  std::string whole_response(Live& l) {
    std::lock_guard<std::mutex> lk(l.m);
    return api::completion_json(l.req, l.id, l.created, name_, l.reasoning, l.content, l.result).dump();
  }

  // The request's prompt and options, or a 400 saying why it cannot run.
  void prepare(Live& l) {
    bool opens_think = false;
    const std::string text = l.req.chat ? tmpl_.generation_prompt(l.req.messages, opens_think) : l.req.prompt;
    l.prompt = tok_.encode(text);
    if (l.prompt.empty()) throw api::ApiError{400, "the prompt is empty", "messages"};
    if (int64_t(l.prompt.size()) >= ctx_)
      throw api::ApiError{400,
                          "the prompt has " + std::to_string(l.prompt.size()) +
                              " tokens; the context holds " + std::to_string(ctx_) + " (with room for the answer)",
                          l.req.chat ? "messages" : "prompt"};
    GenOptions& o = l.opt;
    o.starts_in_think = opens_think;
    {
      std::lock_guard<std::mutex> lk(qm_);
      // a request without a seed: --seed when given (the same seed, the same output), else a fresh one
      o.sampling = api::sampling_for(l.req, base_, a_.sampling.seed ? *a_.sampling.seed : rng_());
    }
    try {
      validate(o.sampling);
    } catch (const Error& e) {
      throw api::ApiError{400, e.what(), ""};
    }
    o.dry_breakers = dry_;
    a_.reasoning.apply(o);
    if (l.req.think_budget) o.think_budget = *l.req.think_budget;
    o.max_new = l.req.max_tokens ? *l.req.max_tokens : a_.n;
    o.stop_ids = L_.rt.stop_ids;
    l.stop = api::StopMatcher(l.req.stop);
  }

  // Server-sent events: a first chunk with the role, then deltas as they come (an SSE comment
  // when a heartbeat passes without any), the last chunk with the finish reason, the usage
  // chunk when asked, and [DONE]. A client that goes away cancels the request: its slot is
  // free before the next step.
  void stream(httplib::Response& r, const LivePtr& l) {
    r.set_header("Cache-Control", "no-cache");
    r.set_chunked_content_provider(
        "text/event-stream",
        [this, l](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string s = "data: " + j.dump() + "\n\n";
            return sink.write(s.data(), s.size());
          };
          if (l->req.chat) {  // the role at once, as OpenAI's first chunk
            json j = api::chunk_json(l->req, l->id, l->created, name_, "", "");
            j["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
            if (!send(j)) return client_gone(*l);
          }
          for (;;) {
            std::string reasoning, content;
            bool done, aborted;
            {
              std::unique_lock<std::mutex> lk(l->m);
              l->cv.wait_for(lk, heartbeat(),
                             [&] { return l->done || l->aborted || !l->reasoning.empty() || !l->content.empty(); });
              reasoning.swap(l->reasoning);
              content.swap(l->content);
              done = l->done;
              aborted = l->aborted;
            }
            bool ok = sink.is_writable();
            if (ok && (!reasoning.empty() || !content.empty()))
              ok = send(api::chunk_json(l->req, l->id, l->created, name_, reasoning, content));
            else if (ok && !done && !aborted)  // nothing for a heartbeat (queued, a long prompt): an SSE comment
              ok = sink.write(":\n\n", 3);
            if (!ok) {
              return client_gone(*l);
            }
            if (aborted) {
              l->log_status = "503 stopped";
              send(api::error_json(kStopped));
              sink.done();
              return true;
            }
            if (!done) continue;
            ok = send(api::chunk_json(l->req, l->id, l->created, name_, "", "", api::finish_reason(l->result.finish)));
            if (ok && l->req.include_usage)
              ok = send(api::usage_chunk_json(l->req, l->id, l->created, name_, api::usage_of(l->result)));
            if (ok) {
              const std::string end = "data: [DONE]\n\n";
              sink.write(end.data(), end.size());
            }
            sink.done();
            return true;
          }
        },
        [this, l](bool) {
          l->cancel = true;  // no-op once done; frees the slot when the client left
          finish_request(l);
        });
  }

  struct Finally {
    Server* s;
    LivePtr l;
    ~Finally() { s->finish_request(l); }
  };
  int64_t in_flight() {
    std::lock_guard<std::mutex> lk(lives_m_);
    return int64_t(lives_.size());
  }
  void release(Live& l) {
    if (!l.released.exchange(true)) admitted_--;
  }
  void finish_request(const LivePtr& l) {
    {
      std::lock_guard<std::mutex> lk(lives_m_);
      if (!lives_.erase(l)) return;
    }
    release(*l);
    log(*l, l->done ? l->log_status : l->aborted ? "503 stopped" : l->log_status);
  }

  void log(Live& l, const std::string& status) {
    if (a_.quiet) return;
    std::lock_guard<std::mutex> lk(log_m_);
    std::lock_guard<std::mutex> g(l.m);
    if (!l.done) {
      const std::string after = l.tokens > 0 ? " after " + std::to_string(l.tokens) + " tokens" : "";
      std::fprintf(stderr, "r1 serve: %s %s%s\n", l.id.c_str(), status.c_str(), after.c_str());
      return;
    }
    const GenStats& st = l.result.stats;
    const double ttft = l.t_first == Clock::time_point{} ? 0 : std::chrono::duration<double>(l.t_first - l.t_arrive).count();
    std::fprintf(stderr,
                 "r1 serve: %s %s prompt %lld (cached %lld) completion %lld (reasoning %lld) ttft %.3fs %.1f tok/s %s\n",
                 l.id.c_str(), status.c_str(), (long long)st.prompt_tokens, (long long)(st.prompt_tokens - st.prefilled_tokens),
                 (long long)st.completion_tokens, (long long)st.think_tokens, ttft, st.decode_tps(), finish_name(l.result.finish));
  }

  ServeArgs& a_;
  Loaded& L_;
  const Tokenizer& tok_;
  ChatTemplate tmpl_;
  SamplerParams base_;
  std::shared_ptr<const DryBreakers> dry_;
  BatchScheduler sched_;
  int64_t ctx_;
  std::string name_;
  int64_t started_ = int64_t(std::time(nullptr));
  // admitted_: requests queued or running, until the scheduler is done with them (the 503
  // limit); lives_ holds them until their last byte is written (what the drain waits for)
  std::atomic<int64_t> ids_{0}, admitted_{0};
  std::atomic<bool> draining_{false}, hard_stop_{false}, failed_{false};
  std::mutex qm_;  // queue_, quit_, rng_
  std::condition_variable qcv_;
  std::deque<LivePtr> queue_;
  bool quit_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
  std::map<size_t, LivePtr> running_;  // the scheduler thread's own
  std::mutex lives_m_, log_m_;
  std::set<LivePtr> lives_;  // requests in flight (queued, running, or being written)
};

int serve(ServeArgs& a, bool concurrency_given) {
  Loaded L = load_for_run(a.model, /*with_session=*/false);
  ChatTemplate tmpl = L.rt.chat_template(a.tmpl);
  SamplerParams base = a.sampling.resolve(L.rt.defaults);
  a.max_concurrent = choose_slots(L.rt.model->cfg, L.ctx, L.kv, a.max_concurrent, concurrency_given, a.max_concurrent);
  std::unique_ptr<BatchSession> batch = make_batch(L, a.max_concurrent, L.ctx);
  if (a.model.verbose) std::fprintf(stderr, "%s\n", describe(L, a.model).c_str());
  Server s(a, L, *batch, std::move(tmpl), base);
  return s.serve();
}

R1_COMMAND("serve", "Serve the model over an OpenAI-compatible HTTP API", 5, [](CLI::App& sub) {
  auto a = std::make_shared<ServeArgs>();
  add_model_flags(sub, a->model);
  sub.add_option("--host", a->host, "Address to listen on (default 127.0.0.1: this machine only)");
  sub.add_option("--port", a->port, "Port (default 8080; 0: any free port, printed at start)")->check(CLI::Range(0, 65535));
  sub.add_option("--api-key", a->api_key, "Require \"Authorization: Bearer KEY\" on every request but /health");
  auto* mc = sub.add_option("--max-concurrent", a->max_concurrent,
                            "Requests decoded together in one batch (default 8; fewer if their KV caches do not fit "
                            "in half the free memory)")
                 ->check(CLI::Range(int64_t(1), int64_t(1024)));
  sub.add_option("--max-queue", a->max_queue, "Requests that may wait for a busy slot; beyond them a request gets 503 with Retry-After (default 64)")
      ->check(CLI::Range(int64_t(0), int64_t(100000)));
  sub.add_option("--max-body", a->max_body, "Largest request body in bytes (default 4 MiB; larger: 413)")
      ->check(CLI::Range(size_t(1024), size_t(1) << 30));
  sub.add_option("-n,--max-tokens", a->n, "Most tokens per request unless it says max_tokens (default 4096)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  sub.add_option("--shutdown-timeout", a->shutdown_timeout,
                 "Seconds SIGTERM waits for requests in flight before ending them (default 30)")
      ->check(CLI::Range(0, 3600));
  sub.add_option("--heartbeat-ms", a->heartbeat_ms,
                 "A response not ready after this long goes out chunked, a space every interval until it is: "
                 "proxies see a live connection, a client that left frees its slot (default 1000)")
      ->check(CLI::Range(1, 600000));
  sub.add_option("--name", a->name, "Model id in /v1/models and responses (default: the model file's name)");
  add_sampling_flags(sub, a->sampling);
  add_reasoning_flags(sub, a->reasoning);
  add_template_flag(sub, a->tmpl);
  sub.add_flag("-q,--quiet", a->quiet, "No line per request on stderr");
  sub.footer("Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health.\n"
             "The reasoning is in reasoning_content (message and delta), the answer in content; a request's\n"
             "sampling fields override the flags, \"think_budget\" overrides --think-budget.");
  return [a, mc]() { return serve(*a, mc->count() > 0); };
});

}  // namespace
