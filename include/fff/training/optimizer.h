// Optimizers: SGD with (optional) momentum and Adam, both aware of row-sparse gradients.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "fff/core/param.h"

namespace fff {

enum class OptimizerKind { sgd, adam };
OptimizerKind parse_optimizer(const std::string& name);  // "sgd" | "adam"
const char* optimizer_name(OptimizerKind k);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::sgd;
  float lr = 0.2f;
  float momentum = 0.0f;  // SGD: v = momentum v + g; w -= lr v (PyTorch's form)
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // Adam
  // Decoupled weight decay (AdamW, Loshchilov & Hutter): every step first scales each weight by
  // 1 - lr * weight_decay, then applies the update. Dense parameters only.
  float weight_decay = 0.0f;
};

// Row-sparse parameters (Param::sparse) are updated only on the rows a step touched:
// - SGD with momentum stays exact: the decay a row missed is applied in closed form when it is
//   next touched, or by flush();
// - Adam becomes "lazy Adam" (moments of untouched rows are frozen, as in TensorFlow's
//   LazyAdam), the usual choice for sparse layers.
class Optimizer {
 public:
  Optimizer(const OptimizerConfig& cfg, std::vector<Param*> params);
  void step();
  // Brings every lazily updated row up to date; call before reading weights (eval, save).
  void flush();
  int64_t steps() const { return t_; }
  // For learning-rate schedules. Sparse SGD momentum catches rows up at the rate in force when
  // they are next touched, so change it only after flush() when parameters are sparse.
  void set_lr(float lr) { cfg_.lr = lr; }

  // The state as named tensors, for checkpoints: "<param>.m" and "<param>.v" (those the method
  // keeps). With the step count, restoring them resumes training exactly. Sparse SGD momentum
  // keeps per-row bookkeeping that is not included: flush() before saving such a state.
  std::vector<std::pair<std::string, Tensor*>> state_tensors();
  void set_steps(int64_t t) { t_ = t; }

 private:
  struct State {
    Tensor m, v;
    std::vector<int64_t> last;  // sparse SGD momentum: last step each row was brought up to date
  };
  void update_rows(Param& p, State& s, int64_t row_begin, int64_t row_end);
  void catch_up_row(Param& p, State& s, int64_t row, int64_t upto);

  OptimizerConfig cfg_;
  std::vector<Param*> params_;
  std::vector<State> state_;
  int64_t t_ = 0;
};

// Exponential moving average of the parameters (Polyak averaging, in the form of TensorFlow's
// ExponentialMovingAverage): shadow copies that follow the weights, updated after every
// optimizer step as shadow += (1 - d) (value - shadow). The form keeps a shadow bit-equal to a
// weight that does not move (e.g. the fixed nodes of a hardened phase).
//
// The shadows start as copies of the weights (not zeros), so they need no bias correction for a
// zero start; but the first weights are the random initialisation, which a plain decay of 0.999
// would keep 81% of after one Fashion-MNIST epoch (211 steps). ema_decay therefore warms up as
// TensorFlow's num_updates does: d = min(decay, (1 + t) / (10 + t)) at the update after t
// earlier ones (0.1 at the first), so early averages span only the recent steps.
float ema_decay(float decay, int64_t updates);
// Copies of the weights of `params`, in order: the shadows at the start.
std::vector<Tensor> ema_start(const std::vector<Param*>& params);
// shadow[k] += (1 - d) (params[k]->value - shadow[k]), for every element (row-sparse parameters
// included: the rows a step did not touch keep moving towards their current value). With
// row-sparse SGD momentum, an untouched row enters at its lazily updated value (the momentum
// moves it missed arrive when it is next touched, Optimizer::flush).
void ema_update(std::vector<Tensor>& shadow, const std::vector<Param*>& params, float d);

}  // namespace fff
