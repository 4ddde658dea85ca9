// `fff serve`: sentence embeddings over HTTP (the OpenAI embeddings API shape) from an fff-bert
// model file, with dynamic batching of concurrent requests (docs/embeddings.md).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace fff_cli {

struct ServeArgs {
  std::string model, host = "127.0.0.1", model_name;
  int port = 8080;
  int threads = 0;        // 0: every core
  int http_threads = 64;  // request handlers (mostly waiting for the batcher)
  int64_t max_batch = 32, max_queue = 1024, max_inputs = 256, max_len = 0;
  double batch_wait_ms = 2;
  int64_t max_body_bytes = 1 << 20;
};

CLI::App* add_serve_command(CLI::App& app, ServeArgs& a);
// Serves until SIGTERM or SIGINT, then finishes the requests in flight and returns 0. Throws
// fff::Error on bad flags, an unreadable model or an address it cannot listen on.
int run_serve(const ServeArgs& a);

}  // namespace fff_cli
