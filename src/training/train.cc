// Mini-batch training with best-validation model selection, evaluation, route usage and the
// routing report.
#include "fff/training/train.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <set>

#include "core/parallel.h"
#include "cpu/vec_kernels.h"
#include "fff/layers/loss.h"

namespace fff {

namespace {

constexpr int64_t kEvalChunk = 4096;
constexpr int64_t kGatherAhead = 4;

// A number for an error message: "0.9", "256", "1e-05".
std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// x[j] *= scale where u[j] < keep, else 0. The pointers do not alias (a uint8_t pointer could
// alias the floats, and the loop would then not be vectorised).
void apply_dropout(const uint8_t* __restrict u, uint32_t keep, float scale, float* __restrict x,
                   int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] *= u[j] < keep ? scale : 0.0f;
}

void shuffle(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

void check_dataset(const Model& model, const Dataset& d, const char* what) {
  const ModelConfig& c = model.config();
  if (d.features() != c.in)
    throw Error(std::string(what) + " data has " + std::to_string(d.features()) +
                " features but the model expects " + std::to_string(c.in));
  for (int32_t y : d.y)
    if (y < 0 || y >= c.out)
      throw Error(std::string(what) + " data has label " + std::to_string(y) +
                  " but the model has " + std::to_string(c.out) + " classes");
}

}  // namespace

std::pair<Dataset, Dataset> split_train_val(const Dataset& d, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))  // NaN fails too
    throw Error("split_train_val: val_fraction = " + format_value(val_fraction) +
                ": must be in [0, 1)");
  std::vector<int64_t> idx(static_cast<size_t>(d.size()));
  std::iota(idx.begin(), idx.end(), 0);
  Rng rng(seed ^ 0x5eed5a1177ull);
  shuffle(idx, rng);
  const auto n_val = static_cast<int64_t>(std::llround(val_fraction * d.size()));
  std::vector<int64_t> val_idx(idx.begin(), idx.begin() + n_val);
  std::vector<int64_t> train_idx(idx.begin() + n_val, idx.end());
  return {gather_rows(d, train_idx), gather_rows(d, val_idx)};
}

double accuracy(Context& ctx, Model& model, const Dataset& d) {
  check_dataset(model, d, "evaluation");
  if (d.size() == 0) return 0.0;
  CallScope scope(ctx);
  const int64_t C = model.config().out;
  Tensor logits({std::min(d.size(), kEvalChunk), C});
  int64_t correct = 0;
  for (int64_t r = 0; r < d.size(); r += kEvalChunk) {
    const int64_t B = std::min(kEvalChunk, d.size() - r);
    model.predict(ctx, d.x.row(r), B, logits.ptr(), nullptr);
    for (int64_t i = 0; i < B; ++i) correct += argmax(logits.row(i), C) == d.y[r + i];
  }
  return static_cast<double>(correct) / static_cast<double>(d.size());
}

RouteUsage route_usage(Context& ctx, Model& model, const Dataset& d) {
  CallScope scope(ctx);
  const ModelConfig& c = model.config();
  RouteUsage u;
  u.mean_entropy = model.mean_node_entropy(ctx, d.x.ptr(), d.size());
  if (c.kind == ModelKind::ff) return u;
  const int64_t C = c.out;
  Tensor logits({std::min(std::max<int64_t>(d.size(), 1), kEvalChunk), C});
  std::vector<int32_t> routes;
  std::set<int32_t> nodes;
  const int64_t per_tree = (int64_t{2} << c.depth) - 1;
  const int64_t first_leaf = per_tree / 2;  // neuron FFF: heap index of the first last-level node
  u.routes = c.kind == ModelKind::leaf_fff ? (int64_t{1} << c.depth) : c.trees * (first_leaf + 1);
  u.counts.assign(static_cast<size_t>(u.routes), 0);
  for (int64_t r = 0; r < d.size(); r += kEvalChunk) {
    const int64_t B = std::min(kEvalChunk, d.size() - r);
    model.predict(ctx, d.x.row(r), B, logits.ptr(), &routes);
    if (c.kind == ModelKind::leaf_fff) {
      for (int32_t leaf : routes) ++u.counts[leaf];
    } else {
      for (int32_t node : routes) {
        nodes.insert(node);
        const int64_t tree = node / per_tree, local = node % per_tree;
        if (local >= first_leaf) ++u.counts[tree * (first_leaf + 1) + local - first_leaf];
      }
    }
  }
  u.nodes_used = static_cast<int64_t>(nodes.size());
  for (int64_t cnt : u.counts) u.used += cnt > 0;
  return u;
}

RouteReport route_report(Context& ctx, Model& model, const Dataset& d,
                         const RouteReportOptions& opt) {
  const ModelConfig& c = model.config();
  if (c.kind == ModelKind::ff)
    throw Error("routing report: a dense ff model has no tree whose routes to report");
  check_dataset(model, d, "routing report");
  CallScope scope(ctx);
  RouteReport rep;
  rep.rows = d.size();
  rep.classes = c.out;
  rep.depth = c.depth;
  rep.trees = c.kind == ModelKind::neuron_fff ? c.trees : 1;
  const int64_t C = c.out, depth = c.depth, L = rep.leaves_per_tree(), n = rep.nodes_per_tree();
  const int64_t K = rep.trees;
  rep.leaf_rows.assign(static_cast<size_t>(K * L), 0);
  rep.leaf_correct.assign(static_cast<size_t>(K * L), 0);
  rep.leaf_class_rows.assign(static_cast<size_t>(K * L * C), 0);
  rep.node_rows.assign(static_cast<size_t>(K * n), 0);
  rep.node_right.assign(static_cast<size_t>(K * n), 0);
  rep.node_mean_entropy_bits.assign(static_cast<size_t>(K * n), 0.0);
  rep.node_mean_abs_logit.assign(static_cast<size_t>(K * n), 0.0);
  if (opt.leaf_inputs) rep.leaf_input_mean.assign(static_cast<size_t>(L * c.in), 0.0);
  // neuron FFF: nodes per tree in the global numbering (the last level included).
  const int64_t neuron_per_tree = 2 * L - 1;

  Tensor logits({std::min(std::max<int64_t>(d.size(), 1), kEvalChunk), C});
  FFTrace trace;
  std::vector<int64_t> path(static_cast<size_t>(depth + 1));  // heap indices, root to leaf
  std::vector<float> path_logit(static_cast<size_t>(depth));
  const double ln2 = std::log(2.0);
  for (int64_t r0 = 0; r0 < d.size(); r0 += kEvalChunk) {
    const int64_t B = std::min(kEvalChunk, d.size() - r0);
    const float* xb = d.x.row(r0);
    model.predict(ctx, xb, B, logits.ptr(), nullptr);
    model.trace(ctx, xb, B, trace);
    for (int64_t i = 0; i < B; ++i) {
      const int32_t label = d.y[r0 + i];
      const bool hit = argmax(logits.row(i), C) == label;
      rep.correct += hit;
      for (int64_t t = 0; t < K; ++t) {
        if (c.kind == ModelKind::leaf_fff) {
          for (int64_t l = 0; l < depth; ++l) {
            path[l] = trace.nodes[i * trace.per_row + l];
            path_logit[l] = trace.logits[i * trace.per_row + l];
          }
          path[depth] = n + trace.leaves[i];
        } else {
          const int64_t at = i * trace.per_row + t * (depth + 1);
          for (int64_t l = 0; l <= depth; ++l) {
            path[l] = trace.nodes[at + l] - t * neuron_per_tree;
            if (l < depth) path_logit[l] = trace.logits[at + l];
          }
        }
        for (int64_t l = 0; l < depth; ++l) {
          const int64_t k = t * n + path[l];
          const double z = path_logit[l];
          ++rep.node_rows[k];
          rep.node_right[k] += path[l + 1] == 2 * path[l] + 2;
          rep.node_mean_entropy_bits[k] += binary_entropy(1.0 / (1.0 + std::exp(-z))) / ln2;
          rep.node_mean_abs_logit[k] += std::fabs(z);
        }
        const int64_t leaf = path[depth] - n;
        const int64_t j = t * L + leaf;
        ++rep.leaf_rows[j];
        rep.leaf_correct[j] += hit;
        ++rep.leaf_class_rows[j * C + label];
        if (t == 0 && opt.leaf_inputs) {
          const float* xr = d.x.row(r0 + i);
          double* sum = rep.leaf_input_mean.data() + leaf * c.in;
          for (int64_t f = 0; f < c.in; ++f) sum[f] += xr[f];
        }
      }
    }
  }
  for (size_t k = 0; k < rep.node_rows.size(); ++k)
    if (rep.node_rows[k] > 0) {
      rep.node_mean_entropy_bits[k] /= static_cast<double>(rep.node_rows[k]);
      rep.node_mean_abs_logit[k] /= static_cast<double>(rep.node_rows[k]);
    }
  if (opt.leaf_inputs)
    for (int64_t j = 0; j < L; ++j)
      if (rep.leaf_rows[j] > 0)
        for (int64_t f = 0; f < c.in; ++f)
          rep.leaf_input_mean[j * c.in + f] /= static_cast<double>(rep.leaf_rows[j]);
  return rep;
}

TrainSummary train_classifier(Context& ctx, Model& model, const Dataset& train, const Dataset& val,
                              const TrainOptions& opt, const TrainCallbacks& callbacks) {
  check_dataset(model, train, "training");
  check_dataset(model, val, "validation");
  if (train.size() == 0) throw Error("training data is empty");
  // Messages name the field and its value; the CLI maps the field names to its flags.
  auto bad = [](const char* field, double v, const char* why) {
    return Error(std::string("TrainOptions.") + field + " = " + format_value(v) + ": " + why);
  };
  if (opt.batch <= 0) throw bad("batch", opt.batch, "must be positive");
  if (opt.epochs <= 0) throw bad("epochs", opt.epochs, "must be positive");
  if (opt.patience <= 0) throw bad("patience", opt.patience, "must be positive");
  // Comparisons written so that NaN fails them.
  if (!(opt.hardening >= 0.0f) || !std::isfinite(opt.hardening))
    throw bad("hardening", opt.hardening, "must be a non-negative number");
  if (!(opt.balance >= 0.0f) || !std::isfinite(opt.balance))
    throw bad("balance", opt.balance, "must be a non-negative number");
  if (!(opt.region_leak >= 0.0f && opt.region_leak <= 0.5f))
    throw bad("region_leak", opt.region_leak, "must be in [0, 0.5]");

  if (opt.hardened_epochs < 0) throw bad("hardened_epochs", opt.hardened_epochs, "must be >= 0");
  if (!(opt.input_dropout >= 0.0f && opt.input_dropout < 1.0f))
    throw bad("input_dropout", opt.input_dropout, "must be in [0, 1)");
  if (!(opt.ema >= 0.0f && opt.ema < 1.0f)) throw bad("ema", opt.ema, "must be in [0, 1)");
  if (!(opt.distill >= 0.0f && opt.distill <= 1.0f))
    throw bad("distill", opt.distill, "must be in [0, 1]");
  if (!(opt.distill_temperature > 0.0f) || !std::isfinite(opt.distill_temperature))
    throw bad("distill_temperature", opt.distill_temperature, "must be a positive number");
  if (!(opt.label_smoothing >= 0.0f && opt.label_smoothing < 1.0f))
    throw bad("label_smoothing", opt.label_smoothing, "must be in [0, 1)");
  if (opt.distill > 0.0f) {
    const Tensor* t = opt.teacher_logits;
    if (!t || t->shape != std::vector<int64_t>{train.size(), model.config().out})
      throw Error(
          "TrainOptions.teacher_logits: distillation needs the teacher's logits for every "
          "training row, shape [" +
          std::to_string(train.size()) + ", " + std::to_string(model.config().out) + "]" +
          (t ? ", not " + shape_string(t->shape) : " (none given)"));
  }
  Rng dropout_rng(opt.seed ^ 0xd409d409ull);
  // A feature survives iff a random byte falls below keep_below: 8 features per 64 random bits,
  // the bytes drawn first and then applied in a loop the compiler vectorises (a loop that
  // shifted bits out per feature cost a quarter of an epoch). The keep probability is so
  // rounded to 1/256; the scale undoes the rounded one, so the expected input is unchanged.
  const auto keep_below = static_cast<uint32_t>(std::lround((1.0 - opt.input_dropout) * 256.0));
  const float keep_scale = keep_below > 0 ? 256.0f / static_cast<float>(keep_below) : 0.0f;
  std::vector<uint8_t> drop_bytes(static_cast<size_t>((train.features() + 7) / 8 * 8));

  const ModelConfig& c = model.config();
  CallScope scope(ctx);  // one setup for the whole run (optimizer steps included)
  std::vector<Param*> params = model.params();
  Rng rng(opt.seed);
  const int64_t n = train.size(), in = c.in, C = c.out;
  const int64_t batches = (n + opt.batch - 1) / opt.batch;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Tensor xb({opt.batch, in}), logits({opt.batch, C}), dlogits({opt.batch, C});
  Tensor teacher_b, dkd;  // with distillation: the batch's teacher logits, the KD gradient
  if (opt.distill > 0.0f) teacher_b = Tensor({opt.batch, C}), dkd = Tensor({opt.batch, C});
  std::vector<int32_t> yb(static_cast<size_t>(opt.batch));

  TrainSummary s;
  std::vector<Tensor> best_weights;
  double best_val = -1.0;
  auto restore_best = [&] {
    for (size_t k = 0; k < params.size(); ++k) params[k]->value = best_weights[k];
    model.prepare_inference();
  };

  // With weight averaging, the epoch's accuracies are measured on the averaged weights, swapped
  // into the model by copying (the blocks may hold on to their parameters' buffers) and swapped
  // back before training goes on.
  const bool averaging = opt.ema > 0.0f;
  std::vector<Tensor> raw;  // the raw weights while the averaged ones are in the model
  auto copy_into_params = [&](const std::vector<Tensor>& from) {
    for (size_t k = 0; k < params.size(); ++k)
      std::copy_n(from[k].ptr(), from[k].size(), params[k]->value.ptr());
  };

  // One phase: up to `epochs` epochs with its own optimizer and schedule, ended early after
  // opt.patience epochs without a new best training accuracy. The average restarts from the
  // weights the phase starts with.
  auto run_phase = [&](int64_t epochs, bool hardened) {
    Optimizer optimizer(opt.optimizer, params);
    std::vector<Tensor> shadow;
    int64_t ema_updates = 0;
    if (averaging) shadow = ema_start(params), raw = shadow;
    const TrainStepOptions step_opt{hardened, opt.region_leak, opt.balance};
    double best_train = -1.0;
    int64_t since_train_improved = 0;
    for (int64_t e = 1; e <= epochs; ++e) {
      EpochReport rep;
      rep.epoch = s.epochs_run + 1;
      rep.hardened = hardened;
      rep.lr = opt.lr_schedule == LrSchedule::cosine
                   ? opt.optimizer.lr * 0.5 *
                         (1.0 +
                          std::cos(M_PI * static_cast<double>(e - 1) / static_cast<double>(epochs)))
                   : opt.optimizer.lr;
      optimizer.set_lr(static_cast<float>(rep.lr));
      const double t0 = now_seconds();
      shuffle(order, rng);
      double loss_sum = 0.0, entropy_sum = 0.0;
      for (int64_t b = 0; b < batches; ++b) {
        const int64_t start = b * opt.batch, B = std::min(opt.batch, n - start);
        for (int64_t i = 0; i < B; ++i) {
          // Rows are scattered over the whole training set: ask for a later row's cache lines
          // ahead of copying it, so the copy does not wait on DRAM row by row.
          if (i + kGatherAhead < B)
            cpu::prefetch_row(train.x.row(order[start + i + kGatherAhead]), in);
          const int64_t r = order[start + i];
          std::copy_n(train.x.row(r), in, xb.row(i));
          if (opt.input_dropout > 0.0f) {
            for (size_t k = 0; k < drop_bytes.size(); k += 8) {
              const uint64_t bits = dropout_rng.next_u64();
              std::memcpy(drop_bytes.data() + k, &bits, 8);
            }
            apply_dropout(drop_bytes.data(), keep_below, keep_scale, xb.row(i), in);
          }
          yb[i] = train.y[r];
          if (opt.distill > 0.0f) std::copy_n(opt.teacher_logits->row(r), C, teacher_b.row(i));
        }
        entropy_sum += model.forward_train(ctx, xb.ptr(), B, logits.ptr(), step_opt, rng);
        double loss = softmax_cross_entropy(logits.ptr(), yb.data(), B, C, dlogits.ptr(), nullptr,
                                            opt.label_smoothing);
        if (opt.distill > 0.0f) {
          const double kd = distillation_loss(logits.ptr(), teacher_b.ptr(), B, C,
                                              opt.distill_temperature, dkd.ptr());
          const float a = opt.distill;
          for (int64_t k = 0; k < B * C; ++k)
            dlogits.data[k] = (1.0f - a) * dlogits.data[k] + a * dkd.data[k];
          loss = (1.0 - a) * loss + a * kd;
        }
        loss_sum += loss;
        model.backward(ctx, xb.ptr(), B, dlogits.ptr(), opt.hardening);
        optimizer.step();
        if (averaging) ema_update(shadow, params, ema_decay(opt.ema, ema_updates++));
        if (callbacks.on_batch) callbacks.on_batch(rep.epoch, b + 1, batches);
      }
      optimizer.flush();
      if (averaging) {
        for (size_t k = 0; k < params.size(); ++k) raw[k] = params[k]->value;
        copy_into_params(shadow);
      }
      model.prepare_inference();
      const double t1 = now_seconds();
      rep.loss = loss_sum / batches;
      rep.entropy = entropy_sum / batches;
      rep.train_accuracy = accuracy(ctx, model, train);
      rep.val_accuracy = val.size() > 0 ? accuracy(ctx, model, val) : rep.train_accuracy;
      rep.train_seconds = t1 - t0;
      rep.eval_seconds = now_seconds() - t1;
      if (!std::isfinite(rep.loss))
        throw Error("training diverged (loss is not finite) in epoch " + std::to_string(rep.epoch) +
                    "; try a smaller learning rate than OptimizerConfig.lr = " +
                    format_value(opt.optimizer.lr));
      if (rep.val_accuracy > best_val) {
        best_val = rep.val_accuracy;
        rep.best = true;
        s.best_epoch = rep.epoch;
        s.train_accuracy = rep.train_accuracy;
        s.val_accuracy = rep.val_accuracy;
        best_weights.clear();
        for (Param* p : params) best_weights.push_back(p->value);
      }
      if (rep.train_accuracy > best_train) {
        best_train = rep.train_accuracy;
        since_train_improved = 0;
      } else {
        ++since_train_improved;
      }
      s.history.push_back(rep);
      s.epochs_run = rep.epoch;
      if (callbacks.on_epoch) callbacks.on_epoch(rep);  // sees the weights measured
      if (averaging) copy_into_params(raw);             // training goes on from the raw ones
      if (since_train_improved >= opt.patience) {
        s.stopped_early = e < epochs;
        break;
      }
    }
  };

  run_phase(opt.epochs, opt.hardened);
  if (opt.hardened_epochs > 0 && c.kind == ModelKind::leaf_fff && !opt.hardened) {
    restore_best();
    run_phase(opt.hardened_epochs, true);
  }
  restore_best();
  return s;
}

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::constant;
  if (name == "cosine") return LrSchedule::cosine;
  throw Error("unknown learning-rate schedule '" + name + "' (expected constant or cosine)");
}

}  // namespace fff
