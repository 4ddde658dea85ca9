// `fff serve`'s request reading (serve_request.h).
#include "serve_request.h"

#include <nlohmann/json.hpp>

namespace fff_cli {

using json = nlohmann::json;

// The offset of the first byte that is not part of well-formed UTF-8 (no overlong forms,
// surrogates or code points past U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + n >= s.size()) return i;  // cut short
    for (int k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

EmbeddingRequest parse_embedding_request(const std::string& body,
                                         const EmbeddingRequestLimits& limits) {
  if (static_cast<int64_t>(body.size()) > limits.max_body_bytes)
    throw HttpError{413, "the body has " + std::to_string(body.size()) +
                             " bytes, more than --max-body-bytes " +
                             std::to_string(limits.max_body_bytes)};
  if (const size_t at = invalid_utf8_at(body); at != std::string_view::npos)
    throw HttpError{400, "the body is not valid UTF-8 (byte " + std::to_string(at) + ")"};
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number beyond double's range (1e400).
    throw HttpError{400, std::string("invalid JSON: ") + e.what()};
  }
  if (!j.is_object())
    throw HttpError{
        400, "the body must be a JSON object with an \"input\", not " + std::string(j.type_name())};
  if (j.contains("model") && !j["model"].is_string())
    throw HttpError{400, "\"model\" must be a string (it is not checked: this server serves " +
                             limits.model_name + ")"};
  EmbeddingRequest r;
  if (j.contains("encoding_format")) {
    const json& f = j["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64"))
      throw HttpError{400, "\"encoding_format\" must be \"float\" or \"base64\", not " + f.dump()};
    r.base64 = f == "base64";
  }
  if (j.contains("dimensions") && !j["dimensions"].is_null() &&
      j["dimensions"] != json(limits.dimensions))
    throw HttpError{400, "\"dimensions\" must be " + std::to_string(limits.dimensions) +
                             " (this model's) if given, not " + j["dimensions"].dump()};
  if (!j.contains("input")) throw HttpError{400, "the body has no \"input\""};
  const json& in = j["input"];
  if (in.is_string()) {
    r.texts.push_back(in.get<std::string>());
  } else if (in.is_array()) {
    if (in.empty()) throw HttpError{400, "\"input\" is an empty list: send at least one text"};
    if (static_cast<int64_t>(in.size()) > limits.max_inputs)
      throw HttpError{400, "\"input\" has " + std::to_string(in.size()) +
                               " texts, more than --max-inputs " +
                               std::to_string(limits.max_inputs)};
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].is_string())
        throw HttpError{400, "\"input\"[" + std::to_string(i) + "] is " +
                                 std::string(in[i].type_name()) +
                                 ", not a string (token ids are not accepted: send text)"};
      r.texts.push_back(in[i].get<std::string>());
    }
  } else {
    throw HttpError{
        400, "\"input\" must be a string or a list of strings, not " + std::string(in.type_name())};
  }
  return r;
}

}  // namespace fff_cli
