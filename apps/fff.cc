// The fff command-line tool: train, evaluate and inspect FF / leaf FFF / neuron FFF classifiers.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <thread>

#include "bert_cli.h"
#include "cli_util.h"
#include "fff/core/context.h"
#include "fff/cpu/scan.h"
#include "fff/cpu/simd.h"
#include "fff/io/data.h"
#include "fff/io/safetensors.h"
#include "fff/models/bert.h"
#include "fff/models/classifier.h"
#include "fff/training/lm_train.h"
#include "fff/training/train.h"
#include "fff/version.h"
#include "harness/cmm_bench.h"
#include "harness/inference_bench.h"
#include "harness/timing.h"
#include "lm_cli.h"
#include "routes_cli.h"
#include "serve_cli.h"

using fff_cli::config_json;
using fff_cli::default_threads;
using fff_cli::duration_string;
using fff_cli::fmt;
using fff_cli::json_text;
using fff_cli::now_seconds;
using nlohmann::json;

namespace {

struct TrainArgs {
  std::string data = "fashion-mnist";
  std::string model = "leaf-fff";
  std::string recipe = "best";
  int64_t width = 128, leaf_width = 8, depth = -1, trees = 1;
  std::string activation;
  int64_t epochs = 100, batch = 256, patience = 10, limit = 0;
  std::string optimizer = "sgd";
  float lr = 0.2f, momentum = 0.0f, hardening = 3.0f, region_leak = 0.0f, balance = 0.0f;
  float weight_decay = 0.0f, input_dropout = 0.0f, ema = 0.0f;
  std::string teacher;  // a model file to distil from
  float distill = 0.5f, temperature = 1.0f, label_smoothing = 0.0f;
  std::string lr_schedule = "constant";
  int64_t hardened_epochs = 0;
  bool hardened = false, no_output_bias = false, json = false, no_compare = false;
  bool no_standardize = false;
  double val_fraction = 0.1;
  uint64_t seed = 0;
  int threads = 0;
  int bench_repeats = 7;
  std::string save;
};

struct BenchArgs {
  int64_t dim = 768, trees = 1, depth = 11, batch = 1, dense_width = 3072, layers = 1;
  int threads = 1;
  double min_seconds = 0.3;
  bool half = false;
  bool json = false;
};

struct InfoArgs {
  std::string path;
  bool json = false;
};

struct EvalArgs {
  std::string model_path, data = "fashion-mnist";
  int threads = 0, bench_repeats = 7;
  int64_t limit = 0;
  bool json = false, no_compare = false;
};

// A one-line progress bar on stderr when it is a terminal; nothing otherwise (epoch lines are
// printed in both cases).
class ProgressBar {
 public:
  explicit ProgressBar(int64_t epochs) : epochs_(epochs), tty_(isatty(STDERR_FILENO)) {}
  void batch(int64_t epoch, int64_t b, int64_t batches) {
    if (!tty_) return;
    const double t = now_seconds();
    if (b == 1) epoch_start_ = t;
    if (b != batches && t - last_draw_ < 0.1) return;
    last_draw_ = t;
    const double frac = static_cast<double>(b) / batches;
    const int filled = static_cast<int>(frac * 30);
    const double eta = (t - epoch_start_) / frac * (1 - frac);
    std::fprintf(stderr, "\r  epoch %lld/%lld [%s%s] %3.0f%%  ETA %s (epoch)   ",
                 static_cast<long long>(epoch), static_cast<long long>(epochs_),
                 std::string(filled, '#').c_str(), std::string(30 - filled, '.').c_str(),
                 100 * frac, duration_string(eta).c_str());
    std::fflush(stderr);
  }
  void epoch_done(const fff::EpochReport& r, double elapsed_total) {
    if (tty_) std::fprintf(stderr, "\r%90s\r", "");
    const double left = elapsed_total / r.epoch * (epochs_ - r.epoch);
    std::fprintf(stderr,
                 "epoch %3lld/%lld%s  loss %.4f  entropy %.4f  train %.2f%%  val %.2f%%  lr %.3g  "
                 "%.2fs (+%.2fs eval)  at most %s left%s\n",
                 static_cast<long long>(r.epoch), static_cast<long long>(epochs_),
                 r.hardened ? " hard" : "", r.loss, r.entropy, 100 * r.train_accuracy,
                 100 * r.val_accuracy, r.lr, r.train_seconds, r.eval_seconds,
                 duration_string(left).c_str(), r.best ? "  *best" : "");
    std::fflush(stderr);
  }

 private:
  int64_t epochs_;
  bool tty_;
  double epoch_start_ = 0, last_draw_ = 0;
};

fff::ModelConfig model_config_from(const TrainArgs& a, const fff::Dataset& train) {
  fff::ModelConfig c;
  c.kind = fff::parse_model_kind(a.model);
  c.in = train.features();
  c.out = std::max(train.num_classes, 2);
  c.act = fff::parse_activation(a.activation.empty()
                                    ? (c.kind == fff::ModelKind::neuron_fff ? "gelu" : "relu")
                                    : a.activation);
  c.width = a.width;
  c.leaf_width = a.leaf_width;
  c.trees = a.trees;
  c.output_bias =
      c.kind != fff::ModelKind::neuron_fff || !a.no_output_bias;  // ignored by the others (warned)
  if (c.kind == fff::ModelKind::leaf_fff) {
    c.depth = a.depth;  // resolved with the width and leaf width by check_train_flags
  } else if (c.kind == fff::ModelKind::neuron_fff) {
    c.depth = a.depth >= 0 ? a.depth : 4;
  }
  return c;
}

json usage_json(const fff::ModelConfig& c, const fff::RouteUsage& u, json& out) {
  if (c.kind == fff::ModelKind::ff) {
    out["leaves_used"] = nullptr;
    out["leaf_count"] = nullptr;
  } else {
    out["leaves_used"] = u.used;
    out["leaf_count"] = u.routes;
    out["leaf_rows"] = u.counts;
  }
  if (c.kind == fff::ModelKind::neuron_fff) out["nodes_used"] = u.nodes_used;
  out["mean_entropy"] = u.mean_entropy;
  return out;
}

void print_usage(const fff::ModelConfig& c, const fff::RouteUsage& u) {
  if (c.kind == fff::ModelKind::ff) return;
  const char* what = c.kind == fff::ModelKind::leaf_fff ? "leaves" : "tree leaves";
  std::printf("%s reached by the test set: %lld of %lld", what, static_cast<long long>(u.used),
              static_cast<long long>(u.routes));
  if (c.kind == fff::ModelKind::neuron_fff)
    std::printf(" (%lld of %lld nodes)", static_cast<long long>(u.nodes_used),
                static_cast<long long>(c.training_width()));
  std::printf("; mean node entropy %.4f\n", u.mean_entropy);
}

// The deepest leaf FFF the library builds (ModelConfig::validate).
constexpr int64_t kMaxLeafDepth = 20;

// A leaf FFF's shape is width = leaf width x 2^depth: any consistent combination of --width,
// --leaf-width and --depth is accepted (--leaf-width has a default; with --depth and --width alone
// the leaf width follows from them); a contradiction names the flags and why. Leaves a.width,
// a.leaf_width and a.depth consistent.
void resolve_leaf_shape(TrainArgs& a, const CLI::App& cmd) {
  const bool width = cmd.count("--width") > 0, leaf = cmd.count("--leaf-width") > 0;
  if (cmd.count("--depth") > 0) {
    if (a.depth > kMaxLeafDepth)
      throw fff::Error("--depth " + std::to_string(a.depth) + ": a leaf FFF is at most " +
                       std::to_string(kMaxLeafDepth) + " deep");
    const int64_t leaves = int64_t{1} << a.depth;
    if (width && !leaf) {
      if (a.width % leaves != 0)
        throw fff::Error("--width " + std::to_string(a.width) + " is not a multiple of 2^--depth " +
                         std::to_string(a.depth) + " = " + std::to_string(leaves) +
                         ", so no whole --leaf-width gives it");
      a.leaf_width = a.width / leaves;
      return;
    }
    if (a.leaf_width > std::numeric_limits<int64_t>::max() / leaves)
      throw fff::Error("--leaf-width " + std::to_string(a.leaf_width) + " x 2^--depth " +
                       std::to_string(a.depth) + " is too wide");
    const int64_t w = a.leaf_width * leaves;
    if (width && a.width != w)
      throw fff::Error("--width " + std::to_string(a.width) + " is not --leaf-width " +
                       std::to_string(a.leaf_width) + " x 2^--depth " + std::to_string(a.depth) +
                       " = " + std::to_string(w));
    a.width = w;
    return;
  }
  // No --depth: d = log2(width / leaf width), the paper's grid.
  const int64_t ratio = a.width / a.leaf_width;
  if (a.width % a.leaf_width != 0 || (ratio & (ratio - 1)) != 0)
    throw fff::Error("--width " + std::to_string(a.width) + " is not --leaf-width " +
                     std::to_string(a.leaf_width) + (leaf ? "" : " (the default)") +
                     " x a power of two; give --depth, or a --width of " +
                     std::to_string(a.leaf_width) + " x 2^depth");
  a.depth = 0;
  while ((int64_t{1} << a.depth) < ratio) ++a.depth;
  if (a.depth > kMaxLeafDepth)
    throw fff::Error("--width " + std::to_string(a.width) + " / --leaf-width " +
                     std::to_string(a.leaf_width) + " = 2^" + std::to_string(a.depth) +
                     " leaves: a leaf FFF is at most " + std::to_string(kMaxLeafDepth) + " deep");
}

// Training recipes. The defaults of TrainArgs are the FFF paper's recipe (`--recipe paper`:
// SGD, lr 0.2, batch 256, h = 3, early stop after 10 epochs without a better training
// accuracy); `--recipe best` replaces those of its settings that were not given as flags with the
// measured best ones (docs/training.md, "Recipes").
void apply_recipe(TrainArgs& a, fff::ModelKind kind,
                  const std::function<bool(const char*)>& given) {
  if (a.recipe == "paper") return;
  auto set = [&](const char* flag, auto& field, auto value) {
    if (!given(flag)) field = value;
  };
  set("--optimizer", a.optimizer, std::string("adam"));
  set("--lr", a.lr, 0.002f);
  set("--lr-schedule", a.lr_schedule, std::string("cosine"));
  set("--epochs", a.epochs, int64_t{60});
  // The cosine schedule is meant to run to its end: no early stop unless asked for.
  set("--patience", a.patience, given("--epochs") ? a.epochs : int64_t{60});
  // Decay is not supported on the row-sparse parameters of a neuron FFF.
  // Chosen by validation accuracy at w = 128 on Fashion-MNIST: 0.3 for the dense FF (90.5 against
  // 90.2 with 0.1), 0.1 for the leaf FFF (88.2 against 88.1 with 0.3).
  if (kind == fff::ModelKind::ff) set("--weight-decay", a.weight_decay, 0.3f);
  if (kind == fff::ModelKind::leaf_fff) set("--weight-decay", a.weight_decay, 0.1f);
  if (kind == fff::ModelKind::leaf_fff) {
    set("--hardening", a.hardening, 0.3f);
    // Chosen by the validation accuracy over the Table 1 grid (docs/training.md): balancing
    // helps leaves of 4+ neurons and small trees of 2-neuron leaves, and costs accuracy where
    // it forces rows onto many leaves of one or two neurons.
    const bool balance = a.leaf_width >= 4 || (a.leaf_width >= 2 && a.depth <= 4);
    set("--balance", a.balance, balance ? 0.3f : 0.0f);
    // 100 after 60 soft epochs: the validation accuracy of w = 128, l = 8 rose with the hardened
    // phase's length up to 100 and was flat beyond (docs/training.md, "A longer hardened phase").
    set("--hardened-epochs", a.hardened_epochs, a.epochs * 5 / 3);
    // Over the Table 1 grid, input dropout 0.2 raised the validation accuracy of 12 of the 16
    // shapes (the dense FF's not at all, so it keeps none).
    set("--input-dropout", a.input_dropout, 0.2f);
  }
}

// Rejects shape flags that the chosen model does not have (they would be silently ignored),
// resolves a leaf FFF's shape, and warns about training flags that do not apply; runs before any
// data is loaded.
void check_train_flags(TrainArgs& a, const CLI::App& cmd) {
  const fff::ModelKind kind = fff_cli::parse_kind_flag("--model", a.model);
  a.model = fff::ff_kind_name(kind);
  auto given = [&](const char* flag) { return cmd.count(flag) > 0; };
  auto reject = [&](const char* flag, const char* advice) {
    if (given(flag))
      throw fff::Error(std::string(flag) + " does not apply to --model " + a.model + "; " + advice);
  };
  switch (kind) {
    case fff::ModelKind::ff:
      reject("--leaf-width", "a dense FF has one hidden layer of --width neurons");
      reject("--depth", "a dense FF has one hidden layer of --width neurons");
      reject("--trees", "a dense FF has one hidden layer of --width neurons");
      break;
    case fff::ModelKind::leaf_fff:
      reject("--trees", "a leaf FFF is one tree of --width = --leaf-width x 2^--depth neurons");
      resolve_leaf_shape(a, cmd);
      break;
    case fff::ModelKind::neuron_fff:
      reject("--width", "a neuron FFF has --trees trees of --depth levels");
      reject("--leaf-width", "a neuron FFF has --trees trees of --depth levels");
      break;
  }
  apply_recipe(a, kind, given);  // after the shape: the balance weight depends on the leaf width
  fff_cli::check_save_path(a.save);
  if (a.teacher.empty())
    for (const char* flag : {"--distill", "--temperature"})
      if (given(flag)) throw fff::Error(std::string(flag) + " needs --teacher MODEL");
  if (kind != fff::ModelKind::leaf_fff)
    for (const char* flag :
         {"--region-leak", "--hardened", "--hardening", "--balance", "--hardened-epochs"})
      if (given(flag))
        std::fprintf(stderr, "fff: warning: %s only affects --model leaf-fff; ignored\n", flag);
  if (kind == fff::ModelKind::leaf_fff && a.hardened && a.balance > 0.0f)
    std::fprintf(stderr,
                 "fff: warning: --balance has no effect with --hardened (hardened decisions give "
                 "the nodes no gradient)\n");
  if (kind != fff::ModelKind::neuron_fff && given("--no-output-bias"))
    std::fprintf(stderr,
                 "fff: warning: --no-output-bias only affects --model neuron-fff; ignored\n");
}

// Refuses a model that cannot fit in this machine's memory before it is made (a --width of 1e12
// would otherwise end in std::bad_alloc), naming the flags that size it.
void check_model_memory(const TrainArgs& a, const fff::ModelConfig& cfg) {
  std::string flags = "--model " + a.model;
  switch (cfg.kind) {
    case fff::ModelKind::ff:
      flags += " --width " + std::to_string(a.width);
      break;
    case fff::ModelKind::leaf_fff:
      flags += " --width " + std::to_string(a.width) + " (--leaf-width " +
               std::to_string(a.leaf_width) + ", --depth " + std::to_string(a.depth) + ")";
      break;
    case fff::ModelKind::neuron_fff:
      flags += " --trees " + std::to_string(cfg.trees) + " --depth " + std::to_string(cfg.depth);
      break;
  }
  fff_cli::check_fits_in_memory(flags + " --batch " + std::to_string(a.batch),
                                fff_cli::ff_training_bytes(cfg, static_cast<double>(a.batch)));
}

// Times hard inference against the dense FF of the same training width on the rows x.
json inference_json(fff::Context& ctx, fff::Model& model, const fff::Tensor& x, int repeats) {
  const fff::InferenceComparison cmp = fff::compare_with_dense(ctx, model, x, repeats);
  return {{"rows", cmp.rows},
          {"repeats", cmp.repeats},
          {"dense_width", cmp.dense_width},
          {"fff_us_per_row", cmp.model_us_per_row},
          {"dense_us_per_row", cmp.dense_us_per_row},
          {"speedup", cmp.speedup},
          {"flop_ratio", cmp.dense_flops_per_row / cmp.model_flops_per_row}};
}

void print_inference(const json& out) {
  if (out.contains("inference")) {
    const auto& inf = out["inference"];
    std::printf(
        "inference on %lld test rows: FFF %.3f us/row, dense FF-%lld %.3f us/row: %.1fx faster "
        "(FLOP ratio %.1fx)\n",
        static_cast<long long>(inf["rows"].get<int64_t>()), inf["fff_us_per_row"].get<double>(),
        static_cast<long long>(inf["dense_width"].get<int64_t>()),
        inf["dense_us_per_row"].get<double>(), inf["speedup"].get<double>(),
        inf["flop_ratio"].get<double>());
  }
}

// The logits of the --teacher model file for the training rows (standardised as this run
// standardises them, by `norm`), checked to come from a model of the same inputs and classes
// trained on the same split: a teacher that saw this run's validation rows would carry them into
// the choice of the best epoch.
fff::Tensor teacher_logits(fff::Context& ctx, const TrainArgs& a, const std::string& data_name,
                           const fff::Dataset& train, const fff::Standardization& norm) {
  fff::LoadedModel t;
  try {
    t = fff::load_model(a.teacher);
  } catch (const fff::Error& e) {
    throw fff::Error(std::string("--teacher: ") + e.what());
  }
  const fff::ModelConfig& tc = t.model->config();
  if (tc.in != train.features() || tc.out != train.num_classes)
    throw fff::Error("--teacher " + a.teacher + ": a model of " + std::to_string(tc.in) +
                     " inputs and " + std::to_string(tc.out) + " classes, not " +
                     std::to_string(train.features()) + " and " +
                     std::to_string(train.num_classes));
  // The split as the teacher's metadata records it (fff train --save), compared field by field.
  auto meta = [&](const char* key) {
    const auto it = t.metadata.find(key);
    return it == t.metadata.end() ? std::string("?") : it->second;
  };
  double fraction = -1.0;
  try {
    fraction = std::stod(meta("val_fraction"));
  } catch (const std::logic_error&) {  // not recorded or not a number: not the same split
  }
  const bool same = meta("data") == data_name && meta("seed") == std::to_string(a.seed) &&
                    fraction == a.val_fraction && meta("train_limit") == std::to_string(a.limit);
  auto split = [](const std::string& data, const std::string& seed, const std::string& fraction,
                  const std::string& limit) {
    return data + ", seed " + seed + ", validation fraction " + fraction + ", limit " + limit;
  };
  if (!same)
    throw fff::Error(
        "--teacher " + a.teacher + ": trained on the split (" +
        split(meta("data"), meta("seed"),
              fraction >= 0.0 ? fmt("%g", fraction) : meta("val_fraction"), meta("train_limit")) +
        "), not this run's (" +
        split(data_name, std::to_string(a.seed), fmt("%g", a.val_fraction),
              std::to_string(a.limit)) +
        "); train the teacher with the same --data, --seed, --val-fraction and --limit");
  // The rows as the teacher's own standardisation expects them, a chunk at a time (no copy of the
  // whole training split).
  const fff::Standardization& tn = tc.input_norm;
  fff::Tensor logits({train.size(), tc.out});
  constexpr int64_t kChunk = 4096;
  std::vector<float> x(static_cast<size_t>(std::min(kChunk, train.size()) * tc.in));
  for (int64_t r = 0; r < train.size(); r += kChunk) {
    const int64_t rows = std::min(kChunk, train.size() - r);
    std::transform(train.x.row(r), train.x.row(r) + rows * tc.in, x.begin(),
                   [&](float v) { return (v * norm.std + norm.mean - tn.mean) / tn.std; });
    t.model->predict(ctx, x.data(), rows, logits.row(r), nullptr);
  }
  for (float v : logits.data)
    if (!std::isfinite(v))
      throw fff::Error("--teacher " + a.teacher +
                       ": its logits on the training rows are not all finite numbers");
  return logits;
}

int run_train(const TrainArgs& a) {
  const int threads = a.threads > 0 ? a.threads : default_threads();
  fff::Context ctx(threads);
  fff::TrainTest data = fff::load_dataset(a.data);
  if (a.limit > 0) data.train = fff::take_rows(data.train, a.limit);
  auto [train, val] = fff::split_train_val(data.train, a.val_fraction, a.seed);
  fff::ModelConfig cfg = model_config_from(a, data.train);
  check_model_memory(a, cfg);
  if (!a.no_standardize) cfg.input_norm = fff::compute_standardization(train.x);
  fff::apply_standardization(train.x, cfg.input_norm);
  fff::apply_standardization(val.x, cfg.input_norm);
  fff::apply_standardization(data.test.x, cfg.input_norm);

  fff::Rng rng(a.seed);
  auto model = fff::make_model(cfg, rng);
  fff::TrainOptions opt;
  opt.epochs = a.epochs;
  opt.batch = a.batch;
  opt.optimizer.kind = fff::parse_optimizer(a.optimizer);
  opt.optimizer.lr = a.lr;
  opt.optimizer.momentum = a.momentum;
  opt.optimizer.weight_decay = a.weight_decay;
  opt.hardening = a.hardening;
  opt.region_leak = a.region_leak;
  opt.balance = a.balance;
  opt.hardened = a.hardened;
  opt.lr_schedule = fff::parse_lr_schedule(a.lr_schedule);
  opt.hardened_epochs = a.hardened_epochs;
  opt.input_dropout = a.input_dropout;
  opt.ema = a.ema;
  opt.label_smoothing = a.label_smoothing;
  opt.patience = a.patience;
  opt.seed = a.seed;
  fff::Tensor teacher;
  if (!a.teacher.empty()) {
    teacher = teacher_logits(ctx, a, data.name, train, cfg.input_norm);
    opt.teacher_logits = &teacher;
    opt.distill = a.distill;
    opt.distill_temperature = a.temperature;
  }

  std::fprintf(stderr,
               "%s: %lld train / %lld validation / %lld test rows, %lld features, %d classes\n",
               data.name.c_str(), static_cast<long long>(train.size()),
               static_cast<long long>(val.size()), static_cast<long long>(data.test.size()),
               static_cast<long long>(cfg.in), static_cast<int>(cfg.out));
  std::fprintf(stderr, "model: %s; %s lr %g, batch %lld, seed %llu, %d thread(s)\n",
               cfg.describe().c_str(), a.optimizer.c_str(), a.lr, static_cast<long long>(a.batch),
               static_cast<unsigned long long>(a.seed), threads);
  ProgressBar bar(a.epochs + (cfg.kind == fff::ModelKind::leaf_fff ? a.hardened_epochs : 0));
  const double t_start = now_seconds();
  fff::TrainCallbacks cb;
  cb.on_batch = [&](int64_t e, int64_t b, int64_t n) { bar.batch(e, b, n); };
  cb.on_epoch = [&](const fff::EpochReport& r) { bar.epoch_done(r, now_seconds() - t_start); };
  fff::TrainSummary s = fff::train_classifier(ctx, *model, train, val, opt, cb);
  const double wall = now_seconds() - t_start;
  const double test_acc = fff::accuracy(ctx, *model, data.test);
  const fff::RouteUsage usage = fff::route_usage(ctx, *model, data.test);
  // Median time per epoch of the optimisation steps and of the accuracy evaluation.
  std::vector<double> train_times, eval_times;
  for (const auto& r : s.history) {
    train_times.push_back(r.train_seconds);
    eval_times.push_back(r.eval_seconds);
  }
  const double seconds_per_epoch = fff::bench::summarize(train_times).median;
  const double eval_seconds_per_epoch = fff::bench::summarize(eval_times).median;

  json out = config_json(cfg);
  out["data"] = data.name;
  out["epochs_run"] = s.epochs_run;
  out["best_epoch"] = s.best_epoch;
  out["stopped_early"] = s.stopped_early;
  out["train_accuracy"] = s.train_accuracy;
  out["val_accuracy"] = s.val_accuracy;
  out["test_accuracy"] = test_acc;
  out["seconds_per_epoch"] = seconds_per_epoch;
  out["eval_seconds_per_epoch"] = eval_seconds_per_epoch;
  out["wall_seconds"] = wall;
  out["train_rows"] = train.size();
  out["seed"] = a.seed;
  out["threads"] = threads;
  out["optimizer"] = a.optimizer;
  out["lr"] = a.lr;
  out["batch"] = a.batch;
  out["hardening"] = a.hardening;
  out["region_leak"] = a.region_leak;
  out["balance"] = a.balance;
  out["recipe"] = a.recipe;
  out["lr_schedule"] = a.lr_schedule;
  out["weight_decay"] = a.weight_decay;
  out["input_dropout"] = a.input_dropout;
  out["ema"] = a.ema;
  out["label_smoothing"] = a.label_smoothing;
  out["hardened_epochs"] = a.hardened_epochs;
  out["teacher"] = a.teacher.empty() ? json(nullptr) : json(a.teacher);
  out["distill"] = a.teacher.empty() ? 0.0f : a.distill;
  out["temperature"] = a.temperature;
  usage_json(cfg, usage, out);
  json history = json::array();
  for (const auto& r : s.history)
    history.push_back({{"epoch", r.epoch},
                       {"loss", r.loss},
                       {"entropy", r.entropy},
                       {"train_accuracy", r.train_accuracy},
                       {"val_accuracy", r.val_accuracy},
                       {"hardened", r.hardened},
                       {"lr", r.lr},
                       {"seconds", r.train_seconds}});
  out["history"] = history;

  if (!a.no_compare && cfg.kind != fff::ModelKind::ff && data.test.size() > 0)
    out["inference"] = inference_json(ctx, *model, data.test.x, a.bench_repeats);
  if (!a.save.empty()) {
    std::map<std::string, std::string> meta = {
        {"data", data.name},
        {"epochs_run", std::to_string(s.epochs_run)},
        {"train_accuracy", fmt("%.6f", s.train_accuracy)},
        {"val_accuracy", fmt("%.6f", s.val_accuracy)},
        {"test_accuracy", fmt("%.6f", test_acc)},
        {"seconds_per_epoch", fmt("%.6f", seconds_per_epoch)},
        {"seed", std::to_string(a.seed)},
        // With the data set name and the seed, what `fff eval` needs to rebuild the training
        // split.
        {"val_fraction", fmt("%.17g", a.val_fraction)},
        {"train_limit", std::to_string(a.limit)}};
    fff::save_model(a.save, *model, meta);
    out["saved"] = a.save;
  }

  if (a.json) {
    std::cout << json_text(out) << "\n";
    return 0;
  }
  std::printf("model: %s\n", cfg.describe().c_str());
  std::printf("best epoch %lld of %lld: train accuracy (M_A) %.2f%%, validation %.2f%%\n",
              static_cast<long long>(s.best_epoch), static_cast<long long>(s.epochs_run),
              100 * s.train_accuracy, 100 * s.val_accuracy);
  std::printf("test accuracy (G_A): %.2f%%\n", 100 * test_acc);
  std::printf("training: %.3f s per epoch of %lld rows (median), %.2f s in all\n",
              seconds_per_epoch, static_cast<long long>(train.size()), wall);
  print_usage(cfg, usage);
  print_inference(out);
  if (!a.save.empty()) std::printf("saved %s\n", a.save.c_str());
  return 0;
}

// The training split `fff train` trained on, rebuilt from the model file's metadata: the same data
// set, the same first --limit rows, the same seeded split. nullopt when the file does not record
// them (older files) or names another data set.
std::optional<fff::Dataset> training_split(const std::map<std::string, std::string>& meta,
                                           const fff::TrainTest& data) {
  auto get = [&](const char* key) -> const std::string* {
    const auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  const std::string *name = get("data"), *seed = get("seed"), *frac = get("val_fraction"),
                    *limit = get("train_limit");
  if (!name || !seed || !frac || !limit || *name != data.name) return std::nullopt;
  try {
    const int64_t n = std::stoll(*limit);
    const fff::Dataset rows = n > 0 ? fff::take_rows(data.train, n) : data.train;
    return fff::split_train_val(rows, std::stod(*frac), std::stoull(*seed)).first;
  } catch (const std::logic_error&) {  // unparsable numbers: as if not recorded
    return std::nullopt;
  }
}

int run_eval(const EvalArgs& a) {
  fff::Context ctx(a.threads > 0 ? a.threads : default_threads());
  fff::LoadedModel loaded = fff::load_model(a.model_path);
  fff::Model& model = *loaded.model;
  const fff::ModelConfig& cfg = model.config();
  const fff::TrainTest data = fff_cli::load_data_for_model(a.data, a.limit, a.model_path, cfg);
  const double test_acc = fff::accuracy(ctx, model, data.test);
  // M_A on the rows training trained on; the whole training file (train + validation rows) only
  // when the model file does not say how it was split.
  const std::optional<fff::Dataset> split = training_split(loaded.metadata, data);
  const json train_acc = split ? json(fff::accuracy(ctx, model, *split)) : json(nullptr);
  const json train_file_acc = split ? json(nullptr) : json(fff::accuracy(ctx, model, data.train));
  const fff::RouteUsage usage = fff::route_usage(ctx, model, data.test);
  json out = config_json(cfg);
  out["data"] = data.name;
  out["test_accuracy"] = test_acc;
  out["train_accuracy"] = train_acc;
  out["train_rows"] = split ? json(split->size()) : json(nullptr);
  out["train_file_accuracy"] = train_file_acc;
  auto meta_num = [&](const char* key) -> json {
    auto it = loaded.metadata.find(key);
    if (it == loaded.metadata.end()) return nullptr;
    try {
      return std::stod(it->second);
    } catch (...) {
      return nullptr;
    }
  };
  out["val_accuracy"] = meta_num("val_accuracy");
  const json epochs = meta_num("epochs_run");
  out["epochs_run"] = epochs.is_number() ? json(epochs.get<int64_t>()) : epochs;
  out["seconds_per_epoch"] = meta_num("seconds_per_epoch");
  usage_json(cfg, usage, out);
  if (!a.no_compare && cfg.kind != fff::ModelKind::ff && data.test.size() > 0)
    out["inference"] = inference_json(ctx, model, data.test.x, a.bench_repeats);
  if (a.json) {
    std::cout << json_text(out) << "\n";
    return 0;
  }
  std::printf("%s: %s\n", a.model_path.c_str(), cfg.describe().c_str());
  std::printf("test accuracy: %.2f%% on %lld rows of %s\n", 100 * test_acc,
              static_cast<long long>(data.test.size()), data.name.c_str());
  if (split)
    std::printf("train accuracy (M_A) on the %lld rows training trained on: %.2f%%\n",
                static_cast<long long>(split->size()), 100 * train_acc.get<double>());
  else
    std::printf(
        "accuracy on the whole training file (train + validation rows; the model file does not "
        "record the split): %.2f%%\n",
        100 * train_file_acc.get<double>());
  print_usage(cfg, usage);
  print_inference(out);
  return 0;
}

// UltraFastBERT's shapes at d = 768: K trees of depth D with K * 2^(D+1) about 4096 neurons.
constexpr std::pair<int64_t, int64_t> kUltraFastBertShapes[] = {
    {1, 11}, {2, 10}, {4, 9}, {8, 8}, {16, 7}, {32, 6}, {64, 5}, {128, 4}};

json bench_json(const fff::CmmBenchResult& r) {
  return {{"dim", r.cfg.dim},
          {"trees", r.cfg.trees},
          {"depth", r.cfg.depth},
          {"batch", r.cfg.batch},
          {"threads", r.threads},
          {"layers", r.cfg.layers},
          {"dense_width", r.cfg.dense_width},
          {"dense_backend", r.dense_backend},
          {"simd", r.simd},
          {"fff_path", r.fff_path},
          {"fff_weights", r.cfg.half_weights ? "fp16" : "fp32"},
          {"dense_us_per_token", r.dense_us_per_token},
          {"fff_us_per_token", r.fff_us_per_token},
          {"speedup", r.speedup},
          {"fff_gflops", r.fff_gflops},
          {"dense_gflops", r.dense_gflops},
          {"fff_flops_per_token", r.fff_flops_per_token},
          {"dense_flops_per_token", r.dense_flops_per_token},
          {"fff_bytes_per_token", r.fff_bytes_per_token},
          {"dense_bytes_per_token", r.dense_bytes_per_token},
          {"max_rel_err", r.max_rel_err},
          {"copy_us_per_token", r.copy_us_per_token},
          {"fff_io_gbps", r.fff_io_gbps},
          {"copy_io_gbps", r.copy_io_gbps},
          {"rows_floor_us_per_token", r.rows_floor_us_per_token},
          {"rows_read_per_token", r.rows_read_per_token},
          {"fff_vs_rows_floor", r.fff_vs_rows_floor},
          {"loop_us_per_token", r.loop_us_per_token},
          {"fff_vs_loop", r.fff_vs_loop},
          {"loop_max_rel_err", r.loop_max_rel_err},
          {"fff_repeats", r.fff_repeats},
          {"dense_repeats", r.dense_repeats}};
}

int run_bench(const BenchArgs& a, const CLI::App& cmd) {
  // Without shape flags: the UltraFastBERT grid at batch 1, 128 and 16384.
  const bool grid =
      cmd.count("--trees") == 0 && cmd.count("--depth") == 0 && cmd.count("--batch") == 0;
  std::vector<std::pair<int64_t, int64_t>> shapes;
  std::vector<int64_t> batches;
  if (grid) {
    shapes.assign(std::begin(kUltraFastBertShapes), std::end(kUltraFastBertShapes));
    batches = {1, 128, 16384};
  } else {
    shapes = {{a.trees, a.depth}};
    batches = {a.batch};
  }
  if (!a.json)
    std::printf("%-8s %6s %6s %12s %12s %9s %10s %10s %10s %12s %9s %12s %9s\n", "shape", "batch",
                "layers", "fff us/tok", "dense us/tok", "speedup", "fff GF/s", "dense GF/s",
                "rel err", "floor us/tok", "vs floor", "loop us/tok", "vs loop");
  // Each shape's layers (FFF and dense weights) and its batches of input rows, before any is made.
  for (const auto& [trees, depth] : shapes)
    for (int64_t batch : batches) {
      const double d = static_cast<double>(a.dim), layers = static_cast<double>(a.layers);
      const double nodes =
          static_cast<double>(trees) * (std::ldexp(1.0, static_cast<int>(depth) + 1) - 1);
      const double dense = static_cast<double>(a.dense_width);
      const double bytes = 4.0 * (layers * (nodes + dense) * (2 * d + 1) +
                                  static_cast<double>(batch) * (8 * d + dense + nodes));
      fff_cli::check_fits_in_memory(
          "--dim " + std::to_string(a.dim) + " --layers " + std::to_string(a.layers) + " --trees " +
              std::to_string(trees) + " --depth " + std::to_string(depth) + " --dense-width " +
              std::to_string(a.dense_width) + " --batch " + std::to_string(batch),
          bytes);
    }
  fff::Context ctx(a.threads);
  for (int64_t batch : batches) {
    double dense_us = 0.0;  // one dense measurement per batch serves every shape
    int dense_n = 0;
    for (const auto& [trees, depth] : shapes) {
      fff::CmmBenchConfig c;
      c.dim = a.dim, c.trees = trees, c.depth = depth, c.batch = batch;
      c.dense_width = a.dense_width, c.layers = a.layers;
      c.min_seconds = a.min_seconds;
      c.half_weights = a.half;
      const fff::CmmBenchResult r = fff::run_cmm_bench(ctx, c, dense_us, dense_n);
      dense_us = r.dense_us_per_token;
      dense_n = r.dense_repeats;
      if (a.json) {
        std::cout << json_text(bench_json(r)) << std::endl;
      } else {
        const std::string shape = std::to_string(trees) + "x" + std::to_string(depth);
        std::printf(
            "%-8s %6lld %6lld %12.3f %12.3f %8.1fx %10.2f %10.2f %10.2e %12.3f %8.2fx %12.3f "
            "%8.2fx\n",
            shape.c_str(), static_cast<long long>(batch), static_cast<long long>(c.layers),
            r.fff_us_per_token, r.dense_us_per_token, r.speedup, r.fff_gflops, r.dense_gflops,
            r.max_rel_err, r.rows_floor_us_per_token, r.fff_vs_rows_floor, r.loop_us_per_token,
            r.fff_vs_loop);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

// Metadata values as info shows them: a BERT file's whole vocabulary (tokenizer.vocab, 30522
// lines for BERT base) is summarised by its token count.
std::map<std::string, std::string> shown_metadata(const std::map<std::string, std::string>& meta) {
  std::map<std::string, std::string> out = meta;
  if (auto it = out.find("tokenizer.vocab"); it != out.end()) {
    const int64_t lines =
        it->second.empty() ? 0 : 1 + std::count(it->second.begin(), it->second.end(), '\n');
    it->second = "(" + std::to_string(lines) + " tokens)";
  }
  return out;
}

// Prints what info found: the JSON object, or its summary lines, tensors and metadata.
int print_info(const InfoArgs& a, json& out, const std::string& description,
               const std::string& extra_line, const std::map<std::string, std::string>& metadata) {
  out["metadata"] = metadata;
  if (a.json) {
    std::cout << json_text(out) << "\n";
    return 0;
  }
  std::printf("%s (%s)\n  %s\n  %lld parameters%s\n", a.path.c_str(),
              out["format"].get<std::string>().c_str(), description.c_str(),
              static_cast<long long>(out["parameters"].get<int64_t>()), extra_line.c_str());
  for (const auto& [name, shape] : out["tensors"].items())
    std::printf("  tensor %-8s %s\n", name.c_str(), shape.dump().c_str());
  for (const auto& [k, v] : metadata) std::printf("  %s = %s\n", k.c_str(), v.c_str());
  return 0;
}

// Parameters and their shapes by name.
template <class Params>
int64_t tensors_json(const Params& params, json& tensors) {
  int64_t n = 0;
  tensors = json::object();
  for (const fff::Param* p : params) {
    n += p->value.size();
    tensors[p->name] = p->value.shape;
  }
  return n;
}

// fff info on an LM checkpoint (fff lm train --save): its model, its training settings and where
// the run stands.
int info_lm(const InfoArgs& a) {
  fff::LmTrainer tr = fff::load_lm_checkpoint(a.path);
  const fff::LmConfig& c = tr.model.cfg;
  json tensors;
  const int64_t n_params = tensors_json(tr.model.params(), tensors);
  json out = {{"format", "fff-lm"},
              {"kind", "lm"},
              {"mixer", fff::ff_kind_name(c.mixer)},
              {"dim", c.dim},
              {"layers", c.layers},
              {"window", c.window},
              {"scan", fff::scan_algo_name(c.scan)},
              {"width", c.width},
              {"leaf_width", c.mixer == fff::FFKind::leaf_fff ? json(c.leaf_width) : json(nullptr)},
              {"trees", c.mixer == fff::FFKind::neuron_fff ? json(c.trees) : json(nullptr)},
              {"depth", c.mixer == fff::FFKind::ff ? json(nullptr) : json(c.ff_config().depth)},
              {"step", tr.step},
              {"steps", tr.options.steps},
              {"best_val_bpc", tr.best_val_bpc > 0 ? json(tr.best_val_bpc) : json(nullptr)},
              {"parameters", n_params},
              {"tensors", tensors},
              {"ff_inference_flops_per_token", c.ff_inference_flops()}};
  const std::string what = std::string("byte-level QRNN language model, ") +
                           fff::ff_kind_name(c.mixer) + " channel mixing, dim " +
                           std::to_string(c.dim) + ", " + std::to_string(c.layers) +
                           " layers; trained " + std::to_string(tr.step) + " of " +
                           std::to_string(tr.options.steps) + " steps";
  return print_info(
      a, out, what,
      ", " + fmt("%.0f", c.ff_inference_flops()) + " feedforward FLOPs per token at inference",
      shown_metadata(fff::load_safetensors_metadata(a.path)));
}

// fff info on a BERT file (fff-bert: scripts/convert_bert.py, fff bert convert): its encoder.
int info_bert(const InfoArgs& a) {
  const fff::BertModel m = fff::load_bert(a.path);  // checks every tensor against the config
  const fff::BertConfig& c = m.cfg;
  const fff::SafetensorsFile f = fff::load_safetensors(a.path);
  json tensors = json::object();
  int64_t n_params = 0;
  for (const auto& [name, t] : f.tensors) {
    n_params += t.size();
    tensors[name] = t.shape;
  }
  json out = {{"format", "fff-bert"},
              {"kind", "bert"},
              {"arch", fff::bert_arch_name(c.arch)},
              {"describe", c.describe()},
              {"hidden", c.hidden},
              {"layers", c.layers},
              {"heads", c.heads},
              {"vocab", c.vocab},
              {"max_seq", c.max_seq},
              {"ff", fff::ff_kind_name(c.ff.kind)},
              {"ff_training_width", c.ff.training_width()},
              {"ff_inference_width", c.ff.inference_width()},
              {"tokenizer", !m.vocab_text.empty()},
              {"sentence_max_len", m.sentence_max_len},
              {"normalize_embeddings", m.normalize_embeddings},
              {"parameters", n_params},
              {"tensors", tensors}};
  return print_info(
      a, out, "BERT encoder (" + std::string(fff::bert_arch_name(c.arch)) + "): " + c.describe(),
      m.vocab_text.empty() ? ", no tokenizer vocabulary" : ", with its vocabulary",
      shown_metadata(f.metadata));
}

// fff info reads every fff file kind: classifier files (fff train --save), LM checkpoints
// (fff lm train --save) and BERT files; the metadata's "format" says which. Anything else gets
// the classifier loader's error, which names the formats it expected.
int run_info(const InfoArgs& a) {
  const std::string& path = a.path;
  const std::map<std::string, std::string> meta = fff::load_safetensors_metadata(path);
  const auto format = meta.find("format");
  if (format != meta.end() && format->second == "fff-lm") return info_lm(a);
  if (format != meta.end() && format->second == "fff-bert") return info_bert(a);
  fff::LoadedModel loaded = fff::load_model(path);
  fff::Model& model = *loaded.model;
  const fff::ModelConfig& cfg = model.config();
  json out = config_json(cfg);
  json tensors;
  const int64_t n_params = tensors_json(model.params(), tensors);
  out["format"] = format != meta.end() ? format->second : "";
  out["kind"] = "classifier";
  out["parameters"] = n_params;
  out["tensors"] = tensors;
  out["inference_flops_per_row"] = cfg.inference_flops_per_row();
  return print_info(
      a, out, "classifier: " + cfg.describe(),
      ", " + fmt("%.0f", cfg.inference_flops_per_row()) + " FLOPs per row at inference",
      loaded.metadata);
}

CLI::App* add_train_command(CLI::App& app, TrainArgs& a) {
  auto* cmd = app.add_subcommand("train", "Train a classifier, report M_A/G_A and inference speed");
  cmd->add_option("--data", a.data,
                  "Data set: 'fashion-mnist' (Debian package dataset-fashion-mnist), 'mnist', or "
                  "a directory of IDX files or CIFAR-10 binary batches")
      ->capture_default_str();
  cmd->add_option("--model", a.model,
                  "ff (dense), leaf-fff (leaf FFF) or neuron-fff (UltraFastBERT's neuron FFF); "
                  "'fff' is still read as leaf-fff")
      ->check(CLI::IsMember({"ff", "leaf-fff", "neuron-fff", "fff"}))
      ->capture_default_str();
  cmd->add_option("--width", a.width,
                  "ff: hidden width; fff: training width w = leaf width x 2^depth (gives the "
                  "depth, or the leaf width with --depth)")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--leaf-width", a.leaf_width, "fff: neurons per leaf (inference width)")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--depth", a.depth,
                  "fff: tree depth d (2^d leaves; default log2(--width / --leaf-width)); "
                  "neuron-fff: depth D (D+1 levels, default 4)")
      ->check(CLI::Range(0, 24));
  cmd->add_option("--trees", a.trees, "neuron-fff: number of parallel trees K")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--activation", a.activation,
                  "relu, gelu (exact erf) or identity (default: relu; gelu for neuron-fff)")
      ->check(CLI::IsMember({"relu", "gelu", "identity"}));
  cmd->add_flag("--no-output-bias", a.no_output_bias,
                "neuron-fff: no output bias (as UltraFastBERT)");
  cmd->add_option("--recipe", a.recipe,
                  "Defaults of the training settings below. best: Adam, lr 0.002 with a cosine "
                  "schedule over 60 epochs, weight decay 0.3 (ff) or 0.1 (leaf-fff), no early "
                  "stop; leaf-fff also h 0.3, balance 0.3 (0 with 1-neuron leaves, or 2-neuron "
                  "leaves past depth 4), input dropout 0.2 and --epochs x 5 / 3 hardened epochs. "
                  "paper: the FFF "
                  "paper's recipe (SGD lr 0.2, constant; h 3; at most 100 epochs, early stop "
                  "after 10 without a better training accuracy), as scripts/table1.sh uses. "
                  "Flags given explicitly override the recipe")
      ->check(CLI::IsMember({"best", "paper"}))
      ->capture_default_str();
  cmd->add_option("--epochs", a.epochs, "Maximum epochs (best: 60, paper: 100)")
      ->check(fff_cli::positive());
  cmd->add_option("--patience", a.patience,
                  "Stop after this many epochs without a new best training accuracy (best: "
                  "--epochs, paper: 10)")
      ->check(fff_cli::positive());
  cmd->add_option("--batch", a.batch, "Mini-batch size")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--optimizer", a.optimizer, "sgd or adam (best: adam, paper: sgd)")
      ->check(CLI::IsMember({"sgd", "adam"}));
  cmd->add_option("--lr", a.lr, "Learning rate (best: 0.002, paper: 0.2)")
      ->check(fff_cli::positive())
      ->check(fff_cli::finite_number());
  cmd->add_option("--lr-schedule", a.lr_schedule,
                  "constant, or cosine: decay from --lr to 0 over --epochs (and again over "
                  "--hardened-epochs) (best: cosine, paper: constant)")
      ->check(CLI::IsMember({"constant", "cosine"}));
  cmd->add_option(
         "--weight-decay", a.weight_decay,
         "Decoupled weight decay (AdamW's): each step scales the weights by 1 - lr x "
         "this before the update (best: 0.3 for ff, 0.1 for leaf-fff; paper and neuron-fff: 0)")
      ->check(fff_cli::non_negative())
      ->check(fff_cli::finite_number());
  cmd->add_option("--momentum", a.momentum, "SGD momentum")
      ->check(CLI::Range(0.0, 0.999))
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_option("--hardening", a.hardening,
                  "fff: weight h of the mean node entropy in the loss (best: 0.3, paper: 3)")
      ->check(fff_cli::non_negative())
      ->check(fff_cli::finite_number());
  cmd->add_option("--balance", a.balance,
                  "fff: weight b of the leaf balance loss b * (L * sum_j M_j^2 - 1), M_j the "
                  "batch's mean soft mass of leaf j: keeps the tree's leaves in use (best: 0.3, "
                  "but 0 with 1-neuron leaves or 2-neuron leaves past depth 4; paper: 0)")
      ->check(fff_cli::non_negative())
      ->check(fff_cli::finite_number());
  cmd->add_option("--region-leak", a.region_leak,
                  "fff: probability of flipping each node decision per sample during training")
      ->check(CLI::Range(0.0, 0.5))
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_flag("--hardened", a.hardened, "fff: train with hardened (0/1) node decisions");
  cmd->add_option("--hardened-epochs", a.hardened_epochs,
                  "fff: after the soft epochs, train the best model this many more epochs with "
                  "hardened decisions (each row through its own leaf, as at inference; the "
                  "nodes stay fixed) (best: --epochs x 5 / 3, paper: 0)")
      ->check(fff_cli::non_negative());
  cmd->add_option("--input-dropout", a.input_dropout,
                  "Zero each input feature of each training row with this probability (inverted "
                  "dropout; best: 0.2 for leaf-fff, else 0; paper: 0)")
      ->check(CLI::Range(0.0, 0.95));
  cmd->add_option("--ema", a.ema,
                  "Weight averaging: keep an exponential moving average of the weights at this "
                  "decay per step (warmed up as min(decay, (1 + t) / (10 + t)) at step t), on "
                  "which each epoch's accuracies are measured and the best model is kept; a "
                  "hardened phase restarts it from the best model. 0: off (default 0; no recipe "
                  "sets it: it measured no gain over the best recipe's cosine schedule, "
                  "docs/training.md)")
      ->check(CLI::Range(0.0, 0.99999))
      ->check(fff_cli::finite_number());
  cmd->add_option("--label-smoothing", a.label_smoothing,
                  "Train against 1 - eps on the label plus eps / classes on every class instead "
                  "of the one-hot label (PyTorch's label_smoothing; default 0, no recipe sets it)")
      ->check(CLI::Range(0.0, 0.95))
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_option("--teacher", a.teacher,
                  "Distil from this model file (fff train --save; e.g. a dense FF trained with the "
                  "same --data, --seed, --val-fraction and --limit): the loss mixes cross-entropy "
                  "with the KL divergence to the teacher's softened predictions")
      ->check(CLI::ExistingFile);
  cmd->add_option("--distill", a.distill,
                  "With --teacher: weight of the distillation term (1 - it weighs cross-entropy)")
      ->check(CLI::Range(0.0, 1.0))
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_option("--temperature", a.temperature,
                  "With --teacher: softmax temperature of the distillation term (1 was best for a "
                  "leaf FFF on Fashion-MNIST; 4 cost a point, docs/training.md)")
      ->check(CLI::Range(0.05, 100.0))
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_flag("--no-standardize", a.no_standardize,
                "Feed raw inputs (pixels in [0, 1]) instead of standardising them by the training "
                "split's mean and std");
  cmd->add_option("--val-fraction", a.val_fraction,
                  "Share of the training file held out for validation")
      ->check(CLI::Range(0.0, 0.9))
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_option("--limit", a.limit, "Use only the first N rows of the training file (quick runs)")
      ->check(fff_cli::non_negative());
  cmd->add_option("--seed", a.seed,
                  "Random seed (results are identical for a seed whatever --threads)")
      ->check(fff_cli::non_negative())
      ->capture_default_str();
  cmd->add_option("--threads", a.threads, "Threads (default: all cores)")
      ->check(fff_cli::thread_count());
  cmd->add_option("--save", a.save, "Write the best-validation model to this safetensors file");
  cmd->add_flag("--no-compare", a.no_compare, "Skip the inference timing against dense FF");
  cmd->add_option("--bench-repeats", a.bench_repeats, "Repeats of the inference timing (median)")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_flag("--json", a.json, "Print one JSON object with the results on stdout");

  return cmd;
}

CLI::App* add_eval_command(CLI::App& app, EvalArgs& a) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a saved model on a data set's test split");
  cmd->add_option("MODEL", a.model_path, "Model file written by 'fff train --save'")->required();
  cmd->add_option("--data", a.data, "Data set name or directory (as for train)")
      ->capture_default_str();
  cmd->add_option("--limit", a.limit, "Use only the first N test rows")
      ->check(fff_cli::non_negative());
  cmd->add_option("--threads", a.threads, "Threads (default: all cores)")
      ->check(fff_cli::thread_count());
  cmd->add_flag("--no-compare", a.no_compare, "Skip the inference timing against dense FF");
  cmd->add_option("--bench-repeats", a.bench_repeats, "Repeats of the inference timing (median)")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_flag("--json", a.json, "Print one JSON object on stdout");

  return cmd;
}

CLI::App* add_bench_command(CLI::App& app, BenchArgs& a) {
  auto* cmd = app.add_subcommand(
      "bench",
      "Time neuron FFF inference against the dense FF it replaces (same process, medians); "
      "without shape flags, the UltraFastBERT shapes at d=768 and batch 1, 128, 16384. "
      "'fff bench bert' times whole encoders");
  cmd->add_option("--dim", a.dim, "Hidden size d (input and output width)")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--trees", a.trees, "Number of trees K")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--depth", a.depth, "Tree depth D (D + 1 levels)")
      ->check(CLI::Range(0, 24))
      ->capture_default_str();
  cmd->add_option("--batch", a.batch, "Tokens per call")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--dense-width", a.dense_width, "Hidden width of the dense FF")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--layers", a.layers,
                  "Independent layers applied in sequence (use 16+ to measure batch-1 latency "
                  "with weights beyond the cache)")
      ->check(fff_cli::positive())
      ->capture_default_str();
  cmd->add_option("--threads", a.threads, "Threads")
      ->check(fff_cli::thread_count())
      ->capture_default_str();
  cmd->add_option("--min-seconds", a.min_seconds,
                  "Repeat each side at least this long (and 3 times) after a warm-up")
      ->check(fff_cli::positive())
      ->check(fff_cli::finite_number())
      ->capture_default_str();
  cmd->add_flag("--half", a.half,
                "FFF weights in IEEE half precision (half the bytes a token reads; each weight "
                "rounded, arithmetic in fp32). The plain loop and the dense FF stay fp32");
  cmd->add_flag("--json", a.json, "One JSON object per configuration on stdout");

  return cmd;
}

CLI::App* add_info_command(CLI::App& app, InfoArgs& a) {
  auto* cmd = app.add_subcommand("info",
                                 "Show an fff file's configuration, tensors and metadata: "
                                 "classifiers, LM checkpoints and BERT encoders");
  cmd->add_option("MODEL", a.path,
                  "Model file: fff train --save, fff lm train --save, or an fff-bert file")
      ->required();
  cmd->add_flag("--json", a.json, "Print one JSON object on stdout");

  return cmd;
}

// Library errors name config fields ("TrainOptions.batch = 0: ..."); for the commands whose
// configs come from flags, say the flag instead.
template <class F>
int with_flag_names(F&& run) {
  try {
    return run();
  } catch (const fff::Error& err) {
    throw fff::Error(fff_cli::flag_names(err.what()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A write past the file size limit (ulimit -f) then fails with EFBIG, which the atomic writer
  // reports naming the file and cleans up after, instead of SIGXFSZ killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "fff: fast feedforward networks. Train, evaluate and inspect dense FF, leaf FFF and "
      "neuron FFF classifiers (fff routes: what a tree learned), benchmark FFF inference against "
      "dense FF, train byte-level QRNN + "
      "FFF language models, and run UltraFastBERT / crammedBERT encoders.\nRun 'fff COMMAND "
      "--help' for the options of each command. Environment: FFF_SIMD=avx2 (avx3_dl, avx3, sse4, "
      "ssse3) limits the SIMD instruction set the kernels use."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "fff " FFF_VERSION_STRING);
  TrainArgs train_args;
  CLI::App* train = add_train_command(app, train_args);
  EvalArgs eval_args;
  CLI::App* eval = add_eval_command(app, eval_args);
  BenchArgs bench_args;
  CLI::App* bench = add_bench_command(app, bench_args);
  InfoArgs info_args;
  CLI::App* info = add_info_command(app, info_args);
  fff_cli::RoutesArgs routes_args;
  CLI::App* routes = fff_cli::add_routes_command(app, routes_args);
  fff_cli::LmCommands lm;
  fff_cli::add_lm_commands(app, lm);
  fff_cli::BertCommands bert;
  fff_cli::add_bert_commands(app, *bench, bert);
  fff_cli::ServeArgs serve_args;
  CLI::App* serve = fff_cli::add_serve_command(app, serve_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err);
  }
  try {
    // FFF_SIMD=avx2 (or avx3, sse4, ...): the kernels use that instruction set at most, e.g. to
    // time the AVX2 path on an AVX-512 machine.
    if (const char* simd = std::getenv("FFF_SIMD"); simd && *simd) {
      try {
        fff::restrict_simd(simd);
      } catch (const fff::Error& e) {
        throw fff::Error(std::string("FFF_SIMD: ") + e.what());
      }
    }
    if (*train)
      return with_flag_names([&] {
        check_train_flags(train_args, *train);
        return run_train(train_args);
      });
    if (*eval) return run_eval(eval_args);
    if (*bert.bench) return fff_cli::run_bert(bert);
    if (*bench) return run_bench(bench_args, *bench);
    if (*bert.bert) return fff_cli::run_bert(bert);
    if (*info) return run_info(info_args);
    if (*routes) return fff_cli::run_routes(routes_args);
    if (*lm.lm) return with_flag_names([&] { return fff_cli::run_lm(lm); });
    if (*serve) return fff_cli::run_serve(serve_args);
  } catch (const fff::Error& err) {
    std::fprintf(stderr, "fff: error: %s\n", err.what());
    return 1;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "fff: internal error: %s\n", err.what());
    return 2;
  }
  return 0;
}
