// Finite-difference gradient checks for the dense FF, leaf FFF (soft, region leak, hardening
// loss, hardened decisions) and neuron FFF layers. The scalar objective is L = sum(y * R) for a
// fixed random R (plus h * mean entropy where a hardening weight is used), accumulated in
// double over a float forward; derivatives use the 4-point stencil
// (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / (12 h).
//
// Error budget: a float forward has relative rounding ~1e-7 in each output, so L carries noise
// ~1e-6; the stencil multiplies it by 18 / (12 h). With h = 2^-7 that is ~2e-4, with h = 2^-8
// ~4e-4; the O(h^4) truncation error is far below. Tolerances are written next to each check
// as |fd - analytic| <= tol * max(1, |analytic|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/layers/activation.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"
#include "test_util.h"

namespace {

using fff::Activation;
using fff::Rng;
using fff_test::random_vec;

// Discrete state of a forward pass (ReLU signs, routing decisions, visited nodes). When a
// perturbation changes it, the stencil straddles a kink or a branch and is not a derivative.
using Pattern = std::vector<int32_t>;
// Runs the float forward at the current parameter values and returns the objective in double;
// writes the discrete state into *pattern.
using Objective = std::function<double(Pattern* pattern)>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The checks run thousands of tiny forwards: contexts of one thread avoid OpenMP start-up and
// spin costs on a busy 2-core machine (thread independence is tested in test_invariances).

double weighted_sum(const std::vector<float>& y, const std::vector<float>& R) {
  double s = 0.0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * R[i];
  return s;
}

void fill_nan(fff::Param& p) {
  std::fill(p.grad.data.begin(), p.grad.data.end(), kNaN);
}

enum class Kinks {
  fail,  // a perturbation that changes the discrete state is a test failure
  skip,  // such coordinates are skipped (ReLU): at least half must still be checked
};

// Compares analytic[i] with the 4-point finite difference of f in v[i] for every i < n with
// (only == nullptr || only(i)). Any NaN or infinity fails.
// Counts of checked and skipped (kink) coordinates, summed over the tensors of one test.
struct Stats {
  int64_t checked = 0, skipped = 0;
};

void check_grad(const std::string& what, float* v, const float* analytic, int64_t n, double h,
                double tol, const Objective& f, Kinks kinks,
                const std::function<bool(int64_t)>& only = nullptr, Stats* stats = nullptr) {
  Pattern base;
  const double f0 = f(&base);
  ASSERT_TRUE(std::isfinite(f0)) << what << ": objective not finite";
  const double steps[4] = {2 * h, h, -h, -2 * h};
  int64_t checked = 0, skipped = 0, bad = 0, worst_i = -1;
  double worst = 0.0, worst_fd = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (only && !only(i)) continue;
    const float saved = v[i];
    double vals[4];
    bool crossed = false;
    for (int s = 0; s < 4; ++s) {
      v[i] = saved + static_cast<float>(steps[s]);
      Pattern p;
      vals[s] = f(&p);
      if (p != base) crossed = true;
    }
    v[i] = saved;
    if (crossed) {
      ASSERT_EQ(kinks, Kinks::skip) << what << "[" << i << "]: perturbation by 2h = " << 2 * h
                                    << " changed the discrete state (branch or kink)";
      ++skipped;
      continue;
    }
    // Grouped so that four equal values give exactly 0.
    const double fd = (8 * (vals[1] - vals[2]) - (vals[0] - vals[3])) / (12 * h);
    ASSERT_TRUE(std::isfinite(fd)) << what << "[" << i << "]: finite difference not finite";
    ASSERT_TRUE(std::isfinite(analytic[i])) << what << "[" << i << "]: gradient not finite";
    const double a = analytic[i];
    const double err = std::fabs(fd - a) / std::max(1.0, std::fabs(a));
    if (err > tol) ++bad;
    if (err > worst || worst_i < 0) {
      worst = err;
      worst_i = i;
      worst_fd = fd;
    }
    ++checked;
  }
  if (stats) {
    stats->checked += checked;
    stats->skipped += skipped;
  }
  if (kinks == Kinks::skip && n > 0) {
    EXPECT_GT(checked, 0) << what << ": every coordinate on a kink";
  }
  if (worst_i < 0) return;  // nothing selected
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << checked
                    << " coordinates off; worst relative error " << worst << " at [" << worst_i
                    << "]: analytic " << analytic[worst_i] << " vs fd " << worst_fd << " (tol "
                    << tol << ")";
}

// z = x W + b for x: (B, in), W: (in, cols), b: (cols), in double. The tests compute hidden
// pre-activations and node logits themselves rather than reading a layer's context, whose
// internal layout is not part of the contract.
std::vector<double> affine(const std::vector<float>& x, int64_t B, int64_t in, const float* W,
                           const float* b, int64_t cols) {
  std::vector<double> z(static_cast<size_t>(B * cols));
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      double acc = b[j];
      for (int64_t k = 0; k < in; ++k) acc += static_cast<double>(x[r * in + k]) * W[k * cols + j];
      z[r * cols + j] = acc;
    }
  return z;
}

// Node logits z = N x + c, (B, n_nodes), in double.
std::vector<double> node_logits(const fff::LeafFFF& m, const std::vector<float>& x, int64_t B) {
  const int64_t n = m.cfg.n_nodes(), in = m.cfg.in;
  std::vector<double> z(static_cast<size_t>(B * n));
  for (int64_t r = 0; r < B; ++r)
    for (int64_t i = 0; i < n; ++i) {
      double acc = m.nodes_b.value.data[i];
      for (int64_t k = 0; k < in; ++k)
        acc += static_cast<double>(m.nodes_w.value.data[i * in + k]) * x[r * in + k];
      z[r * n + i] = acc;
    }
  return z;
}

std::vector<double> leaf_hidden(const fff::LeafFFF& m, const std::vector<float>& x, int64_t B) {
  return affine(x, B, m.cfg.in, m.w1.value.ptr(), m.b1.value.ptr(), m.cfg.training_width());
}

std::vector<double> dense_hidden(const fff::DenseFF& m, const std::vector<float>& x, int64_t B) {
  return affine(x, B, m.cfg.in, m.w1.value.ptr(), m.b1.value.ptr(), m.cfg.width);
}

// ReLU on/off state of the hidden units (empty for smooth activations).
Pattern relu_signs(Activation act, const std::vector<double>& z) {
  Pattern p;
  if (act != Activation::relu) return p;
  p.reserve(z.size());
  for (double v : z) p.push_back(v > 0.0);
  return p;
}

int64_t count_near_zero(const std::vector<double>& z, double margin) {
  return std::count_if(z.begin(), z.end(), [&](double v) { return std::fabs(v) < margin; });
}

const char* act_name(Activation a) {
  return fff::activation_name(a);
}

// ---------------------------------------------------------------------------------------------
// Dense FF

class DenseGrad : public testing::TestWithParam<Activation> {};

TEST_P(DenseGrad, AllParamsAndInputMatchFiniteDifferences) {
  fff::Context ectx(1);
  const Activation act = GetParam();
  const int64_t B = 4, in = 5, width = 7, out = 3;
  Rng rng(11);
  fff::DenseFF m = fff::make_dense_ff({in, width, out, act}, rng);
  auto x = random_vec(B * in, rng);
  const auto R = random_vec(B * out, rng);

  fff::DenseFFContext ctx;
  std::vector<float> y(B * out);
  fff::dense_ff_forward(ectx, m, x.data(), B, y.data(), &ctx);
  for (fff::Param* p : m.params()) fill_nan(*p);
  std::vector<float> dx(B * in, kNaN);
  fff::dense_ff_backward(ectx, m, x.data(), B, R.data(), ctx, dx.data());

  // Backward without dx gives the same parameter gradients.
  fff::DenseFF m2 = m;
  for (fff::Param* p : m2.params()) fill_nan(*p);
  fff::dense_ff_backward(ectx, m2, x.data(), B, R.data(), ctx, nullptr);
  for (size_t k = 0; k < m.params().size(); ++k)
    EXPECT_EQ(m.params()[k]->grad.data, m2.params()[k]->grad.data) << m.params()[k]->name;

  const Objective f = [&](Pattern* pat) {
    fff::DenseFFContext c;
    std::vector<float> yy(B * out);
    fff::dense_ff_forward(ectx, m, x.data(), B, yy.data(), &c);
    *pat = relu_signs(act, dense_hidden(m, x, B));
    return weighted_sum(yy, R);
  };
  const double h = 0x1p-7, tol = 1e-3;  // noise ~2e-4 (see top of file)
  const Kinks k = act == Activation::relu ? Kinks::skip : Kinks::fail;
  Stats stats;
  for (fff::Param* p : m.params()) {
    const auto g = p->grad.data;
    ASSERT_NO_FATAL_FAILURE(check_grad(std::string("dense ") + act_name(act) + " " + p->name,
                                       p->value.ptr(), g.data(), p->value.size(), h, tol, f, k,
                                       nullptr, &stats));
  }
  ASSERT_NO_FATAL_FAILURE(check_grad(std::string("dense ") + act_name(act) + " dx", x.data(),
                                     dx.data(), B * in, h, tol, f, k, nullptr, &stats));
  EXPECT_GE(stats.checked, 2 * stats.skipped) << "too many coordinates next to a ReLU kink";
}

INSTANTIATE_TEST_SUITE_P(Acts, DenseGrad,
                         testing::Values(Activation::relu, Activation::gelu, Activation::identity),
                         [](const auto& info) { return std::string(act_name(info.param)); });

// ---------------------------------------------------------------------------------------------
// Leaf FFF, soft training (optionally with region-leak flips and a hardening loss)

struct LeafCase {
  int64_t depth, leaf_width;
  Activation act;
  bool flips;
  float hardening;  // weight h of the mean entropy in the objective
  float balance;    // weight b of the leaf balance loss in the objective
};

std::string leaf_case_name(const LeafCase& c) {
  std::string name = "d";
  name.append(std::to_string(c.depth)).append("_l").append(std::to_string(c.leaf_width));
  name.append("_").append(act_name(c.act)).append(c.flips ? "_leak" : "");
  name.append(c.hardening > 0 ? "_hardloss" : "");
  return name.append(c.balance > 0 ? "_balance" : "");
}

class LeafSoftGrad : public testing::TestWithParam<LeafCase> {};

TEST_P(LeafSoftGrad, AllParamsAndInputMatchFiniteDifferences) {
  fff::Context ectx(1);
  const LeafCase lc = GetParam();
  const int64_t B = 4, in = 5, out = 3;
  const fff::LeafFFFConfig cfg{in, out, lc.depth, lc.leaf_width, lc.act};
  const double h = 0x1p-7, tol = 1e-3;  // noise ~2e-4 (see top of file)
  // For ReLU, among the first seeds take the one with the fewest hidden pre-activations within
  // 10 h of the kink (the remaining kink crossings are detected and skipped).
  auto draw = [&](uint64_t seed, fff::LeafFFF& m, std::vector<float>& x, std::vector<float>& R) {
    Rng rng(seed * 1000 + 100 + 7 * lc.depth + lc.leaf_width);
    m = fff::make_leaf_fff(cfg, rng);
    x = random_vec(B * in, rng);
    R = random_vec(B * out, rng);
  };
  uint64_t best_seed = 0;
  if (lc.act == Activation::relu) {
    int64_t best = -1;
    for (uint64_t seed = 0; seed < 200 && best != 0; ++seed) {
      fff::LeafFFF mm;
      std::vector<float> xx, rr;
      draw(seed, mm, xx, rr);
      const int64_t near = count_near_zero(leaf_hidden(mm, xx, B), 10 * h);
      if (best < 0 || near < best) best = near, best_seed = seed;
    }
  }
  fff::LeafFFF m;
  std::vector<float> x, R;
  draw(best_seed, m, x, R);
  Rng leak_rng(42);
  const std::vector<uint8_t> flips = fff::sample_region_leak(B, cfg.n_nodes(), 0.3f, leak_rng);
  fff::LeafTrainMode mode;
  if (lc.flips) mode.flips = &flips;
  mode.balance = lc.balance;

  fff::LeafFFFContext ctx;
  std::vector<float> y(B * out);
  fff::leaf_fff_forward_train(ectx, m, x.data(), B, y.data(), mode, ctx);
  for (fff::Param* p : m.params()) fill_nan(*p);
  std::vector<float> dx(B * in, kNaN);
  fff::leaf_fff_backward_train(ectx, m, x.data(), B, R.data(), lc.hardening, ctx, dx.data());

  fff::LeafFFF m2 = m;
  for (fff::Param* p : m2.params()) fill_nan(*p);
  fff::leaf_fff_backward_train(ectx, m2, x.data(), B, R.data(), lc.hardening, ctx, nullptr);
  for (size_t k = 0; k < m.params().size(); ++k)
    EXPECT_EQ(m.params()[k]->grad.data, m2.params()[k]->grad.data) << m.params()[k]->name;

  const Objective f = [&](Pattern* pat) {
    fff::LeafFFFContext c;
    std::vector<float> yy(B * out);
    const double ent = fff::leaf_fff_forward_train(ectx, m, x.data(), B, yy.data(), mode, c);
    *pat = relu_signs(lc.act, leaf_hidden(m, x, B));
    return weighted_sum(yy, R) + lc.hardening * ent + lc.balance * c.balance_loss;
  };
  const Kinks k = lc.act == Activation::relu ? Kinks::skip : Kinks::fail;
  Stats stats;
  const std::string tag = "leaf " + leaf_case_name(lc) + " ";
  for (fff::Param* p : m.params()) {
    const auto g = p->grad.data;
    ASSERT_NO_FATAL_FAILURE(check_grad(tag + p->name, p->value.ptr(), g.data(), p->value.size(), h,
                                       tol, f, k, nullptr, &stats));
  }
  ASSERT_NO_FATAL_FAILURE(
      check_grad(tag + "dx", x.data(), dx.data(), B * in, h, tol, f, k, nullptr, &stats));
  EXPECT_GE(stats.checked, 2 * stats.skipped) << "too many coordinates next to a ReLU kink";
}

std::vector<LeafCase> leaf_soft_cases() {
  std::vector<LeafCase> cs;
  for (int64_t d : {0, 1, 3})
    for (int64_t lw : {1, 3})
      for (Activation a : {Activation::relu, Activation::gelu, Activation::identity})
        for (bool fl : {false, true})
          for (float hw : {0.0f, 3.0f})
            for (float bw : {0.0f, 2.0f}) cs.push_back({d, lw, a, fl, hw, bw});
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Cases, LeafSoftGrad, testing::ValuesIn(leaf_soft_cases()),
                         [](const auto& info) { return leaf_case_name(info.param); });

TEST(LeafSoftGrad, HardeningLossAloneMatchesFiniteDifferences) {
  fff::Context ectx(1);
  // With R = 0 the objective is the hardening term only: checks its node gradient in isolation
  // (weight 3, as in the paper), and that it leaves the leaf parameters at exactly zero.
  const int64_t B = 5, in = 4, out = 2;
  const fff::LeafFFFConfig cfg{in, out, 2, 2, Activation::gelu};
  Rng rng(5);
  fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
  auto x = random_vec(B * in, rng);
  const std::vector<float> R(B * out, 0.0f);
  const float hw = 3.0f;
  fff::LeafFFFContext ctx;
  std::vector<float> y(B * out), dx(B * in);
  const double ent = fff::leaf_fff_forward_train(ectx, m, x.data(), B, y.data(), {}, ctx);
  // The returned value is the mean binary entropy of sigmoid(z) over (sample, node).
  double expect = 0.0;
  const auto z = node_logits(m, x, B);
  for (double v : z) expect += fff::binary_entropy(1.0 / (1.0 + std::exp(-v)));
  expect /= static_cast<double>(z.size());
  EXPECT_NEAR(ent, expect, 1e-6);
  fff::leaf_fff_backward_train(ectx, m, x.data(), B, R.data(), hw, ctx, dx.data());
  for (fff::Param* p : {&m.w1, &m.b1, &m.w2, &m.b2})
    for (float g : p->grad.data) EXPECT_EQ(g, 0.0f) << p->name;
  const Objective f = [&](Pattern*) {
    fff::LeafFFFContext c;
    std::vector<float> yy(B * out);
    return hw * fff::leaf_fff_forward_train(ectx, m, x.data(), B, yy.data(), {}, c);
  };
  const double h = 0x1p-7, tol = 1e-4;  // entropy only: noise ~1e-7 / h ~ 2e-5
  const auto gw = m.nodes_w.grad.data, gb = m.nodes_b.grad.data;
  ASSERT_NO_FATAL_FAILURE(check_grad("entropy nodes_w", m.nodes_w.value.ptr(), gw.data(),
                                     m.nodes_w.value.size(), h, tol, f, Kinks::fail));
  ASSERT_NO_FATAL_FAILURE(check_grad("entropy nodes_b", m.nodes_b.value.ptr(), gb.data(),
                                     m.nodes_b.value.size(), h, tol, f, Kinks::fail));
  ASSERT_NO_FATAL_FAILURE(
      check_grad("entropy dx", x.data(), dx.data(), B * in, h, tol, f, Kinks::fail));
}

TEST(LeafSoftGrad, BalanceLossAloneMatchesFiniteDifferences) {
  fff::Context ectx(1);
  // With R = 0 and h = 0 the objective is the balance term only: its value against the leaf
  // masses computed here from the node logits, its node gradient against finite differences,
  // and exact zeros for the leaf parameters.
  const int64_t B = 7, in = 4, out = 2, depth = 3;
  const fff::LeafFFFConfig cfg{in, out, depth, 2, Activation::relu};
  Rng rng(11);
  fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
  auto x = random_vec(B * in, rng);
  const std::vector<float> R(B * out, 0.0f);
  fff::LeafTrainMode mode;
  mode.balance = 2.0f;
  fff::LeafFFFContext ctx;
  std::vector<float> y(B * out), dx(B * in);
  fff::leaf_fff_forward_train(ectx, m, x.data(), B, y.data(), mode, ctx);

  const int64_t n = cfg.n_nodes(), L = cfg.n_leaves();
  const auto z = node_logits(m, x, B);
  std::vector<double> mean(static_cast<size_t>(L), 0.0);
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < L; ++j) {  // leaf j's path: bit (depth - 1 - level) of j, 1 = right
      double mass = 1.0;
      int64_t node = 0;
      for (int64_t level = 0; level < depth; ++level) {
        const bool right = (j >> (depth - 1 - level)) & 1;
        const double p = 1.0 / (1.0 + std::exp(-z[r * n + node]));
        mass *= right ? p : 1.0 - p;
        node = 2 * node + 1 + (right ? 1 : 0);
      }
      mean[j] += mass / B;
    }
  double expect = -1.0, total = 0.0;
  for (double v : mean) expect += static_cast<double>(L) * v * v, total += v;
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_GT(expect, 0.0);  // random nodes do not split a batch of 7 evenly
  EXPECT_NEAR(ctx.balance_loss, expect, 1e-6);

  fff::leaf_fff_backward_train(ectx, m, x.data(), B, R.data(), 0.0f, ctx, dx.data());
  for (fff::Param* p : {&m.w1, &m.b1, &m.w2, &m.b2})
    for (float g : p->grad.data) EXPECT_EQ(g, 0.0f) << p->name;
  const Objective f = [&](Pattern*) {
    fff::LeafFFFContext c;
    std::vector<float> yy(B * out);
    fff::leaf_fff_forward_train(ectx, m, x.data(), B, yy.data(), mode, c);
    return mode.balance * c.balance_loss;
  };
  const double h = 0x1p-7, tol = 1e-4;
  const auto gw = m.nodes_w.grad.data, gb = m.nodes_b.grad.data;
  double gnorm = 0.0;
  for (float g : gw) gnorm += std::fabs(g);
  EXPECT_GT(gnorm, 1e-3);  // the term does reach the nodes
  ASSERT_NO_FATAL_FAILURE(check_grad("balance nodes_w", m.nodes_w.value.ptr(), gw.data(),
                                     m.nodes_w.value.size(), h, tol, f, Kinks::fail));
  ASSERT_NO_FATAL_FAILURE(check_grad("balance nodes_b", m.nodes_b.value.ptr(), gb.data(),
                                     m.nodes_b.value.size(), h, tol, f, Kinks::fail));
  ASSERT_NO_FATAL_FAILURE(
      check_grad("balance dx", x.data(), dx.data(), B * in, h, tol, f, Kinks::fail));
}

// ---------------------------------------------------------------------------------------------
// Leaf FFF, hardened decisions: node gradients exactly zero, the rest matches the finite
// differences of sum(y * R) (the routing is piecewise constant; inputs are drawn so that every
// node logit is farther than 10 h from 0, so no perturbation changes a decision).

struct LeafHardCase {
  int64_t depth, leaf_width;
  Activation act;
  bool flips;
};

std::string leaf_hard_name(const LeafHardCase& c) {
  std::string name = "d";
  name.append(std::to_string(c.depth)).append("_l").append(std::to_string(c.leaf_width));
  return name.append("_").append(act_name(c.act)).append(c.flips ? "_leak" : "");
}

class LeafHardGrad : public testing::TestWithParam<LeafHardCase> {};

TEST_P(LeafHardGrad, NodeGradsZeroOthersMatchFiniteDifferences) {
  fff::Context ectx(1);
  const LeafHardCase lc = GetParam();
  const int64_t B = 4, in = 5, out = 3;
  const fff::LeafFFFConfig cfg{in, out, lc.depth, lc.leaf_width, lc.act};
  const double h = 0x1p-8;  // smaller step so that the 10 h margin is easy to meet
  const double tol = 2e-3;  // noise ~4e-4 at this h (see top of file)

  // Re-draw until every node logit is farther than 10 h from zero.
  fff::LeafFFF m;
  std::vector<float> x, R;
  bool found = false;
  for (uint64_t seed = 1; seed < 5000 && !found; ++seed) {
    Rng rng(seed * 7919 + static_cast<uint64_t>(lc.depth));
    m = fff::make_leaf_fff(cfg, rng);
    x = random_vec(B * in, rng);
    R = random_vec(B * out, rng);
    found = count_near_zero(node_logits(m, x, B), 10 * h) == 0;
  }
  ASSERT_TRUE(found) << "no seed with all node logits away from 0";

  Rng leak_rng(43);
  const std::vector<uint8_t> flips = fff::sample_region_leak(B, cfg.n_nodes(), 0.3f, leak_rng);
  fff::LeafTrainMode mode;
  mode.hardened = true;
  if (lc.flips) mode.flips = &flips;

  for (float hardening : {0.0f, 3.0f}) {
    fff::LeafFFFContext ctx;
    std::vector<float> y(B * out);
    fff::leaf_fff_forward_train(ectx, m, x.data(), B, y.data(), mode, ctx);
    for (fff::Param* p : m.params()) fill_nan(*p);
    std::vector<float> dx(B * in, kNaN);
    fff::leaf_fff_backward_train(ectx, m, x.data(), B, R.data(), hardening, ctx, dx.data());
    for (float g : m.nodes_w.grad.data) ASSERT_EQ(g, 0.0f) << "hardened nodes_w grad";
    for (float g : m.nodes_b.grad.data) ASSERT_EQ(g, 0.0f) << "hardened nodes_b grad";

    const Objective f = [&](Pattern* pat) {
      fff::LeafFFFContext c;
      std::vector<float> yy(B * out);
      fff::leaf_fff_forward_train(ectx, m, x.data(), B, yy.data(), mode, c);
      *pat = relu_signs(lc.act, leaf_hidden(m, x, B));
      for (double z : node_logits(m, x, B)) pat->push_back(z >= 0.0 ? 2 : 3);
      return weighted_sum(yy, R);
    };
    const Kinks k = lc.act == Activation::relu ? Kinks::skip : Kinks::fail;
    Stats stats;
    const std::string tag = "hardened leaf " + leaf_hard_name(lc) + " ";
    for (fff::Param* p : m.params()) {
      const auto g = p->grad.data;
      ASSERT_NO_FATAL_FAILURE(check_grad(tag + p->name, p->value.ptr(), g.data(), p->value.size(),
                                         h, tol, f, k, nullptr, &stats));
    }
    ASSERT_NO_FATAL_FAILURE(
        check_grad(tag + "dx", x.data(), dx.data(), B * in, h, tol, f, k, nullptr, &stats));
    EXPECT_GE(stats.checked, 2 * stats.skipped) << "too many coordinates next to a ReLU kink";
  }
}

std::vector<LeafHardCase> leaf_hard_cases() {
  std::vector<LeafHardCase> cs;
  for (int64_t d : {0, 1, 3})
    for (int64_t lw : {1, 3})
      for (Activation a : {Activation::relu, Activation::gelu, Activation::identity})
        for (bool fl : {false, true})
          if (d > 0 || !fl) cs.push_back({d, lw, a, fl});
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Cases, LeafHardGrad, testing::ValuesIn(leaf_hard_cases()),
                         [](const auto& info) { return leaf_hard_name(info.param); });

// ---------------------------------------------------------------------------------------------
// Neuron FFF: only path rows get gradients; the branch choice is not differentiated. Inputs are
// drawn so that every |z| on the path exceeds 10 h, so no single perturbation flips a branch.

struct NeuronCase {
  int64_t trees, depth;
  Activation act;
  bool bias;
};

std::string neuron_name(const NeuronCase& c) {
  std::string name = "K";
  name.append(std::to_string(c.trees)).append("_D").append(std::to_string(c.depth));
  return name.append("_").append(act_name(c.act)).append(c.bias ? "_bias" : "_nobias");
}

class NeuronGrad : public testing::TestWithParam<NeuronCase> {};

TEST_P(NeuronGrad, PathRowsMatchFiniteDifferencesOthersUntouched) {
  fff::Context ectx(1);
  const NeuronCase nc = GetParam();
  const int64_t B = 3, in = 5, out = 3;
  fff::NeuronFFFConfig cfg;
  cfg.in = in;
  cfg.out = out;
  cfg.trees = nc.trees;
  cfg.depth = nc.depth;
  cfg.act = nc.act;
  cfg.output_bias = nc.bias;
  const double h = 0x1p-8;  // 10 h margin ~0.04
  const double tol = 2e-3;  // noise ~4e-4 at this h (see top of file)

  fff::NeuronFFF m;
  std::vector<float> x, R;
  fff::NeuronFFFContext ctx;
  bool found = false;
  for (uint64_t seed = 1; seed < 5000 && !found; ++seed) {
    Rng rng(seed * 104729 + static_cast<uint64_t>(nc.trees * 16 + nc.depth));
    m = fff::make_neuron_fff(cfg, rng);
    x = random_vec(B * in, rng);
    R = random_vec(B * out, rng);
    std::vector<float> yy(B * out);
    fff::neuron_fff_forward(ectx, m, x.data(), B, yy.data(), &ctx);
    found = std::all_of(ctx.z.begin(), ctx.z.end(), [&](float z) { return std::fabs(z) > 10 * h; });
  }
  ASSERT_TRUE(found) << "no seed with all path logits away from 0";
  ASSERT_EQ(ctx.node.size(), static_cast<size_t>(B * cfg.path_length()));

  for (fff::Param* p : m.params()) fill_nan(*p);
  std::vector<float> dx(B * in, kNaN);
  fff::neuron_fff_backward(ectx, m, x.data(), B, R.data(), ctx, dx.data());

  // touched_rows: exactly the set of visited nodes, the same list for w1, b1 and w2.
  const std::set<int32_t> visited(ctx.node.begin(), ctx.node.end());
  const std::set<int32_t> touched(m.w1.touched_rows.begin(), m.w1.touched_rows.end());
  EXPECT_EQ(touched, visited);
  EXPECT_EQ(m.w1.touched_rows.size(), touched.size()) << "duplicate touched rows";
  EXPECT_EQ(m.b1.touched_rows, m.w1.touched_rows);
  EXPECT_EQ(m.w2.touched_rows, m.w1.touched_rows);
  EXPECT_TRUE(m.w1.sparse && m.b1.sparse && m.w2.sparse);
  // Rows off every path are not written (they keep the NaN put there); path rows are finite.
  for (fff::Param* p : {&m.w1, &m.b1, &m.w2}) {
    const int64_t rs = p->row_size();
    for (int64_t row = 0; row < p->value.shape[0]; ++row)
      for (int64_t k = 0; k < rs; ++k) {
        const float g = p->grad.data[row * rs + k];
        if (touched.count(static_cast<int32_t>(row)))
          ASSERT_TRUE(std::isfinite(g)) << p->name << " row " << row;
        else
          ASSERT_TRUE(std::isnan(g)) << p->name << " row " << row << " written but not touched";
      }
  }

  const Objective f = [&](Pattern* pat) {
    fff::NeuronFFFContext c;
    std::vector<float> yy(B * out);
    fff::neuron_fff_forward(ectx, m, x.data(), B, yy.data(), &c);
    pat->assign(c.node.begin(), c.node.end());
    return weighted_sum(yy, R);
  };
  const std::string tag = "neuron " + neuron_name(nc) + " ";
  for (fff::Param* p : {&m.w1, &m.b1, &m.w2}) {
    const int64_t rs = p->row_size();
    const auto g = p->grad.data;
    auto on_path = [&](int64_t i) { return touched.count(static_cast<int32_t>(i / rs)) > 0; };
    ASSERT_NO_FATAL_FAILURE(check_grad(tag + p->name + " (touched rows)", p->value.ptr(), g.data(),
                                       p->value.size(), h, tol, f, Kinks::fail, on_path));
    // Rows off every path: the objective does not depend on them at all (FD exactly 0).
    const std::vector<float> zeros(g.size(), 0.0f);
    ASSERT_NO_FATAL_FAILURE(check_grad(tag + p->name + " (untouched rows)", p->value.ptr(),
                                       zeros.data(), p->value.size(), h, 0.0, f, Kinks::fail,
                                       [&](int64_t i) { return !on_path(i); }));
  }
  if (nc.bias) {
    const auto g = m.b.grad.data;
    ASSERT_NO_FATAL_FAILURE(
        check_grad(tag + "b", m.b.value.ptr(), g.data(), m.b.value.size(), h, tol, f, Kinks::fail));
  } else {
    EXPECT_EQ(m.b.value.size(), 0);
    EXPECT_EQ(m.params().size(), 3u);
  }
  ASSERT_NO_FATAL_FAILURE(
      check_grad(tag + "dx", x.data(), dx.data(), B * in, h, tol, f, Kinks::fail));

  // dx == nullptr gives the same parameter gradients.
  fff::NeuronFFF m2 = m;
  for (fff::Param* p : m2.params()) fill_nan(*p);
  fff::neuron_fff_backward(ectx, m2, x.data(), B, R.data(), ctx, nullptr);
  for (fff::Param* p : {&m.w1, &m.b1, &m.w2}) {
    fff::Param* q = p == &m.w1 ? &m2.w1 : p == &m.b1 ? &m2.b1 : &m2.w2;
    const int64_t rs = p->row_size();
    for (int32_t row : p->touched_rows)
      for (int64_t k = 0; k < rs; ++k)
        ASSERT_EQ(p->grad.data[row * rs + k], q->grad.data[row * rs + k]) << p->name;
  }
}

std::vector<NeuronCase> neuron_cases() {
  std::vector<NeuronCase> cs;
  for (int64_t K : {1, 2})
    for (int64_t D : {0, 1, 3})
      for (Activation a : {Activation::gelu, Activation::identity})
        for (bool bias : {true, false}) cs.push_back({K, D, a, bias});
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Cases, NeuronGrad, testing::ValuesIn(neuron_cases()),
                         [](const auto& info) { return neuron_name(info.param); });

TEST(NeuronGradTouched, SecondBackwardReplacesTouchedRows) {
  fff::Context ectx(1);
  // touched_rows is this step's list, not an accumulation over steps.
  fff::NeuronFFFConfig cfg;
  cfg.in = 4;
  cfg.out = 2;
  cfg.trees = 2;
  cfg.depth = 4;
  Rng rng(9);
  fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
  for (int step = 0; step < 3; ++step) {
    const int64_t B = 1 + step;
    const auto x = random_vec(B * cfg.in, rng);
    const auto dy = random_vec(B * cfg.out, rng);
    std::vector<float> y(B * cfg.out);
    fff::NeuronFFFContext ctx;
    fff::neuron_fff_forward(ectx, m, x.data(), B, y.data(), &ctx);
    fff::neuron_fff_backward(ectx, m, x.data(), B, dy.data(), ctx, nullptr);
    const std::set<int32_t> visited(ctx.node.begin(), ctx.node.end());
    EXPECT_EQ(std::set<int32_t>(m.w1.touched_rows.begin(), m.w1.touched_rows.end()), visited);
    EXPECT_EQ(m.w1.touched_rows.size(), visited.size());
    // The output bias gradient is the column sum of dy (overwritten each step).
    for (int64_t o = 0; o < cfg.out; ++o) {
      double s = 0;
      for (int64_t r = 0; r < B; ++r) s += dy[r * cfg.out + o];
      EXPECT_NEAR(m.b.grad.data[o], s, 1e-6);
    }
  }
}

}  // namespace
