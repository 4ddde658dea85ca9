// Training loop for classifiers: mini-batches, the paper's G_A protocol (9:1 split, keep the
// best-validation model), early stop on training accuracy, evaluation and route usage.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/io/data.h"
#include "fff/models/classifier.h"
#include "fff/training/optimizer.h"

namespace fff {

enum class LrSchedule { constant, cosine };
LrSchedule parse_lr_schedule(const std::string& name);  // "constant" | "cosine"

struct TrainOptions {
  int64_t epochs = 100;  // upper bound; early stop may end sooner
  int64_t batch = 256;
  OptimizerConfig optimizer;
  // cosine: epoch e of E runs at lr * (1 + cos(pi (e - 1) / E)) / 2, E = epochs (and again over
  // hardened_epochs for that phase).
  LrSchedule lr_schedule = LrSchedule::constant;
  // Leaf FFF: after the soft phase ends, this many more epochs train the best-validation model
  // with hardened decisions (each row through its own leaf, exactly the inference function;
  // the nodes stay as they are), with a fresh optimizer and the same patience.
  int64_t hardened_epochs = 0;
  // Inverted dropout on the inputs during training: each feature of each training row zeroed
  // with this probability (0 is the standardised mean), the others scaled by 1 / (1 - p).
  float input_dropout = 0.0f;
  // Weight averaging: with ema > 0, an exponential moving average of the weights at this decay
  // per optimizer step (fff::ema_update, with its warm-up) is what each epoch's train and
  // validation accuracies measure and what the best-validation model keeps; optimisation
  // itself goes on from the raw weights. A hardened phase restarts the average from the best
  // model. 0: no average (training as without it, bit for bit).
  float ema = 0.0f;
  float hardening = 3.0f;    // weight h of the mean node entropy (leaf FFF)
  float region_leak = 0.0f;  // leaf FFF
  float balance = 0.0f;      // leaf FFF: weight of the leaf balance loss (fff/layers/ff/leaf_fff.h)
  bool hardened = false;     // leaf FFF: train with hardened decisions
  int64_t patience = 10;     // stop after this many epochs without a new best train accuracy
  // Knowledge distillation from a teacher model: the loss is (1 - distill) x cross-entropy +
  // distill x fff::distillation_loss at distill_temperature, against teacher_logits: the
  // teacher's logits for every training row (rows as in the training Dataset, out columns),
  // computed once on the rows without dropout. distill = 0: cross-entropy alone.
  float distill = 0.0f;
  float distill_temperature = 1.0f;
  // Label smoothing eps in [0, 1) of the cross-entropy term (fff::softmax_cross_entropy): the
  // target is 1 - eps on the label plus eps / C on every class. 0: the one-hot label.
  float label_smoothing = 0.0f;
  const Tensor* teacher_logits = nullptr;
  uint64_t seed = 0;
};

struct EpochReport {
  int64_t epoch = 0;            // 1-based
  double loss = 0.0;            // mean task loss over the epoch's batches
  double entropy = 0.0;         // mean node entropy over the epoch's batches
  double train_accuracy = 0.0;  // hard inference on the training split after the epoch
  double val_accuracy = 0.0;
  double train_seconds = 0.0;  // the optimisation steps alone
  double eval_seconds = 0.0;   // accuracy on train and validation splits
  bool best = false;           // new best validation accuracy (model kept)
  bool hardened = false;       // trained with hardened decisions
  double lr = 0.0;             // learning rate of the epoch
};

struct TrainCallbacks {
  std::function<void(int64_t epoch, int64_t batch, int64_t batches)> on_batch;
  std::function<void(const EpochReport&)> on_epoch;
};

struct TrainSummary {
  std::vector<EpochReport> history;
  int64_t epochs_run = 0;
  int64_t best_epoch = 0;
  double train_accuracy = 0.0;  // M_A: at the best-validation epoch
  double val_accuracy = 0.0;
  bool stopped_early = false;
};

// Trains `model` (whose weights end as those of the best-validation epoch) on ctx's threads.
TrainSummary train_classifier(Context& ctx, Model& model, const Dataset& train, const Dataset& val,
                              const TrainOptions& opt, const TrainCallbacks& callbacks = {});

// Splits d into (train, validation) with a seeded shuffle; val_fraction of the rows (rounded)
// go to validation.
std::pair<Dataset, Dataset> split_train_val(const Dataset& d, double val_fraction, uint64_t seed);

// Fraction of rows whose arg-max logit equals the label, by hard inference in chunks.
double accuracy(Context& ctx, Model& model, const Dataset& d);

struct RouteUsage {
  int64_t routes = 0;           // leaves (leaf FFF) or tree leaves (neuron FFF) that exist
  int64_t used = 0;             // ... reached by at least one row
  int64_t nodes_used = 0;       // neuron FFF: distinct nodes visited
  std::vector<int64_t> counts;  // rows per leaf
  double mean_entropy = 0.0;
};
RouteUsage route_usage(Context& ctx, Model& model, const Dataset& d);

// The routing report of a tree model (fff routes): where hard inference sends the rows of d
// (standardised, labelled) and how the model does on them. A model has `trees` trees (leaf FFF:
// one; neuron FFF: K) of `depth` levels of decisions: internal nodes 0 .. 2^depth - 2 in heap
// order (node i's children are 2i + 1, left, and 2i + 2, right) and 2^depth leaves, leaf j at
// heap index 2^depth - 1 + j (leaf FFF: its leaves; neuron FFF: the last-level nodes). Every
// array runs tree by tree. Paths and logits come from Model::trace, predictions from
// Model::predict in the chunks accuracy() uses, so `correct` is what accuracy() counts.
struct RouteReport {
  int64_t rows = 0, classes = 0, trees = 0, depth = 0;
  int64_t correct = 0;  // rows whose arg-max logit is the label

  int64_t leaves_per_tree() const { return int64_t{1} << depth; }
  int64_t nodes_per_tree() const { return leaves_per_tree() - 1; }  // internal nodes

  std::vector<int64_t> leaf_rows;        // (trees, leaves): rows reaching the leaf
  std::vector<int64_t> leaf_correct;     // (trees, leaves): ... predicted right
  std::vector<int64_t> leaf_class_rows;  // (trees, leaves, classes): ... by label
  std::vector<int64_t> node_rows;        // (trees, nodes): rows reaching the internal node
  std::vector<int64_t> node_right;       // (trees, nodes): ... of which go right
  // (trees, nodes): over the rows reaching the node (0 with none), the mean binary entropy in
  // bits of sigmoid(logit) (leaf FFF: the soft decision training learns; neuron FFF: of the
  // pre-activation, whose sign alone routes) and the mean |logit| (the margin of the decision).
  std::vector<double> node_mean_entropy_bits, node_mean_abs_logit;
  // With RouteReportOptions::leaf_inputs, (leaves, in): the mean input row (as given, i.e.
  // standardised) of the rows reaching each leaf of tree 0; zeros for a leaf no row reaches.
  std::vector<double> leaf_input_mean;
};
struct RouteReportOptions {
  bool leaf_inputs = false;  // compute RouteReport::leaf_input_mean
};
// Throws fff::Error for a dense model (it has no tree) and for data that does not fit the model.
RouteReport route_report(Context& ctx, Model& model, const Dataset& d,
                         const RouteReportOptions& opt = {});

}  // namespace fff
