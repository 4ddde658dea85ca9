// `fff serve`'s reading of a POST /v1/embeddings body (the OpenAI embeddings API's shape), apart
// from the server so that it is tested and fuzzed without one (fuzz/fuzz_serve_request.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fff_cli {

// An error the client caused (4xx) or the server's state (5xx), with its HTTP status.
struct HttpError {
  int status;
  std::string message, type = "invalid_request_error";
};

// The offset of the first byte that is not part of well-formed UTF-8 (no overlong forms,
// surrogates or code points past U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s);

struct EmbeddingRequestLimits {
  int64_t max_body_bytes = 1 << 20;  // --max-body-bytes
  int64_t max_inputs = 256;          // --max-inputs
  int64_t dimensions = 0;            // the model's: a request may only ask for these
  std::string model_name;            // named in the error about "model"
};

struct EmbeddingRequest {
  std::vector<std::string> texts;
  bool base64 = false;  // "encoding_format": "base64"
};

// The texts of a request body, checked; throws HttpError (400 or 413) saying what is wrong.
EmbeddingRequest parse_embedding_request(const std::string& body,
                                         const EmbeddingRequestLimits& limits);

}  // namespace fff_cli
