// `fff serve`'s request reading (apps/serve_request.h) on arbitrary bodies: the only failure
// allowed is an HttpError with a 4xx status; a body that is accepted gives at least one text,
// at most --max-inputs, each well-formed UTF-8 (JSON escapes included).
#include "fuzz_input.h"
#include "serve_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fff_cli::EmbeddingRequestLimits limits;
  limits.max_body_bytes = 1 << 16, limits.max_inputs = 8, limits.dimensions = 384;
  limits.model_name = "fuzz";
  try {
    const fff_cli::EmbeddingRequest r =
        fff_cli::parse_embedding_request(std::string(fff_fuzz::as_text(data, size)), limits);
    if (r.texts.empty() || static_cast<int64_t>(r.texts.size()) > limits.max_inputs)
      __builtin_trap();
    for (const std::string& t : r.texts)
      if (fff_cli::invalid_utf8_at(t) != std::string_view::npos) __builtin_trap();
  } catch (const fff_cli::HttpError& e) {
    if (e.status != 400 && e.status != 413) __builtin_trap();
  }
  return 0;
}
