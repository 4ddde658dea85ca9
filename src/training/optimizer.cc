// SGD (momentum) and Adam, with lazy updates for row-sparse parameters.
#include "fff/training/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cpu/vec_kernels.h"

namespace fff {

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::sgd;
  if (name == "adam") return OptimizerKind::adam;
  throw Error("unknown optimizer '" + name + "' (expected sgd or adam)");
}

const char* optimizer_name(OptimizerKind k) {
  return k == OptimizerKind::sgd ? "sgd" : "adam";
}

Optimizer::Optimizer(const OptimizerConfig& cfg, std::vector<Param*> params)
    : cfg_(cfg), params_(std::move(params)) {
  // Messages name the field and its value; the CLI maps the field names to its flags.
  auto bad = [](const char* field, float v, const char* why) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
    return Error(std::string("OptimizerConfig.") + field + " = " + buf + ": " + why);
  };
  if (!(cfg.lr > 0.0f) || !std::isfinite(cfg.lr)) throw bad("lr", cfg.lr, "must be positive");
  // Written so that NaN fails too: a NaN momentum passed `< 0 || >= 1`, then took the momentum
  // update without the momentum buffer that `momentum > 0` allocates (a segfault).
  if (!(cfg.momentum >= 0.0f && cfg.momentum < 1.0f))
    throw bad("momentum", cfg.momentum, "must be in [0, 1)");
  if (!(cfg.weight_decay >= 0.0f) || !std::isfinite(cfg.weight_decay))
    throw bad("weight_decay", cfg.weight_decay, "must be a non-negative number");
  for (Param* p : params_) {
    if (p->sparse && cfg.weight_decay != 0.0f)
      throw Error("OptimizerConfig.weight_decay: not supported for row-sparse parameter '" +
                  p->name + "' (its untouched rows would not decay)");
    State s;
    const bool needs_m = cfg.kind == OptimizerKind::adam || cfg.momentum > 0.0f;
    if (needs_m) s.m = Tensor(p->value.shape);
    if (cfg.kind == OptimizerKind::adam) s.v = Tensor(p->value.shape);
    if (p->sparse && needs_m && !p->value.shape.empty())
      s.last.assign(static_cast<size_t>(p->value.shape[0]), 0);
    state_.push_back(std::move(s));
  }
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state_tensors() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (state_[i].m.size() > 0) out.emplace_back(params_[i]->name + ".m", &state_[i].m);
    if (state_[i].v.size() > 0) out.emplace_back(params_[i]->name + ".v", &state_[i].v);
  }
  return out;
}

// Applies the k = upto - last[row] momentum-only steps this row missed (no gradient): each
// scales v by mu and moves w by -lr v, which sums to a geometric series.
void Optimizer::catch_up_row(Param& p, State& s, int64_t row, int64_t upto) {
  const int64_t k = upto - s.last[row];
  s.last[row] = upto;
  if (k <= 0 || cfg_.kind != OptimizerKind::sgd) return;
  const double mu = cfg_.momentum;
  const double muk = std::pow(mu, static_cast<double>(k));
  const float move = static_cast<float>(cfg_.lr * mu * (1.0 - muk) / (1.0 - mu));
  const float decay = static_cast<float>(muk);
  const int64_t n = p.row_size();
  float* w = p.value.ptr() + row * n;
  float* m = s.m.ptr() + row * n;
  for (int64_t i = 0; i < n; ++i) {
    w[i] -= move * m[i];
    m[i] *= decay;
  }
}

void Optimizer::update_rows(Param& p, State& s, int64_t row_begin, int64_t row_end) {
  const int64_t n = p.row_size();
  const int64_t b = row_begin * n, e = row_end * n;
  float* w = p.value.ptr();
  const float* g = p.grad.ptr();
  const float lr = cfg_.lr;
  if (cfg_.weight_decay != 0.0f) {
    const float keep = 1.0f - lr * cfg_.weight_decay;
    for (int64_t i = b; i < e; ++i) w[i] *= keep;
  }
  if (cfg_.kind == OptimizerKind::sgd) {
    if (cfg_.momentum == 0.0f)
      cpu::sgd_update(lr, g + b, w + b, e - b);
    else
      cpu::sgd_momentum_update(lr, cfg_.momentum, g + b, s.m.ptr() + b, w + b, e - b);
    return;
  }
  const float b1 = cfg_.beta1, b2 = cfg_.beta2;
  const float c1 = 1.0f / (1.0f - static_cast<float>(std::pow(b1, static_cast<double>(t_))));
  const float c2 = 1.0f / (1.0f - static_cast<float>(std::pow(b2, static_cast<double>(t_))));
  cpu::adam_update(lr, b1, b2, c1, c2, cfg_.eps, g + b, s.m.ptr() + b, s.v.ptr() + b, w + b, e - b);
}

void Optimizer::step() {
  ++t_;
  for (size_t k = 0; k < params_.size(); ++k) {
    Param& p = *params_[k];
    State& s = state_[k];
    if (p.value.size() == 0) continue;
    if (!p.sparse) {
      update_rows(p, s, 0, p.value.shape.empty() ? 1 : p.value.shape[0]);
      continue;
    }
    for (int32_t row : p.touched_rows) {
      if (!s.last.empty()) {
        catch_up_row(p, s, row, t_ - 1);
        s.last[row] = t_;
      }
      update_rows(p, s, row, row + 1);
    }
  }
}

void Optimizer::flush() {
  for (size_t k = 0; k < params_.size(); ++k) {
    State& s = state_[k];
    for (int64_t row = 0; row < static_cast<int64_t>(s.last.size()); ++row)
      catch_up_row(*params_[k], s, row, t_);
  }
}

float ema_decay(float decay, int64_t updates) {
  const double warm = (1.0 + static_cast<double>(updates)) / (10.0 + static_cast<double>(updates));
  return std::min(decay, static_cast<float>(warm));
}

std::vector<Tensor> ema_start(const std::vector<Param*>& params) {
  std::vector<Tensor> shadow;
  shadow.reserve(params.size());
  for (const Param* p : params) shadow.push_back(p->value);
  return shadow;
}

void ema_update(std::vector<Tensor>& shadow, const std::vector<Param*>& params, float d) {
  if (shadow.size() != params.size())
    throw Error("ema_update: " + std::to_string(shadow.size()) + " shadows for " +
                std::to_string(params.size()) + " parameters");
  const float a = 1.0f - d;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& v = params[k]->value;
    Tensor& s = shadow[k];
    if (s.shape != v.shape)
      throw Error("ema_update: shadow of '" + params[k]->name + "' has shape " +
                  shape_string(s.shape) + ", the parameter " + shape_string(v.shape));
    const float* __restrict w = v.ptr();
    float* __restrict m = s.ptr();
    const int64_t n = v.size();
    for (int64_t i = 0; i < n; ++i) m[i] += a * (w[i] - m[i]);
  }
}

}  // namespace fff
