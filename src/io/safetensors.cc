// Saving and loading F32 tensors in the safetensors format (atomic writes, strict checks).
#include "fff/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "fff/io/atomic_file.h"

namespace fff {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O writes host floats directly and needs a little-endian machine");
static_assert(sizeof(float) == 4, "F32 tensors need a 4-byte float");

namespace {

constexpr uint64_t kMaxHeaderLength = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

std::string errno_text(int err) {
  return err ? std::string(": ") + std::strerror(err) : "";
}

// Reads a JSON value that must be a non-negative integer (as uint64). Returns false otherwise.
bool get_non_negative(const nlohmann::json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < 0) return false;
    out = static_cast<uint64_t>(x);
    return true;
  }
  return false;
}

struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& v,
                  uint64_t data_size) {
  const std::string who = "tensor '" + name + "'";
  if (!v.is_object()) fail(path, who + " entry is a JSON " + v.type_name() + ", not an object");
  for (const auto& [key, _] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail(path, who + " has unknown key '" + key + "'");
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!v.contains(key)) fail(path, who + " is missing \"" + key + "\"");
  }

  const auto& dtype = v["dtype"];
  if (!dtype.is_string()) fail(path, who + " has a dtype that is not a string");
  if (dtype.get_ref<const std::string&>() != "F32")
    fail(path,
         who + " has dtype '" + dtype.get_ref<const std::string&>() + "'; only F32 is supported");

  Entry e;
  e.name = name;
  const auto& shape = v["shape"];
  if (!shape.is_array()) fail(path, who + " has a shape that is not an array");
  for (const auto& d : shape) {
    uint64_t u = 0;
    if (!get_non_negative(d, u) || u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(path, who + " has a shape entry that is not a non-negative integer");
    e.shape.push_back(static_cast<int64_t>(u));
  }
  int64_t numel = 0;
  try {
    numel = shape_numel(e.shape);
  } catch (const Error& ex) {
    fail(path, who + ": " + ex.what());
  }

  const auto& offsets = v["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(path, who + " has data_offsets that are not an array of two integers");
  if (!get_non_negative(offsets[0], e.begin) || !get_non_negative(offsets[1], e.end))
    fail(path, who + " has data_offsets that are not non-negative integers");
  const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) fail(path, who + " has data_offsets " + range + " with begin > end");
  if (e.end > data_size)
    fail(path, who + " has data_offsets " + range + " beyond the data area of " +
                   std::to_string(data_size) + " bytes");
  const uint64_t bytes = e.end - e.begin;
  if (bytes % 4 != 0 || bytes / 4 != static_cast<uint64_t>(numel))
    fail(path, who + " has data_offsets " + range + " (" + std::to_string(bytes) +
                   " bytes) but shape " + shape_string(e.shape) + " needs " +
                   std::to_string(numel) + " F32 values");
  return e;
}

}  // namespace

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::function<void(const std::string&)>& check) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  header[kMetadataKey] = std::move(meta);

  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == kMetadataKey) fail(path, "tensor name '__metadata__' is reserved");
    if (!seen.insert(name).second) fail(path, "duplicate tensor name '" + name + "'");
    if (t == nullptr) fail(path, "tensor '" + name + "' is null");
    int64_t numel = 0;
    try {
      numel = shape_numel(t->shape);
    } catch (const Error& ex) {
      fail(path, "tensor '" + name + "': " + ex.what());
    }
    if (static_cast<uint64_t>(numel) != t->data.size())
      fail(path, "tensor '" + name + "' has shape " + shape_string(t->shape) + " but " +
                     std::to_string(t->data.size()) + " values");
    const uint64_t bytes = t->data.size() * sizeof(float);
    header[name] = {
        {"dtype", "F32"}, {"shape", t->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& ex) {
    // Tensor names and metadata must be valid UTF-8 to be stored as JSON strings.
    fail(path, std::string("cannot encode header: ") + ex.what());
  }
  // Pad with spaces so the data area starts at a multiple of 8 bytes.
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));

  write_file_atomically(
      path,
      [&](std::ostream& out) {
        out.write(reinterpret_cast<const char*>(len_bytes), 8);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        if (!out) fail(path, "writing the header failed" + errno_text(errno));
        for (const auto& [name, t] : tensors) {
          if (t->data.empty()) continue;
          out.write(reinterpret_cast<const char*>(t->data.data()),
                    static_cast<std::streamsize>(t->data.size() * sizeof(float)));
          if (!out) fail(path, "writing tensor '" + name + "' failed" + errno_text(errno));
        }
      },
      check);
}

namespace {

// The parsed JSON header of an open file, after checking the header length against the file's
// size and the limit; *header_length and *data_size receive the sizes of the two parts.
nlohmann::json read_header(const std::string& path, std::ifstream& in, uint64_t* header_length,
                           uint64_t* data_size) {
  if (!in) fail(path, "cannot open" + errno_text(errno));
  std::error_code ec;
  const uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot determine file size: " + ec.message());
  if (file_size < 8)
    fail(path,
         "file is " + std::to_string(file_size) + " bytes, too short for the 8-byte header length");

  unsigned char len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) fail(path, "cannot read header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  if (n > file_size - 8)
    fail(path,
         "header length " + std::to_string(n) + " exceeds file size " + std::to_string(file_size));
  if (n > kMaxHeaderLength)
    fail(path, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderLength) + " bytes");
  *header_length = n;
  *data_size = file_size - 8 - n;

  std::string text(static_cast<size_t>(n), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) fail(path, "cannot read header");

  // Parse, rejecting duplicate keys in any object (nlohmann would silently keep the last).
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(
        text, [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          using E = nlohmann::json::parse_event_t;
          if (event == E::object_start) {
            open_objects.emplace_back();
          } else if (event == E::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
          } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
            const auto& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
          }
          return true;
        });
  } catch (const nlohmann::json::exception& ex) {
    fail(path, std::string("header is not valid JSON: ") + ex.what());
  }
  if (!duplicate.empty()) fail(path, "header has duplicate key '" + duplicate + "'");
  if (!header.is_object())
    fail(path, std::string("header is a JSON ") + header.type_name() + ", not an object");

  return header;
}

// The "__metadata__" string map of a header.
std::map<std::string, std::string> header_metadata(const std::string& path,
                                                   const nlohmann::json& header) {
  std::map<std::string, std::string> metadata;
  auto it = header.find(kMetadataKey);
  if (it == header.end()) return metadata;
  if (!it->is_object()) fail(path, "__metadata__ is not an object");
  for (const auto& [mk, mv] : it->items()) {
    if (!mv.is_string()) fail(path, "__metadata__ value for '" + mk + "' is not a string");
    metadata[mk] = mv.get<std::string>();
  }
  return metadata;
}

}  // namespace

Metadata load_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0, data_size = 0;
  return header_metadata(path, read_header(path, in, &n, &data_size));
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0, data_size = 0;
  const nlohmann::json header = read_header(path, in, &n, &data_size);
  SafetensorsFile result;
  result.metadata = header_metadata(path, header);
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) continue;
    entries.push_back(parse_entry(path, key, value, data_size));
  }

  // The tensors must tile the data area exactly: sorted by offsets, each starts where the
  // previous one ended, and the last ends at the end of the file.
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    if (e->begin < pos) fail(path, "tensor '" + e->name + "' overlaps tensor '" + prev->name + "'");
    if (e->begin > pos)
      fail(path, "data area has a hole at bytes [" + std::to_string(pos) + ", " +
                     std::to_string(e->begin) + ") not covered by any tensor");
    pos = e->end;
    prev = e;
  }
  if (pos != data_size)
    fail(path, "data area has " + std::to_string(data_size - pos) +
                   " bytes at its end not covered by any tensor");

  const uint64_t data_start = 8 + n;
  for (const auto& e : entries) {
    Tensor t(e.shape);
    const uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      if (!in.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(bytes)))
        fail(path, "cannot read data of tensor '" + e.name + "' (file truncated?)");
    }
    result.tensors.emplace(e.name, std::move(t));
  }
  return result;
}

const std::string& metadata_string(const Metadata& meta, const std::string& key,
                                   const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) throw Error(path + ": metadata has no '" + key + "' entry");
  return it->second;
}

void check_metadata_format(const Metadata& meta, const std::string& path, const std::string& format,
                           const std::string& what, const std::string& hint) {
  const auto it = meta.find("format");
  if (it == meta.end() || it->second != format)
    throw Error(path + ": not " + what + " (format '" +
                (it == meta.end() ? std::string("missing") : it->second) + "')" + hint);
  if (metadata_string(meta, "format_version", path) != "1")
    throw Error(path + ": unsupported format_version '" + meta.at("format_version") + "'");
}

namespace {

// Parses the whole of key's value with parse(text, &used), or throws naming what it is not.
template <class Parse>
auto parse_metadata(const Metadata& meta, const std::string& key, const std::string& path,
                    const char* what, Parse parse) {
  const std::string& s = metadata_string(meta, key, path);
  try {
    size_t used = 0;
    const auto v = parse(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(path + ": metadata '" + key + "' is not " + what + ": '" + s + "'");
}

}  // namespace

int64_t metadata_int(const Metadata& meta, const std::string& key, const std::string& path) {
  return parse_metadata(
      meta, key, path, "an integer",
      [](const std::string& s, size_t* used) -> int64_t { return std::stoll(s, used); });
}

float metadata_float(const Metadata& meta, const std::string& key, const std::string& path) {
  return parse_metadata(meta, key, path, "a number",
                        [](const std::string& s, size_t* used) { return std::stof(s, used); });
}

double metadata_double(const Metadata& meta, const std::string& key, const std::string& path) {
  return parse_metadata(meta, key, path, "a number",
                        [](const std::string& s, size_t* used) { return std::stod(s, used); });
}

}  // namespace fff
