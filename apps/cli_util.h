// Small helpers shared by the fff command-line tool's commands: clocks, thread defaults and
// human-readable durations.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "fff/core/common.h"
#include "fff/layers/ff/ff_block.h"

namespace fff_cli {

using fff::now_seconds;

inline int default_threads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// "42s", "3m07s", "1h05m"; "?" when unknown.
inline std::string duration_string(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt("%.0fs", s);
  if (s < 3600)
    return std::to_string(static_cast<int>(s) / 60) + "m" + fmt("%02.0fs", std::fmod(s, 60));
  return std::to_string(static_cast<int>(s) / 3600) + "h" + fmt("%02.0fm", std::fmod(s / 60, 60));
}

// Checks that a --save path's directory exists and is writable, so that a long run does not
// fail only when it is done.
inline void check_save_path(const std::string& save) {
  if (save.empty()) return;
  const std::filesystem::path dir = std::filesystem::absolute(save).parent_path();
  // The error_code form: a directory the user may not look into is an error naming it, not an
  // uncaught filesystem_error.
  std::error_code ec;
  const bool is_dir = std::filesystem::is_directory(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    throw fff::Error("--save " + save + ": directory " + dir.string() + ": " + ec.message());
  if (!is_dir)
    throw fff::Error("--save " + save + ": directory " + dir.string() + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw fff::Error("--save " + save + ": directory " + dir.string() + " is not writable");
}

// A feedforward kind given on the command line (--model, --mixer): one spelling everywhere
// (ff, leaf-fff, neuron-fff); an old spelling is still accepted, with a note on stderr.
inline fff::FFKind parse_kind_flag(const char* flag, const std::string& value) {
  std::string note;
  const fff::FFKind kind = fff::parse_ff_kind(value, &note);
  if (!note.empty()) std::fprintf(stderr, "fff: note: %s %s\n", flag, note.c_str());
  return kind;
}

// Library errors name config fields and values ("TrainOptions.batch = 0: must be positive");
// the CLI says its flags instead ("--batch 0: must be positive"). Longer field names first, so
// that TrainOptions.batch does not match inside LmTrainOptions.batch.
inline std::string flag_names(std::string msg) {
  static const std::pair<const char*, const char*> kFieldFlags[] = {
      {"split_train_val: val_fraction", "--val-fraction"},
      {"LmTrainOptions.batch", "--batch"},
      {"LmTrainOptions.seq", "--seq"},
      {"LmTrainOptions.lr", "--lr"},
      {"TrainOptions.region_leak", "--region-leak"},
      {"TrainOptions.hardening", "--hardening"},
      {"TrainOptions.patience", "--patience"},
      {"TrainOptions.epochs", "--epochs"},
      {"TrainOptions.batch", "--batch"},
      {"OptimizerConfig.momentum", "--momentum"},
      {"OptimizerConfig.lr", "--lr"},
      {"FFConfig.leaf_width", "--leaf-width"},
      {"FFConfig.width", "--width"},
      {"FFConfig.depth", "--depth"},
      {"FFConfig.trees", "--trees"},
  };
  for (const auto& [field, flag] : kFieldFlags) {
    for (const std::string& from : {std::string(field) + " = ", std::string(field)}) {
      const std::string to =
          from.size() > std::string(field).size() ? std::string(flag) + " " : std::string(flag);
      for (size_t at = msg.find(from); at != std::string::npos; at = msg.find(from, at + to.size()))
        msg.replace(at, from.size(), to);
    }
  }
  return msg;
}

}  // namespace fff_cli
