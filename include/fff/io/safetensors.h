// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header (dtype, shape, data_offsets per tensor and a "__metadata__" string map), then raw data.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fff/core/common.h"

namespace fff {

// Writes F32 tensors in the order given, with `metadata` as the "__metadata__" map. The file is
// written to a temporary name in the same directory, flushed, then renamed over `path`, so a
// crash never leaves a half-written file. Throws fff::Error naming the path on failure.
// check, if given, is called with the complete temporary file's name before the rename (see
// write_file_atomically): a file it rejects never replaces `path`.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::function<void(const std::string&)>& check = {});

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;
};

// Loads and validates a file: size at least 8, header length within the file and at most
// 100 MB, header valid JSON object, every entry with dtype "F32", a shape of non-negative ints,
// data_offsets [begin, end] with begin <= end inside the data area and end - begin == 4 * numel,
// no two tensors overlapping, no gaps in the data area, metadata values strings. Any violation
// throws fff::Error whose message starts with the path and says what is wrong.
SafetensorsFile load_safetensors(const std::string& path);

// Only the "__metadata__" map, checked as load_safetensors checks it, without reading the
// tensors (to tell what kind of file it is).
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

// Typed reads of a file's "__metadata__" entries. A missing key or an unparsable value throws
// fff::Error naming the path and the key.
using Metadata = std::map<std::string, std::string>;
const std::string& metadata_string(const Metadata& meta, const std::string& key,
                                   const std::string& path);
int64_t metadata_int(const Metadata& meta, const std::string& key, const std::string& path);
float metadata_float(const Metadata& meta, const std::string& key, const std::string& path);
double metadata_double(const Metadata& meta, const std::string& key, const std::string& path);

// Checks that a file is one of ours of the given kind: metadata "format" equals `format` and
// "format_version" is "1". Otherwise throws "PATH: not WHAT (format '...')" (with `hint` after
// it, if any) or "PATH: unsupported format_version '...'".
void check_metadata_format(const Metadata& meta, const std::string& path, const std::string& format,
                           const std::string& what, const std::string& hint = "");

}  // namespace fff
