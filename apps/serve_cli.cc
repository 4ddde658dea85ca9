// `fff serve`: an HTTP server (cpp-httplib) for sentence embeddings. Request handler threads
// parse and check a request, queue its texts on an fff::EmbeddingQueue (one worker thread that
// owns the encoder's Context and batches texts from concurrent requests) and wait for their rows.
#include "serve_cli.h"

#include "cli_util.h"
#include "fff/core/common.h"
#include "serve_request.h"

#ifdef FFF_HAVE_HTTPLIB

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>

#include "fff/models/bert.h"
#include "fff/models/sentence.h"
#include "fff/text/wordpiece.h"

namespace fff_cli {

namespace {

using json = nlohmann::json;

// --http-threads: each is a thread of the process that holds a connection; more than this many
// is a typo, not a server (100000 threads would not start).
constexpr int kMaxHttpThreads = 1024;

// The stop signals' pipe (see run_serve).
int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
  const unsigned char c = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t w = ::write(g_stop_pipe[1], &c, 1);
}

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  json j = {{"error", {{"message", e.message}, {"type", e.type}, {"code", e.status}}}};
  res.set_content(json_text(j), "application/json");
}

std::string base64(const void* data, size_t n) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) |
                       (i + 2 < n ? uint32_t{p[i + 2]} : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[v & 63] : '=';
  }
  return out;
}

struct Server {
  const ServeArgs& args;
  std::string name;
  const fff::BertModel& model;
  fff::EmbeddingQueue& queue;
  int64_t limit;  // tokens per input
  std::atomic<int64_t> served{0}, refused{0};

  void embeddings(const httplib::Request& req, httplib::Response& res) {
    try {
      EmbeddingRequest request = parse_embedding_request(
          req.body, {args.max_body_bytes, args.max_inputs, model.cfg.hidden, name});
      const bool b64 = request.base64;
      std::vector<std::string> texts = std::move(request.texts);
      std::future<fff::SentenceEmbeddings> f;
      try {
        f = queue.submit(std::move(texts));
      } catch (const fff::QueueFull& e) {
        ++refused;
        res.set_header("Retry-After", "1");
        throw HttpError{503, std::string("busy: ") + e.what(), "server_overloaded"};
      }
      fff::SentenceEmbeddings e;
      try {
        e = f.get();
      } catch (const std::exception& err) {
        throw HttpError{500, std::string("encoding failed: ") + err.what(), "server_error"};
      }
      json data = json::array();
      for (int64_t i = 0; i < e.rows; ++i) {
        const float* row = e.values.data() + i * e.dim;
        json item = {{"object", "embedding"}, {"index", i}};
        if (b64) {
          // float32 little-endian bytes, as the OpenAI API's base64 encoding.
          item["embedding"] = base64(row, static_cast<size_t>(e.dim) * sizeof(float));
        } else {
          json v = json::array();
          for (int64_t k = 0; k < e.dim; ++k) v.push_back(row[k]);
          item["embedding"] = std::move(v);
        }
        data.push_back(std::move(item));
      }
      const int64_t tokens = e.total_tokens();
      json out = {{"object", "list"},
                  {"data", std::move(data)},
                  {"model", name},
                  {"usage",
                   {{"prompt_tokens", tokens},
                    {"total_tokens", tokens},
                    {"truncated_inputs", e.truncated_count()},
                    {"max_tokens_per_input", limit}}}};
      res.set_content(json_text(out), "application/json");
      ++served;
    } catch (const HttpError& e) {
      send_error(res, e);
    }
  }

  void health(httplib::Response& res) const {
    json j = {{"status", "ok"},
              {"model", name},
              {"dimensions", model.cfg.hidden},
              {"max_tokens_per_input", limit},
              {"queued_texts", queue.queued()}};
    res.set_content(json_text(j), "application/json");
  }
};

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeArgs& a) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve sentence embeddings over HTTP: POST /v1/embeddings in the OpenAI API's shape, "
      "GET /health. Concurrent requests are batched into one encoder call. Stops on SIGTERM or "
      "SIGINT after answering the requests in flight (docs/embeddings.md)");
  cmd->add_option("MODEL", a.model, "fff-bert model file with its vocabulary (fff bert embed's)")
      ->required();
  cmd->add_option("--host", a.host, "Address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  cmd->add_option("--port", a.port, "TCP port (0: any free port; the startup line says which)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--model-name", a.model_name,
                  "Name in responses and /health (default: MODEL's file name without "
                  "extension). Requests' \"model\" is not checked against it");
  cmd->add_option("--threads", a.threads, "Encoder threads (default: every core)")
      ->check(thread_count(0));
  cmd->add_option("--http-threads", a.http_threads,
                  "Connection handler threads: requests served at once (each waits for its "
                  "batch while others join it)")
      ->check(CLI::Range(1, kMaxHttpThreads))
      ->capture_default_str();
  cmd->add_option("--max-batch", a.max_batch,
                  "Texts per encoder call, at most: a batch closes when this many are queued")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--batch-wait-ms", a.batch_wait_ms,
                  "...or when the oldest queued text has waited this long (milliseconds) for "
                  "others to join it")
      ->check(non_negative())
      ->check(finite_number())
      ->capture_default_str();
  cmd->add_option("--max-queue", a.max_queue,
                  "Texts waiting for the encoder, at most; a request that does not fit is "
                  "answered 503 with Retry-After")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", a.max_body_bytes,
                  "Request body size limit in bytes (larger: 413)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--max-inputs", a.max_inputs, "Texts per request, at most (more: 400)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--max-len", a.max_len,
                  "Tokens per text, [CLS] and [SEP] included; longer texts are truncated, as "
                  "fff bert embed does, and counted in usage.truncated_inputs (default: the "
                  "file's sentence.max_seq_length, else the model's positions)")
      ->check(max_len_value());
  return cmd;
}

int run_serve(const ServeArgs& a) {
  if (a.max_inputs > a.max_queue)
    throw fff::Error("--max-inputs " + std::to_string(a.max_inputs) + " is more than --max-queue " +
                     std::to_string(a.max_queue) + ": such a request could never be queued");
  if (a.max_len == 1) throw fff::Error("--max-len must be at least 2 (room for [CLS] and [SEP])");
  // SIGTERM and SIGINT stop the server: the handler only writes the signal's number to a pipe,
  // which a thread of the server reads (a handler may do little else; and blocking the signals
  // instead would not do, since threads made before this point, such as OpenBLAS's, would still
  // take them). SA_RESETHAND: a second signal ends the process at once. A write to a closed
  // connection must not end it.
  if (::pipe(g_stop_pipe) != 0) throw fff::Error("fff serve: pipe() failed");
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const fff::BertModel model = fff::load_bert(a.model);
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(model, a.model);
  fff::EmbeddingQueueOptions qo;
  qo.max_batch = a.max_batch;
  qo.max_wait_s = a.batch_wait_ms / 1000.0;
  qo.max_queue = a.max_queue;
  qo.normalize = model.normalize_embeddings;
  qo.max_len = a.max_len;
  const int threads = a.threads > 0 ? a.threads : default_threads();
  fff::EmbeddingQueue queue(model, tok, threads, qo);
  Server s{a, a.model_name.empty() ? std::filesystem::path(a.model).stem().string() : a.model_name,
           model, queue, fff::bert_sentence_limit(model, a.max_len)};

  httplib::Server http;
  const int http_threads = a.http_threads;
  http.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  http.set_payload_max_length(static_cast<size_t>(a.max_body_bytes));
  // An idle kept-alive connection holds its handler thread this long, and delays shutdown by as
  // much: short.
  http.set_keep_alive_timeout(1);
  http.Post("/v1/embeddings",
            [&s](const httplib::Request& req, httplib::Response& res) { s.embeddings(req, res); });
  http.Get("/health", [&s](const httplib::Request&, httplib::Response& res) { s.health(res); });
  const auto not_allowed = [](const char* allow) {
    return [allow](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allow);
      send_error(res, {405, req.method + " " + req.path + ": method not allowed (use " +
                                std::string(allow) + ")"});
    };
  };
  for (const char* path : {"/v1/embeddings", "/health"}) {
    const char* allow = std::strcmp(path, "/health") == 0 ? "GET" : "POST";
    if (std::strcmp(allow, "GET") != 0) http.Get(path, not_allowed(allow));
    if (std::strcmp(allow, "POST") != 0) http.Post(path, not_allowed(allow));
    http.Put(path, not_allowed(allow));
    http.Patch(path, not_allowed(allow));
    http.Delete(path, not_allowed(allow));
  }
  // Whatever httplib answers by itself (404 unknown path, 413 body too large, 400 unparsable
  // request) gets a JSON error body too; the handlers' own errors keep theirs.
  http.set_error_handler([&a](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg;
    if (res.status == 404)
      msg = "no such path: " + req.path + " (POST /v1/embeddings, GET /health)";
    else if (res.status == 413)
      msg = "the body is larger than --max-body-bytes " + std::to_string(a.max_body_bytes);
    else
      msg = "the request could not be served (HTTP " + std::to_string(res.status) + ")";
    send_error(res, {res.status, msg});
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, {500, "internal error: " + what, "server_error"});
      });

  int port = a.port;
  if (port == 0) {
    port = http.bind_to_any_port(a.host);
    if (port < 0)
      throw fff::Error("--host " + a.host +
                       ": cannot listen there on any port (not an address of this machine?)");
  } else if (!http.bind_to_port(a.host, port)) {
    throw fff::Error("--host " + a.host + " --port " + std::to_string(port) +
                     ": cannot listen there (in use, or not an address of this machine?)");
  }
  std::fprintf(stderr,
               "fff serve: listening on http://%s:%d (model %s: %s, %lld dimensions, at most %lld "
               "tokens per text, %snormalised; %d encoder threads, batches of up to %lld texts "
               "or %g ms)\n",
               a.host.c_str(), port, s.name.c_str(), model.cfg.describe().c_str(),
               static_cast<long long>(model.cfg.hidden), static_cast<long long>(s.limit),
               model.normalize_embeddings ? "" : "not ", threads,
               static_cast<long long>(a.max_batch), a.batch_wait_ms);
  std::fflush(stderr);

  std::atomic<int> stop_signal{0};
  std::atomic<bool> listening_done{false};
  std::thread stopper([&] {
    unsigned char sig = 0;
    while (::read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    stop_signal = sig;
    queue.drain();  // requests in flight need not wait for their batch to fill
    // A stop() before the accept loop has started is lost (httplib ignores it): repeated until
    // the loop has ended.
    while (!listening_done) {
      http.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  // listen_after_bind returns once stopped, after its handler pool has answered every request it
  // had taken (ThreadPool::shutdown drains its jobs).
  const bool ok = http.listen_after_bind();
  listening_done = true;
  if (stop_signal == 0) {  // listening failed: release the stopper
    const unsigned char none = 0;
    [[maybe_unused]] const ssize_t w = ::write(g_stop_pipe[1], &none, 1);
  }
  stopper.join();
  queue.stop();
  if (!ok && stop_signal == 0) throw fff::Error("the server stopped unexpectedly");
  std::fprintf(stderr, "fff serve: stopped by %s after %lld requests (%lld refused as busy)\n",
               strsignal(stop_signal.load()), static_cast<long long>(s.served.load()),
               static_cast<long long>(s.refused.load()));
  return 0;
}

}  // namespace fff_cli

#else  // no cpp-httplib at configure time

namespace fff_cli {

CLI::App* add_serve_command(CLI::App& app, ServeArgs& a) {
  auto* cmd = app.add_subcommand(
      "serve", "Serve sentence embeddings over HTTP (not in this build: it needs cpp-httplib)");
  cmd->add_option("MODEL", a.model, "fff-bert model file");
  cmd->allow_extras();
  return cmd;
}

int run_serve(const ServeArgs&) {
  throw fff::Error(
      "this fff was built without cpp-httplib, so fff serve is not available (Debian: apt-get "
      "install libcpp-httplib-dev, then configure and build again)");
}

}  // namespace fff_cli

#endif
