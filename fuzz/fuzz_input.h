// Shared by the fuzz targets: the loaders read paths (and reading the file is part of what is
// fuzzed), so each input is written to a file of this process first; and the only failure a
// loader may report is an fff::Error. Anything else escaping (std::bad_alloc, a JSON library
// exception, std::out_of_range, ...) is a finding: the fuzzer reports it as a crash.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fff/core/common.h"

namespace fff_fuzz {

// A file of this process (in /dev/shm when there is one: memory, not disk), rewritten per input.
// `tag` tells apart the files of a target that needs several; `suffix` matters to readers that
// look at names (".gz").
inline std::string input_file(std::string_view data, const std::string& tag = "input",
                              const std::string& suffix = "") {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ?: "/tmp");
  const std::string path =
      std::string(dir) + "/fff-fuzz-" + std::to_string(getpid()) + "-" + tag + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size()) ||
      std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();  // not a finding of the target: the fuzzing machine cannot write its input
  }
  return path;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `load`; an fff::Error is the expected answer to a bad input.
template <class F>
void expect_only_fff_errors(F&& load) {
  try {
    load();
  } catch (const fff::Error&) {
  }
}

// Splits an input into two parts: the first byte pair (little-endian) gives the first part's
// length modulo the input's size; the rest is the second part.
inline std::pair<std::string_view, std::string_view> split_input(const uint8_t* data, size_t size) {
  if (size < 2) return {{}, as_text(data, size)};
  const std::string_view rest = as_text(data + 2, size - 2);
  const size_t n = (data[0] | (size_t{data[1]} << 8)) % (rest.size() + 1);
  return {rest.substr(0, n), rest.substr(n)};
}

}  // namespace fff_fuzz
