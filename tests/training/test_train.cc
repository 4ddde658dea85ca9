// Tests for the training loop: every model kind learns a separable synthetic problem, keeps the
// best-validation weights, is bitwise deterministic for a seed and thread count independent;
// early stop agrees with the history; weight averaging; split_train_val, route_usage,
// route_report and dataset checks; and, if Fashion-MNIST is installed, a small end-to-end run
// reaching a sane test accuracy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/io/data.h"
#include "fff/models/classifier.h"
#include "fff/training/train.h"

namespace {

// Results never depend on the thread count (tested below), but the speed does: contexts have
// one thread unless a test says otherwise, so that a busy 2-core machine stays fast.

constexpr int kClasses = 4;
constexpr int64_t kFeatures = 20;

// Gaussian clusters: class c has a random centre (standard normal per feature, so centres are
// about 6 apart) and unit-variance noise. Almost perfectly separable.
fff::Dataset make_clusters(int64_t n, uint64_t seed) {
  fff::Rng rng(seed);
  std::vector<std::vector<float>> centre(kClasses, std::vector<float>(kFeatures));
  fff::Rng centre_rng(4242);  // the same centres for every seed
  for (auto& c : centre)
    for (float& v : c) v = centre_rng.normal();
  fff::Dataset d;
  d.num_classes = kClasses;
  d.x = fff::Tensor({n, kFeatures});
  d.y.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng.below(kClasses));
    d.y[static_cast<size_t>(i)] = c;
    for (int64_t j = 0; j < kFeatures; ++j) d.x.row(i)[j] = centre[c][j] + rng.normal();
  }
  return d;
}

struct Problem {
  fff::Dataset train, val;
};

const Problem& problem() {
  static const Problem p = [] {
    auto [train, val] = fff::split_train_val(make_clusters(2000, 11), 0.1, 3);
    return Problem{std::move(train), std::move(val)};
  }();
  return p;
}

struct TrainSetup {
  std::string label;
  fff::ModelConfig cfg;
  fff::TrainOptions opt;
};

std::vector<TrainSetup> setups() {
  std::vector<TrainSetup> out;
  fff::ModelConfig base;
  base.in = kFeatures;
  base.out = kClasses;
  fff::TrainOptions opt;
  opt.epochs = 4;
  opt.batch = 32;
  opt.seed = 5;
  opt.optimizer.kind = fff::OptimizerKind::sgd;
  opt.optimizer.lr = 0.1f;
  {
    fff::ModelConfig c = base;
    c.kind = fff::ModelKind::ff;
    c.width = 16;
    out.push_back({"ff", c, opt});
  }
  {
    fff::ModelConfig c = base;
    c.kind = fff::ModelKind::leaf_fff;
    c.depth = 2;
    c.leaf_width = 4;
    fff::TrainOptions o = opt;
    o.optimizer.lr = 0.2f;
    out.push_back({"leaf_fff", c, o});
  }
  {
    fff::ModelConfig c = base;
    c.kind = fff::ModelKind::neuron_fff;
    c.trees = 2;
    c.depth = 3;
    c.act = fff::Activation::gelu;
    c.output_bias = true;
    fff::TrainOptions o = opt;
    o.optimizer.kind = fff::OptimizerKind::adam;
    o.optimizer.lr = 0.01f;
    out.push_back({"neuron_fff", c, o});
  }
  {
    fff::ModelConfig c = base;
    c.kind = fff::ModelKind::neuron_fff;
    c.trees = 1;
    c.depth = 3;
    c.act = fff::Activation::gelu;
    c.output_bias = false;
    fff::TrainOptions o = opt;
    o.optimizer.momentum = 0.9f;
    o.optimizer.lr = 0.02f;
    out.push_back({"neuron_fff_no_bias_momentum", c, o});
  }
  return out;
}

bool same_bits(const fff::Tensor& a, const fff::Tensor& b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         (a.data.empty() ||
          std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

std::vector<fff::Tensor> snapshot(fff::Model& m) {
  std::vector<fff::Tensor> out;
  for (fff::Param* p : m.params()) out.push_back(p->value);
  return out;
}

bool same_weights(const std::vector<fff::Tensor>& a, const std::vector<fff::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!same_bits(a[i], b[i])) return false;
  return true;
}

struct TrainRun {
  fff::TrainSummary summary;
  std::vector<fff::Tensor> weights;
  std::vector<std::vector<fff::Tensor>> per_epoch;  // weights after each epoch
};

TrainRun train_once(const TrainSetup& s, uint64_t init_seed = 1, int threads = 1) {
  fff::Context ectx(threads);
  fff::Rng rng(init_seed);
  auto model = fff::make_model(s.cfg, rng);
  TrainRun r;
  fff::TrainCallbacks cb;
  cb.on_epoch = [&](const fff::EpochReport&) { r.per_epoch.push_back(snapshot(*model)); };
  r.summary = fff::train_classifier(ectx, *model, problem().train, problem().val, s.opt, cb);
  r.weights = snapshot(*model);
  return r;
}

TEST(Train, EveryKindLearnsAndKeepsBestValidationModel) {
  fff::Context ectx(1);
  for (const TrainSetup& s : setups()) {
    SCOPED_TRACE(s.label);
    fff::Rng rng(1);
    auto model = fff::make_model(s.cfg, rng);
    std::vector<std::vector<fff::Tensor>> per_epoch;
    int64_t batches_seen = 0;
    fff::TrainCallbacks cb;
    cb.on_batch = [&](int64_t, int64_t, int64_t) { ++batches_seen; };
    cb.on_epoch = [&](const fff::EpochReport&) { per_epoch.push_back(snapshot(*model)); };
    const fff::TrainSummary sum =
        fff::train_classifier(ectx, *model, problem().train, problem().val, s.opt, cb);

    ASSERT_EQ(sum.epochs_run, static_cast<int64_t>(sum.history.size()));
    ASSERT_GE(sum.epochs_run, 1);
    ASSERT_LE(sum.epochs_run, s.opt.epochs);
    const int64_t batches = (problem().train.size() + s.opt.batch - 1) / s.opt.batch;
    EXPECT_EQ(batches_seen, batches * sum.epochs_run);
    EXPECT_GE(sum.val_accuracy, 0.8) << "chance is 0.25";
    EXPECT_GE(sum.train_accuracy, 0.8);

    // The best epoch is the first with the highest validation accuracy.
    ASSERT_GE(sum.best_epoch, 1);
    ASSERT_LE(sum.best_epoch, sum.epochs_run);
    double best = -1.0;
    int64_t best_epoch = 0;
    for (const fff::EpochReport& r : sum.history) {
      EXPECT_TRUE(std::isfinite(r.loss));
      EXPECT_GE(r.train_seconds, 0.0);
      if (r.val_accuracy > best) {
        best = r.val_accuracy;
        best_epoch = r.epoch;
        EXPECT_TRUE(r.best) << "epoch " << r.epoch;
      } else {
        EXPECT_FALSE(r.best) << "epoch " << r.epoch;
      }
    }
    EXPECT_EQ(sum.best_epoch, best_epoch);
    const fff::EpochReport& b = sum.history[static_cast<size_t>(sum.best_epoch - 1)];
    EXPECT_EQ(b.epoch, sum.best_epoch);
    EXPECT_EQ(sum.val_accuracy, b.val_accuracy);
    EXPECT_EQ(sum.train_accuracy, b.train_accuracy);

    // The model left behind is the best epoch's, and evaluates to the reported accuracies.
    ASSERT_EQ(static_cast<int64_t>(per_epoch.size()), sum.epochs_run);
    EXPECT_TRUE(same_weights(snapshot(*model), per_epoch[static_cast<size_t>(sum.best_epoch - 1)]));
    EXPECT_EQ(fff::accuracy(ectx, *model, problem().val), sum.val_accuracy);
    EXPECT_EQ(fff::accuracy(ectx, *model, problem().train), sum.train_accuracy);
    if (sum.best_epoch != sum.epochs_run && s.cfg.kind != fff::ModelKind::ff) {
      // Sanity check that the snapshots differ between epochs (training moved the weights).
      EXPECT_FALSE(same_weights(per_epoch.front(), per_epoch.back()));
    }
  }
}

TEST(Train, KeepsBestEpochWhenLaterEpochsAreWorse) {
  // A learning rate large enough that the validation accuracy is not monotone, so the best
  // epoch is usually not the last one; whichever it is, the weights must be that epoch's.
  TrainSetup s = setups()[1];
  s.opt.optimizer.lr = 2.0f;
  s.opt.epochs = 6;
  s.opt.patience = 100;
  const TrainRun r = train_once(s);
  ASSERT_EQ(static_cast<int64_t>(r.per_epoch.size()), r.summary.epochs_run);
  EXPECT_TRUE(same_weights(r.weights, r.per_epoch[static_cast<size_t>(r.summary.best_epoch - 1)]));
}

TEST(Train, DeterministicForSeed) {
  for (const TrainSetup& s : setups()) {
    SCOPED_TRACE(s.label);
    const TrainRun a = train_once(s), b = train_once(s);
    EXPECT_TRUE(same_weights(a.weights, b.weights));
    ASSERT_EQ(a.summary.history.size(), b.summary.history.size());
    for (size_t i = 0; i < a.summary.history.size(); ++i) {
      EXPECT_EQ(a.summary.history[i].loss, b.summary.history[i].loss);
      EXPECT_EQ(a.summary.history[i].entropy, b.summary.history[i].entropy);
      EXPECT_EQ(a.summary.history[i].val_accuracy, b.summary.history[i].val_accuracy);
    }
    // A different training seed (shuffle, region leak) changes the trajectory.
    TrainSetup other = s;
    other.opt.seed = s.opt.seed + 1;
    const TrainRun c = train_once(other);
    EXPECT_NE(a.summary.history[0].loss, c.summary.history[0].loss);
  }
}

TEST(Train, ThreadCountDoesNotChangeResults) {
  std::vector<TrainSetup> all = setups();
  {
    // Also the leaf FFF with region leak and a batch that does not divide the data.
    TrainSetup s = all[1];
    s.label = "leaf_fff_leak";
    s.opt.region_leak = 0.1f;
    s.opt.batch = 50;
    all.push_back(s);
  }
  for (TrainSetup s : all) {
    SCOPED_TRACE(s.label);
    s.opt.epochs = 2;  // two threads on a busy machine are slow at these tiny batches
    const TrainRun one = train_once(s, 1, 1);
    const TrainRun two = train_once(s, 1, 2);
    EXPECT_TRUE(same_weights(one.weights, two.weights));
    ASSERT_EQ(one.summary.history.size(), two.summary.history.size());
    for (size_t i = 0; i < one.summary.history.size(); ++i) {
      EXPECT_EQ(one.summary.history[i].loss, two.summary.history[i].loss) << "epoch " << i + 1;
      EXPECT_EQ(one.summary.history[i].entropy, two.summary.history[i].entropy);
      EXPECT_EQ(one.summary.history[i].train_accuracy, two.summary.history[i].train_accuracy);
    }
  }
}

TEST(Train, EarlyStopAgreesWithHistory) {
  for (int64_t patience : {1, 2}) {
    SCOPED_TRACE("patience " + std::to_string(patience));
    TrainSetup s = setups()[0];  // dense FF: reaches ~100% training accuracy quickly
    s.opt.epochs = 40;
    s.opt.patience = patience;
    const TrainRun r = train_once(s);
    const auto& h = r.summary.history;
    ASSERT_EQ(static_cast<int64_t>(h.size()), r.summary.epochs_run);
    // Training accuracy cannot keep strictly improving for 40 epochs on a near-perfect problem.
    EXPECT_LT(r.summary.epochs_run, s.opt.epochs);
    EXPECT_TRUE(r.summary.stopped_early);
    // Replay the rule: stop after `patience` epochs without a new best training accuracy.
    double best = -1.0;
    int64_t since = 0, stop_at = 0;
    for (const auto& e : h) {
      if (e.train_accuracy > best) {
        best = e.train_accuracy;
        since = 0;
      } else {
        ++since;
      }
      if (since >= patience) {
        stop_at = e.epoch;
        break;
      }
    }
    EXPECT_EQ(stop_at, r.summary.epochs_run);
    // In particular the last epoch did not improve on the earlier best.
    double before = -1.0;
    for (size_t i = 0; i + 1 < h.size(); ++i) before = std::max(before, h[i].train_accuracy);
    EXPECT_LE(h.back().train_accuracy, before);
  }
  {
    // When the epoch budget runs out, it is not an early stop.
    TrainSetup s = setups()[0];
    s.opt.epochs = 2;
    s.opt.patience = 100;
    const TrainRun r = train_once(s);
    EXPECT_EQ(r.summary.epochs_run, 2);
    EXPECT_FALSE(r.summary.stopped_early);
  }
}

TEST(Train, CosineScheduleThenHardenedPhaseFromTheBestSoftModel) {
  TrainSetup s = setups()[1];  // leaf FFF
  ASSERT_EQ(s.cfg.kind, fff::ModelKind::leaf_fff);
  s.opt.epochs = 4;
  s.opt.patience = 100;
  s.opt.lr_schedule = fff::LrSchedule::cosine;
  s.opt.hardened_epochs = 3;
  s.opt.balance = 0.5f;
  const TrainRun r = train_once(s);
  const auto& h = r.summary.history;
  ASSERT_EQ(h.size(), 7u);
  ASSERT_EQ(r.per_epoch.size(), 7u);
  int64_t best_soft = 0;
  double best_soft_val = -1.0;
  for (size_t i = 0; i < h.size(); ++i) {
    const bool hard = i >= 4;
    const int64_t e = hard ? static_cast<int64_t>(i) - 4 : static_cast<int64_t>(i);  // 0-based
    const double E = hard ? 3.0 : 4.0;
    EXPECT_EQ(h[i].epoch, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(h[i].hardened, hard) << "epoch " << i + 1;
    EXPECT_NEAR(h[i].lr,
                s.opt.optimizer.lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(e) / E)),
                1e-12)
        << "epoch " << i + 1;
    if (!hard && h[i].val_accuracy > best_soft_val)
      best_soft_val = h[i].val_accuracy, best_soft = static_cast<int64_t>(i) + 1;
  }
  // The hardened phase starts from the best soft epoch and leaves its nodes as they are.
  std::vector<std::string> names;  // of the parameters, in snapshot order
  {
    fff::Rng rng(1);
    auto model = fff::make_model(s.cfg, rng);
    for (const fff::Param* p : model->params()) names.push_back(p->name);
  }
  const auto& soft = r.per_epoch[static_cast<size_t>(best_soft - 1)];
  ASSERT_EQ(names.size(), soft.size());
  for (size_t k = 0; k < soft.size(); ++k) {
    const bool node = names[k].find("node") != std::string::npos;
    for (size_t i = 4; i < 7; ++i)
      EXPECT_EQ(same_bits(soft[k], r.per_epoch[i][k]), node) << names[k] << " epoch " << i + 1;
  }
  // Whichever phase gave it, the model left is the best-validation epoch's.
  EXPECT_TRUE(same_weights(r.weights, r.per_epoch[static_cast<size_t>(r.summary.best_epoch - 1)]));
  EXPECT_GE(r.summary.val_accuracy, 0.8);
}

TEST(Train, InputDropoutIsSeededAndThreadIndependentAndChangesTraining) {
  for (size_t k : {size_t{0}, size_t{1}}) {  // dense FF, leaf FFF
    TrainSetup s = setups()[k];
    SCOPED_TRACE(s.label);
    s.opt.epochs = 2;
    const TrainRun plain = train_once(s);
    s.opt.input_dropout = 0.3f;
    const TrainRun a = train_once(s, 1, 1), b = train_once(s, 1, 2);
    EXPECT_TRUE(same_weights(a.weights, b.weights));
    ASSERT_EQ(a.summary.history.size(), b.summary.history.size());
    EXPECT_EQ(a.summary.history[0].loss, b.summary.history[0].loss);
    EXPECT_NE(a.summary.history[0].loss, plain.summary.history[0].loss);
    EXPECT_GE(a.summary.val_accuracy, 0.6) << "chance is 0.25";
  }
}

// Weight averaging (TrainOptions::ema): optimisation runs on the raw weights exactly as without
// it (the same losses), each epoch is measured on the average of the raw weights after every
// step (recomputed here in double precision from the weights on_batch sees, restarted from the
// best soft model for a hardened phase), and the model kept is the best such average. ema = 0
// is training as without the option, bit for bit.
TEST(Train, EmaMeasuresAndKeepsTheAverageOfEveryStepsWeights) {
  std::vector<TrainSetup> all = setups();
  {
    TrainSetup s = all[1];  // leaf FFF, with a hardened phase
    s.label = "leaf_fff_hardened";
    s.opt.lr_schedule = fff::LrSchedule::cosine;
    s.opt.hardened_epochs = 2;
    s.opt.balance = 0.5f;
    all.push_back(s);
  }
  for (TrainSetup s : all) {
    SCOPED_TRACE(s.label);
    s.opt.epochs = 2;
    s.opt.patience = 100;
    const TrainRun plain = train_once(s);
    TrainSetup zero = s;
    zero.opt.ema = 0.0f;
    const TrainRun off = train_once(zero);
    EXPECT_TRUE(same_weights(off.weights, plain.weights));
    ASSERT_EQ(off.summary.history.size(), plain.summary.history.size());
    for (size_t i = 0; i < off.summary.history.size(); ++i) {
      EXPECT_EQ(off.summary.history[i].loss, plain.summary.history[i].loss);
      EXPECT_EQ(off.summary.history[i].val_accuracy, plain.summary.history[i].val_accuracy);
      EXPECT_TRUE(same_weights(off.per_epoch[i], plain.per_epoch[i]));
    }

    const float decay = 0.9f;
    s.opt.ema = decay;
    fff::Context ectx(1);
    fff::Rng rng(1);  // as train_once
    auto model = fff::make_model(s.cfg, rng);
    std::vector<fff::Param*> params = model->params();
    auto as_double = [](const std::vector<fff::Tensor>& w) {
      std::vector<std::vector<double>> out;
      for (const fff::Tensor& t : w) out.emplace_back(t.data.begin(), t.data.end());
      return out;
    };
    std::vector<std::vector<double>> ref = as_double(snapshot(*model));
    int64_t updates = 0, best_soft = 0;
    double best_soft_val = -1.0, max_err = 0.0;
    std::vector<std::vector<fff::Tensor>> per_epoch;
    fff::TrainCallbacks cb;
    cb.on_batch = [&](int64_t epoch, int64_t batch, int64_t) {
      if (epoch == s.opt.epochs + 1 && batch == 1) {  // the hardened phase restarts the average
        ref = as_double(per_epoch[static_cast<size_t>(best_soft - 1)]);
        updates = 0;
      }
      const double d = fff::ema_decay(decay, updates++);
      for (size_t k = 0; k < params.size(); ++k)
        for (size_t i = 0; i < ref[k].size(); ++i)
          ref[k][i] = d * ref[k][i] + (1.0 - d) * params[k]->value.data[i];
    };
    cb.on_epoch = [&](const fff::EpochReport& r) {
      // The model holds the weights the epoch was measured on: the average.
      for (size_t k = 0; k < params.size(); ++k)
        for (size_t i = 0; i < ref[k].size(); ++i)
          max_err = std::max(max_err, std::fabs(params[k]->value.data[i] - ref[k][i]) /
                                          std::max(1.0, std::fabs(ref[k][i])));
      per_epoch.push_back(snapshot(*model));
      if (!r.hardened && r.val_accuracy > best_soft_val)
        best_soft_val = r.val_accuracy, best_soft = r.epoch;
    };
    const fff::TrainSummary sum =
        fff::train_classifier(ectx, *model, problem().train, problem().val, s.opt, cb);
    EXPECT_LT(max_err, 1e-5);
    const auto& h = sum.history;
    ASSERT_EQ(h.size(), plain.summary.history.size());
    ASSERT_EQ(per_epoch.size(), h.size());
    for (size_t i = 0; i < h.size(); ++i) {
      // The average is not the raw weights.
      EXPECT_FALSE(same_weights(per_epoch[i], plain.per_epoch[i])) << "epoch " << i + 1;
      // The soft phase optimises as without the average.
      if (!h[i].hardened) {
        EXPECT_EQ(h[i].loss, plain.summary.history[i].loss) << "epoch " << i + 1;
      }
    }
    // The model left is the best-validation average, and its accuracy the one reported.
    EXPECT_TRUE(same_weights(snapshot(*model), per_epoch[static_cast<size_t>(sum.best_epoch - 1)]));
    EXPECT_EQ(fff::accuracy(ectx, *model, problem().val), sum.val_accuracy);
    EXPECT_EQ(fff::accuracy(ectx, *model, problem().train), sum.train_accuracy);
    EXPECT_GE(sum.val_accuracy, 0.6) << "chance is 0.25";
  }
}

TEST(Train, SplitTrainVal) {
  const int64_t n = 1000;
  fff::Dataset d;
  d.num_classes = 7;
  d.x = fff::Tensor({n, 3});
  d.y.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    d.x.row(i)[0] = static_cast<float>(i);  // identifies the row
    d.x.row(i)[1] = static_cast<float>(2 * i);
    d.x.row(i)[2] = -1.0f;
    d.y[static_cast<size_t>(i)] = static_cast<int32_t>(i % 7);
  }
  auto [train, val] = fff::split_train_val(d, 0.1, 17);
  EXPECT_EQ(train.size(), 900);
  EXPECT_EQ(val.size(), 100);
  EXPECT_EQ(train.features(), 3);
  EXPECT_EQ(val.features(), 3);
  EXPECT_EQ(train.num_classes, 7);
  EXPECT_EQ(val.num_classes, 7);
  std::set<int64_t> seen;
  std::vector<int64_t> val_ids;
  for (const fff::Dataset* part : {&train, &val}) {
    for (int64_t i = 0; i < part->size(); ++i) {
      const auto id = static_cast<int64_t>(part->x.row(i)[0]);
      ASSERT_GE(id, 0);
      ASSERT_LT(id, n);
      EXPECT_EQ(part->x.row(i)[1], static_cast<float>(2 * id));  // rows are kept whole
      EXPECT_EQ(part->y[static_cast<size_t>(i)], id % 7);        // with their labels
      EXPECT_TRUE(seen.insert(id).second) << "row " << id << " appears twice";
      if (part == &val) val_ids.push_back(id);
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), n);
  // The split is shuffled, not the last 10%.
  EXPECT_FALSE(std::is_sorted(val_ids.begin(), val_ids.end()) && val_ids.front() == n - 100);

  // Same seed, same split; another seed, another split.
  auto [train2, val2] = fff::split_train_val(d, 0.1, 17);
  EXPECT_TRUE(same_bits(val.x, val2.x));
  EXPECT_TRUE(same_bits(train.x, train2.x));
  auto [train3, val3] = fff::split_train_val(d, 0.1, 18);
  EXPECT_FALSE(same_bits(val.x, val3.x));

  // Rounding, and the edge fractions.
  auto [t7, v7] = fff::split_train_val(fff::take_rows(d, 15), 0.1, 1);  // 1.5 rows -> 2
  EXPECT_EQ(t7.size() + v7.size(), 15);
  EXPECT_EQ(v7.size(), 2);
  auto [t0, v0] = fff::split_train_val(d, 0.0, 1);
  EXPECT_EQ(t0.size(), n);
  EXPECT_EQ(v0.size(), 0);
  EXPECT_THROW(fff::split_train_val(d, 1.0, 1), fff::Error);
  EXPECT_THROW(fff::split_train_val(d, -0.1, 1), fff::Error);
  EXPECT_THROW(fff::split_train_val(d, std::numeric_limits<double>::quiet_NaN(), 1), fff::Error);
}

TEST(Train, RouteUsage) {
  fff::Context ectx(1);
  const fff::Dataset& data = problem().train;
  for (const TrainSetup& s : setups()) {
    SCOPED_TRACE(s.label);
    fff::Rng rng(1);
    auto model = fff::make_model(s.cfg, rng);
    const fff::RouteUsage u = fff::route_usage(ectx, *model, data);
    EXPECT_TRUE(std::isfinite(u.mean_entropy));
    EXPECT_GE(u.mean_entropy, 0.0);
    EXPECT_LE(u.mean_entropy, std::log(2.0) + 1e-9);
    const int64_t total = std::accumulate(u.counts.begin(), u.counts.end(), int64_t{0});
    const int64_t nonzero =
        std::count_if(u.counts.begin(), u.counts.end(), [](int64_t c) { return c > 0; });
    switch (s.cfg.kind) {
      case fff::ModelKind::ff:
        EXPECT_EQ(u.routes, 0);
        EXPECT_EQ(u.used, 0);
        EXPECT_TRUE(u.counts.empty());
        EXPECT_EQ(u.mean_entropy, 0.0);
        break;
      case fff::ModelKind::leaf_fff:
        EXPECT_EQ(u.routes, int64_t{1} << s.cfg.depth);
        EXPECT_EQ(static_cast<int64_t>(u.counts.size()), u.routes);
        EXPECT_EQ(total, data.size());
        EXPECT_EQ(u.used, nonzero);
        EXPECT_GE(u.used, 1);
        EXPECT_LE(u.used, u.routes);
        break;
      case fff::ModelKind::neuron_fff:
        EXPECT_EQ(u.routes, s.cfg.trees * (int64_t{1} << s.cfg.depth));
        EXPECT_EQ(static_cast<int64_t>(u.counts.size()), u.routes);
        EXPECT_EQ(total, data.size() * s.cfg.trees);  // one leaf per row and tree
        EXPECT_EQ(u.used, nonzero);
        EXPECT_GE(u.used, s.cfg.trees);
        EXPECT_LE(u.used, u.routes);
        EXPECT_GE(u.nodes_used, s.cfg.trees * (s.cfg.depth + 1));
        EXPECT_LE(u.nodes_used, s.cfg.training_width());
        break;
    }
    // Leaf counts agree with the routes predict reports.
    if (s.cfg.kind == fff::ModelKind::leaf_fff) {
      std::vector<int32_t> routes;
      fff::Tensor logits({data.size(), s.cfg.out});
      model->predict(ectx, data.x.ptr(), data.size(), logits.ptr(), &routes);
      std::vector<int64_t> counts(static_cast<size_t>(u.routes), 0);
      for (int32_t leaf : routes) ++counts[static_cast<size_t>(leaf)];
      EXPECT_EQ(counts, u.counts);
    }
  }
  {
    // A single-tree neuron FFF: leaf counts sum to the number of rows.
    fff::ModelConfig c = setups()[3].cfg;
    ASSERT_EQ(c.trees, 1);
    fff::Rng rng(2);
    auto model = fff::make_model(c, rng);
    const fff::RouteUsage u = fff::route_usage(ectx, *model, data);
    EXPECT_EQ(std::accumulate(u.counts.begin(), u.counts.end(), int64_t{0}), data.size());
  }
}

// route_report: its leaf counts are route_usage's, its correct rows accuracy()'s; the counts add
// up (leaves partition the rows in every tree, a node's rows split into its children's); node
// entropies, |logits| and leaf mean inputs equal a naive walk of the tree; threads change nothing.
TEST(Train, RouteReport) {
  fff::Context ectx(1), ectx2(2);
  const fff::Dataset& data = problem().val;
  const int64_t N = data.size();
  for (const TrainSetup& s : setups()) {
    SCOPED_TRACE(s.label);
    fff::Rng rng(3);
    auto model = fff::make_model(s.cfg, rng);
    if (s.cfg.kind == fff::ModelKind::ff) {
      EXPECT_THROW(fff::route_report(ectx, *model, data), fff::Error);
      continue;
    }
    const fff::RouteReport rep = fff::route_report(ectx, *model, data, {.leaf_inputs = true});
    const int64_t K = s.cfg.kind == fff::ModelKind::neuron_fff ? s.cfg.trees : 1;
    const int64_t L = int64_t{1} << s.cfg.depth, n = L - 1, C = s.cfg.out;
    ASSERT_EQ(rep.trees, K);
    ASSERT_EQ(rep.depth, s.cfg.depth);
    EXPECT_EQ(rep.rows, N);
    EXPECT_EQ(rep.classes, C);
    EXPECT_EQ(rep.correct, std::llround(fff::accuracy(ectx, *model, data) * N));
    const fff::RouteUsage u = fff::route_usage(ectx, *model, data);
    EXPECT_EQ(rep.leaf_rows, u.counts);
    for (int64_t t = 0; t < K; ++t) {
      int64_t rows = 0, correct = 0;
      for (int64_t j = t * L; j < (t + 1) * L; ++j) {
        rows += rep.leaf_rows[j];
        correct += rep.leaf_correct[j];
        EXPECT_EQ(std::accumulate(rep.leaf_class_rows.begin() + j * C,
                                  rep.leaf_class_rows.begin() + (j + 1) * C, int64_t{0}),
                  rep.leaf_rows[j]);
      }
      EXPECT_EQ(rows, N);
      EXPECT_EQ(correct, rep.correct);
      EXPECT_EQ(rep.node_rows[t * n], N);  // the root
      for (int64_t i = 0; i < n; ++i) {
        const int64_t k = t * n + i, left_child = 2 * i + 1;
        const int64_t left = rep.node_rows[k] - rep.node_right[k];
        // A child is an internal node or (heap index >= n) leaf j = index - n.
        auto rows_of = [&](int64_t child) {
          return child < n ? rep.node_rows[t * n + child] : rep.leaf_rows[t * L + child - n];
        };
        EXPECT_EQ(rows_of(left_child), left);
        EXPECT_EQ(rows_of(left_child + 1), rep.node_right[k]);
      }
    }
    // Per-class rows over the leaves of tree 0 are the labels' counts.
    for (int64_t c = 0; c < C; ++c) {
      int64_t sum = 0;
      for (int64_t j = 0; j < L; ++j) sum += rep.leaf_class_rows[j * C + c];
      EXPECT_EQ(sum, std::count(data.y.begin(), data.y.end(), static_cast<int32_t>(c)));
    }
    // The naive walk: node logits from the parameters in double (leaf FFF nodes_w, nodes_b;
    // neuron FFF w1, b1), right iff >= 0 (leaf FFF) or > 0 (neuron FFF).
    const auto params = model->params();
    const fff::Tensor &w = params[0]->value, &b = params[1]->value;
    std::vector<double> entropy(static_cast<size_t>(K * n)), abs_logit(static_cast<size_t>(K * n));
    std::vector<double> input_sum(static_cast<size_t>(L * s.cfg.in));
    std::vector<int64_t> node_rows(static_cast<size_t>(K * n));
    const int64_t per_tree = 2 * L - 1;
    for (int64_t r = 0; r < N; ++r)
      for (int64_t t = 0; t < K; ++t) {
        int64_t node = 0;
        for (int64_t level = 0; level < s.cfg.depth; ++level) {
          const int64_t row = s.cfg.kind == fff::ModelKind::leaf_fff ? node : t * per_tree + node;
          double z = b.data[row];
          for (int64_t f = 0; f < s.cfg.in; ++f)
            z += static_cast<double>(w.row(row)[f]) * data.x.row(r)[f];
          const double p = 1.0 / (1.0 + std::exp(-z));
          entropy[t * n + node] += fff::binary_entropy(p) / std::log(2.0);
          abs_logit[t * n + node] += std::fabs(z);
          ++node_rows[t * n + node];
          const bool right = s.cfg.kind == fff::ModelKind::leaf_fff ? z >= 0.0 : z > 0.0;
          node = 2 * node + 1 + (right ? 1 : 0);
        }
        if (t == 0)
          for (int64_t f = 0; f < s.cfg.in; ++f)
            input_sum[(node - n) * s.cfg.in + f] += data.x.row(r)[f];
      }
    EXPECT_EQ(rep.node_rows, node_rows);
    for (int64_t k = 0; k < K * n; ++k) {
      if (node_rows[k] == 0) continue;
      EXPECT_NEAR(rep.node_mean_entropy_bits[k], entropy[k] / node_rows[k], 1e-5) << k;
      EXPECT_NEAR(rep.node_mean_abs_logit[k], abs_logit[k] / node_rows[k], 1e-4) << k;
      EXPECT_GE(rep.node_mean_entropy_bits[k], 0.0);
      EXPECT_LE(rep.node_mean_entropy_bits[k], 1.0 + 1e-12);
    }
    ASSERT_EQ(rep.leaf_input_mean.size(), input_sum.size());
    for (int64_t j = 0; j < L; ++j)
      for (int64_t f = 0; f < s.cfg.in; ++f) {
        const double want =
            rep.leaf_rows[j] > 0 ? input_sum[j * s.cfg.in + f] / rep.leaf_rows[j] : 0.0;
        EXPECT_NEAR(rep.leaf_input_mean[j * s.cfg.in + f], want, 1e-5);
      }
    // Without leaf_inputs nothing is kept; two threads give the same report.
    const fff::RouteReport rep2 = fff::route_report(ectx2, *model, data);
    EXPECT_TRUE(rep2.leaf_input_mean.empty());
    EXPECT_EQ(rep2.leaf_rows, rep.leaf_rows);
    EXPECT_EQ(rep2.leaf_class_rows, rep.leaf_class_rows);
    EXPECT_EQ(rep2.node_right, rep.node_right);
    EXPECT_EQ(rep2.correct, rep.correct);
    EXPECT_EQ(rep2.node_mean_entropy_bits, rep.node_mean_entropy_bits);
  }
  // Data that does not fit the model is refused.
  fff::Rng rng(3);
  auto model = fff::make_model(setups()[1].cfg, rng);
  fff::Dataset wide;
  wide.num_classes = kClasses;
  wide.x = fff::Tensor({3, kFeatures + 1});
  wide.y = {0, 1, 2};
  EXPECT_THROW(fff::route_report(ectx, *model, wide), fff::Error);
}

TEST(Train, DatasetChecks) {
  fff::Context ectx(1);
  const TrainSetup s = setups()[1];
  fff::Rng rng(1);
  auto model = fff::make_model(s.cfg, rng);
  fff::Dataset wrong = make_clusters(50, 1);
  {
    // Features mismatch: 21 columns for a 20-input model.
    fff::Dataset d;
    d.num_classes = kClasses;
    d.x = fff::Tensor({50, kFeatures + 1});
    d.y = wrong.y;
    try {
      fff::train_classifier(ectx, *model, d, problem().val, s.opt);
      ADD_FAILURE() << "no error";
    } catch (const fff::Error& e) {
      EXPECT_NE(std::string(e.what()).find("features"), std::string::npos) << e.what();
    }
    EXPECT_THROW(fff::train_classifier(ectx, *model, problem().train, d, s.opt), fff::Error);
    EXPECT_THROW(fff::accuracy(ectx, *model, d), fff::Error);
  }
  {
    // A label outside [0, classes).
    fff::Dataset d = wrong;
    d.y[7] = kClasses;
    EXPECT_THROW(fff::train_classifier(ectx, *model, d, problem().val, s.opt), fff::Error);
    d.y[7] = -1;
    EXPECT_THROW(fff::accuracy(ectx, *model, d), fff::Error);
  }
  {
    // Bad options: the message names the field and its value.
    auto bad = [&](const std::string& needle, auto change) {
      SCOPED_TRACE(needle);
      fff::TrainOptions o = s.opt;
      change(o);
      try {
        fff::train_classifier(ectx, *model, problem().train, problem().val, o);
        ADD_FAILURE() << "no error";
      } catch (const fff::Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      }
    };
    bad("TrainOptions.batch = 0:", [](fff::TrainOptions& o) { o.batch = 0; });
    bad("TrainOptions.epochs = 0:", [](fff::TrainOptions& o) { o.epochs = 0; });
    bad("TrainOptions.patience = 0:", [](fff::TrainOptions& o) { o.patience = 0; });
    bad("TrainOptions.hardening = -1:", [](fff::TrainOptions& o) { o.hardening = -1.0f; });
    bad("TrainOptions.region_leak = 0.6:", [](fff::TrainOptions& o) { o.region_leak = 0.6f; });
    // NaN fails every range check (it compares false with everything).
    const float nan = std::numeric_limits<float>::quiet_NaN();
    bad("TrainOptions.hardening = nan:", [&](fff::TrainOptions& o) { o.hardening = nan; });
    bad("TrainOptions.region_leak = nan:", [&](fff::TrainOptions& o) { o.region_leak = nan; });
    bad("TrainOptions.balance = -1:", [](fff::TrainOptions& o) { o.balance = -1.0f; });
    bad("TrainOptions.balance = nan:", [&](fff::TrainOptions& o) { o.balance = nan; });
    bad("TrainOptions.hardened_epochs = -1:", [](fff::TrainOptions& o) { o.hardened_epochs = -1; });
    bad("TrainOptions.input_dropout = 1:", [](fff::TrainOptions& o) { o.input_dropout = 1.0f; });
    bad("TrainOptions.input_dropout = -0.1:",
        [](fff::TrainOptions& o) { o.input_dropout = -0.1f; });
    bad("TrainOptions.input_dropout = nan:", [&](fff::TrainOptions& o) { o.input_dropout = nan; });
    bad("TrainOptions.ema = 1:", [](fff::TrainOptions& o) { o.ema = 1.0f; });
    bad("TrainOptions.ema = -0.5:", [](fff::TrainOptions& o) { o.ema = -0.5f; });
    bad("TrainOptions.ema = nan:", [&](fff::TrainOptions& o) { o.ema = nan; });
    bad("TrainOptions.label_smoothing = 1:",
        [](fff::TrainOptions& o) { o.label_smoothing = 1.0f; });
    bad("TrainOptions.label_smoothing = -0.1:",
        [](fff::TrainOptions& o) { o.label_smoothing = -0.1f; });
    bad("TrainOptions.label_smoothing = nan:",
        [&](fff::TrainOptions& o) { o.label_smoothing = nan; });
    bad("OptimizerConfig.momentum = nan:",
        [&](fff::TrainOptions& o) { o.optimizer.momentum = nan; });
    bad("OptimizerConfig.lr = 0:", [](fff::TrainOptions& o) { o.optimizer.lr = 0.0f; });
  }
  {
    fff::Dataset empty = fff::take_rows(wrong, 0);
    EXPECT_THROW(fff::train_classifier(ectx, *model, empty, problem().val, s.opt), fff::Error);
  }
}

TEST(Train, FashionMnistEndToEnd) {
  fff::Context ectx(1);
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << dir << " is not installed";
  fff::TrainTest data = fff::load_dataset("fashion-mnist");
  fff::Dataset train_all = fff::take_rows(data.train, 3000);
  fff::Dataset test = fff::take_rows(data.test, 2000);
  ASSERT_EQ(train_all.features(), 784);
  auto [train, val] = fff::split_train_val(train_all, 0.1, 0);
  const fff::Standardization norm = fff::compute_standardization(train.x);
  fff::apply_standardization(train.x, norm);
  fff::apply_standardization(val.x, norm);
  fff::apply_standardization(test.x, norm);

  fff::ModelConfig c;
  c.kind = fff::ModelKind::leaf_fff;
  c.in = train.features();
  c.out = 10;
  c.depth = 3;
  c.leaf_width = 8;
  c.input_norm = norm;
  fff::Rng rng(0);
  auto model = fff::make_model(c, rng);
  fff::TrainOptions opt;
  opt.epochs = 4;
  opt.batch = 64;
  opt.optimizer.kind = fff::OptimizerKind::sgd;
  opt.optimizer.lr = 0.2f;
  opt.seed = 0;
  const fff::TrainSummary s = fff::train_classifier(ectx, *model, train, val, opt);
  const double test_acc = fff::accuracy(ectx, *model, test);
  EXPECT_GE(test_acc, 0.65) << "chance is 0.10";
  EXPECT_GE(s.val_accuracy, 0.6);
  const fff::RouteUsage u = fff::route_usage(ectx, *model, test);
  EXPECT_EQ(std::accumulate(u.counts.begin(), u.counts.end(), int64_t{0}), test.size());
  EXPECT_GE(u.used, 1);
  EXPECT_LE(u.used, 8);
}

}  // namespace
