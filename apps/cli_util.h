// Small helpers shared by the fff command-line tool's commands: clocks, thread defaults and
// human-readable durations.
#pragma once

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/io/data.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/models/classifier.h"

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

// The JSON text of j for stdout or an HTTP response: strings that are not UTF-8 (a --text of raw
// bytes, a file name in Latin-1) get U+FFFD in their bad bytes' place instead of making dump()
// throw (nlohmann's default), which ended such commands in an internal error.
inline std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Positive and non-negative numbers. CLI11's PositiveNumber and NonNegativeNumber let NaN through
// and say "Value -1 not in range 0.000000 to 179769313486231570814527423731704356798070567525844
// ..."; these say what is wrong.
inline CLI::Validator sign_check(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& s) -> std::string {
        double x = 0;
        if (!CLI::detail::lexical_cast(s, x)) return "Value " + s + " is not a number";
        if (zero_ok ? !(x >= 0) : !(x > 0))
          return "Value " + s + (zero_ok ? " must be non-negative" : " must be positive");
        return "";
      },
      zero_ok ? "NONNEGATIVE" : "POSITIVE");
}
inline const CLI::Validator& positive() {
  static const CLI::Validator v = sign_check(false);
  return v;
}
inline const CLI::Validator& non_negative() {
  static const CLI::Validator v = sign_check(true);
  return v;
}

// CLI11's number validators let NaN through (every comparison with it is false), and
// PositiveNumber and NonNegativeNumber let inf through: every floating-point flag adds this one.
inline const CLI::Validator& finite_number() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        double x = 0;
        if (!CLI::detail::lexical_cast(s, x)) return "Value " + s + " is not a number";
        if (!std::isfinite(x)) return "Value " + s + " is not a finite number";
        return "";
      },
      "FINITE");
  return v;
}

// Every --threads flag: a thread count the library's Context accepts, checked when the command
// line is parsed (so that the error names the flag, before any file is read).
inline CLI::Range thread_count(int min = 1) {
  return CLI::Range(min, fff::Context::kMaxThreads);
}

// --max-len: 0 (the default: the model's limit) or room for [CLS] and [SEP] at least.
inline const CLI::Validator& max_len_value() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        int64_t n = 0;
        if (!CLI::detail::lexical_cast(s, n)) return "Value " + s + " is not an integer";
        if (n != 0 && n < 2)
          return "Value " + s + " must be 0 (the model's limit) or at least 2 ([CLS] and [SEP])";
        return "";
      },
      "0 or >= 2");
  return v;
}

// This machine's physical memory in bytes (0 if unknown).
inline double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

// Refuses, before anything is allocated, a run whose flags ask for more memory than the machine
// has (an estimate in bytes, computed in double so that absurd flags cannot overflow it): such a
// run would otherwise end in std::bad_alloc, or page the machine out. `what` names the flags.
inline void check_fits_in_memory(const std::string& what, double bytes) {
  const double mem = physical_memory_bytes();
  if (mem > 0 && !(bytes <= mem))
    throw fff::Error(what + " needs about " + fmt("%.3g", bytes / 1e9) +
                     " GB of memory, more than this machine's " + fmt("%.3g", mem / 1e9) + " GB");
}

// A feedforward block's training memory in bytes, estimated in double (absurd flags cannot
// overflow it): its parameters with their gradients and two optimizer moments, and `batch` rows
// of activations at its training width.
inline double ff_training_bytes(const fff::FFConfig& c, double batch) {
  double width = 0, nodes = 0;
  switch (c.kind) {
    case fff::FFKind::ff:
      width = static_cast<double>(c.width);
      break;
    case fff::FFKind::leaf_fff:
      nodes = std::ldexp(1.0, static_cast<int>(std::min<int64_t>(c.depth, 1024))) - 1;
      width = static_cast<double>(c.leaf_width) * (nodes + 1);
      break;
    case fff::FFKind::neuron_fff:
      width = static_cast<double>(c.trees) *
              (std::ldexp(1.0, static_cast<int>(std::min<int64_t>(c.depth, 1024)) + 1) - 1);
      break;
  }
  const double in = static_cast<double>(c.in), out = static_cast<double>(c.out);
  const double params = width * (in + out + 1) + nodes * (in + 1) + out;
  return 4.0 * (4.0 * params + 4.0 * batch * (width + nodes + out));
}

// Checks that an output path (--save, or the `flag` given) is not a directory and that its
// directory exists and is writable, so that a long run does not fail only when it is done.
inline void check_save_path(const std::string& save, const std::string& flag = "--save") {
  if (save.empty()) return;
  std::error_code ec;
  if (std::filesystem::is_directory(save, ec))
    throw fff::Error(flag + " " + save + ": is a directory, expected a file name");
  const std::filesystem::path dir = std::filesystem::absolute(save).parent_path();
  // The error_code form: a directory the user may not look into is an error naming it, not an
  // uncaught filesystem_error.
  const bool is_dir = std::filesystem::is_directory(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    throw fff::Error(flag + " " + save + ": directory " + dir.string() + ": " + ec.message());
  if (!is_dir)
    throw fff::Error(flag + " " + save + ": directory " + dir.string() + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw fff::Error(flag + " " + save + ": directory " + dir.string() + " is not writable");
}

// A classifier's configuration as the JSON output of train, eval and routes gives it.
inline nlohmann::json config_json(const fff::ModelConfig& c) {
  nlohmann::json j;
  j["model"] = fff::model_kind_name(c.kind);
  j["activation"] = fff::activation_name(c.act);
  j["in"] = c.in;
  j["classes"] = c.out;
  j["width"] = c.training_width();
  j["inference_width"] = c.inference_width();
  j["leaf_width"] = c.kind == fff::ModelKind::leaf_fff ? nlohmann::json(c.leaf_width) : nullptr;
  j["depth"] = c.kind == fff::ModelKind::ff ? nullptr : nlohmann::json(c.depth);
  j["trees"] = c.kind == fff::ModelKind::neuron_fff ? nlohmann::json(c.trees) : nullptr;
  return j;
}

// The data set `data` (a --data value) for evaluating the classifier loaded from model_path
// (fff eval, fff routes): its features checked against the model's (the error names --data and
// the model file), the test split cut to its first `limit` rows (0: all), and both splits
// standardised with the model's stored input normalisation. Without keep_train the training
// split is dropped (left empty) instead of standardised for nothing.
inline fff::TrainTest load_data_for_model(const std::string& data, int64_t limit,
                                          const std::string& model_path,
                                          const fff::ModelConfig& cfg, bool keep_train = true) {
  fff::TrainTest d = fff::load_dataset(data);
  if (!keep_train) d.train = fff::Dataset{};
  if (d.test.features() != cfg.in)
    throw fff::Error("--data " + data + " has " + std::to_string(d.test.features()) +
                     " features per row but " + model_path + " expects " + std::to_string(cfg.in));
  if (limit > 0) d.test = fff::take_rows(d.test, limit);
  fff::apply_standardization(d.train.x, cfg.input_norm);
  fff::apply_standardization(d.test.x, cfg.input_norm);
  return d;
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
      {"LmTrainOptions.hardening", "--hardening"},
      {"LmTrainOptions.harden_after", "--harden-after"},
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
