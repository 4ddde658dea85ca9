// Tests for the optimizers: plain SGD, SGD with momentum and Adam against hand-computed steps;
// lazy row-sparse SGD momentum equals dense momentum with zero gradients on untouched rows;
// lazy Adam leaves untouched rows alone; bad settings are rejected with fff::Error; the moving
// average of the weights (ema_*) against a naive reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/param.h"
#include "fff/training/optimizer.h"

namespace {

using fff::Optimizer;
using fff::OptimizerConfig;
using fff::OptimizerKind;
using fff::Param;

OptimizerConfig sgd(float lr, float momentum = 0.0f) {
  OptimizerConfig c;
  c.kind = OptimizerKind::sgd;
  c.lr = lr;
  c.momentum = momentum;
  return c;
}

OptimizerConfig adam(float lr) {
  OptimizerConfig c;
  c.kind = OptimizerKind::adam;
  c.lr = lr;
  return c;
}

void fill_random(fff::Tensor& t, fff::Rng& rng, float bound = 1.0f) {
  for (float& v : t.data) v = rng.uniform(-bound, bound);
}

// |a - b| <= tol * max(1, |b|), and a finite.
::testing::AssertionResult close_rel(float a, double b, double tol) {
  if (std::isfinite(a) && std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << a << " vs expected " << b << " (diff " << (a - b) << ", tol " << tol << ")";
}

TEST(Optimizer, ParseAndName) {
  EXPECT_EQ(fff::parse_optimizer("sgd"), OptimizerKind::sgd);
  EXPECT_EQ(fff::parse_optimizer("adam"), OptimizerKind::adam);
  EXPECT_STREQ(fff::optimizer_name(OptimizerKind::sgd), "sgd");
  EXPECT_STREQ(fff::optimizer_name(OptimizerKind::adam), "adam");
  for (const char* bad : {"rmsprop", "", "SGD", "adamw"}) {
    SCOPED_TRACE(bad);
    try {
      fff::parse_optimizer(bad);
      ADD_FAILURE() << "no error";
    } catch (const fff::Error& e) {
      if (*bad) {
        EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
      }
    }
  }
}

TEST(Optimizer, RejectsBadSettings) {
  Param p("w", {2, 3});
  for (float lr : {0.0f, -0.1f, std::numeric_limits<float>::quiet_NaN(),
                   std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE(lr);
    EXPECT_THROW(Optimizer(sgd(lr), {&p}), fff::Error);
    EXPECT_THROW(Optimizer(adam(lr), {&p}), fff::Error);
  }
  // NaN too: it once passed the range check and segfaulted in the first step (no momentum buffer).
  for (float mu : {1.0f, 1.5f, -0.1f, std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(mu);
    EXPECT_THROW(Optimizer(sgd(0.1f, mu), {&p}), fff::Error);
  }
  // Messages name the field and its value.
  try {
    Optimizer(sgd(-0.5f), {&p});
    ADD_FAILURE() << "no error";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("OptimizerConfig.lr = -0.5:"), std::string::npos)
        << e.what();
  }
  try {
    Optimizer(sgd(0.1f, 1.5f), {&p});
    ADD_FAILURE() << "no error";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("OptimizerConfig.momentum = 1.5:"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(Optimizer(sgd(0.1f, 0.0f), {&p}));
  EXPECT_NO_THROW(Optimizer(sgd(0.1f, 0.99f), {&p}));
}

// w -= lr * g, exactly: the one float expression, rounded either after each operation or as one
// fused multiply-add (the compiler may contract it).
TEST(Optimizer, SgdWithoutMomentumIsExact) {
  fff::Rng rng(5);
  Param a("a", {4, 7}), b("b", {5});
  const float lr = 0.37f;
  Optimizer opt(sgd(lr), {&a, &b});
  for (int step = 0; step < 3; ++step) {
    for (Param* p : {&a, &b}) {
      fill_random(p->value, rng, 2.0f);
      fill_random(p->grad, rng, 3.0f);
    }
    const fff::Tensor a0 = a.value, b0 = b.value;
    opt.step();
    for (auto [p, w0] : {std::pair<Param*, const fff::Tensor*>{&a, &a0}, {&b, &b0}}) {
      for (size_t i = 0; i < p->value.data.size(); ++i) {
        const float g = p->grad.data[i], w = w0->data[i];
        volatile float prod = lr * g;
        const float separate = w - prod;
        const float fused = std::fma(-lr, g, w);
        const float got = p->value.data[i];
        EXPECT_TRUE(got == separate || got == fused)
            << p->name << "[" << i << "]: " << got << " vs " << separate;
      }
    }
  }
  EXPECT_EQ(opt.steps(), 3);
}

TEST(Optimizer, SparseSgdWithoutMomentumTouchesOnlyListedRows) {
  fff::Rng rng(6);
  Param p("w", {6, 3}, /*sparse=*/true);
  fill_random(p.value, rng);
  fill_random(p.grad, rng);  // stale values everywhere
  const fff::Tensor w0 = p.value;
  p.touched_rows = {1, 4};
  Optimizer opt(sgd(0.5f), {&p});
  opt.step();
  opt.flush();
  for (int64_t r = 0; r < 6; ++r) {
    for (int64_t j = 0; j < 3; ++j) {
      const size_t i = static_cast<size_t>(r * 3 + j);
      if (r == 1 || r == 4) {
        EXPECT_TRUE(close_rel(p.value.data[i], w0.data[i] - 0.5 * p.grad.data[i], 1e-6));
      } else {
        EXPECT_EQ(p.value.data[i], w0.data[i]) << "untouched row " << r;
      }
    }
  }
}

// Hand-computed: v = mu v + g; w -= lr v with lr = 0.1, mu = 0.9.
//   w = (1, -2), g1 = (0.5, 1), g2 = (-1, 1), g3 = (2, 1)
//   step 1: v = (0.5, 1)       w = (0.95, -2.1)
//   step 2: v = (-0.55, 1.9)   w = (1.005, -2.29)
//   step 3: v = (1.505, 2.71)  w = (0.8545, -2.561)
TEST(Optimizer, SgdMomentumDenseThreeSteps) {
  Param p("w", {2});
  p.value.data = {1.0f, -2.0f};
  Optimizer opt(sgd(0.1f, 0.9f), {&p});
  const float grads[3][2] = {{0.5f, 1.0f}, {-1.0f, 1.0f}, {2.0f, 1.0f}};
  const double expected[3][2] = {{0.95, -2.1}, {1.005, -2.29}, {0.8545, -2.561}};
  for (int s = 0; s < 3; ++s) {
    p.grad.data = {grads[s][0], grads[s][1]};
    opt.step();
    opt.flush();  // a no-op for dense parameters
    for (int i = 0; i < 2; ++i)
      EXPECT_TRUE(close_rel(p.value.data[i], expected[s][i], 1e-6)) << "step " << s + 1;
  }
}

// The lazy row-sparse momentum (decay of missed steps applied in closed form on the next touch
// or by flush) equals dense momentum where untouched rows get a zero gradient.
TEST(Optimizer, SparseMomentumMatchesDense) {
  const int64_t R = 17, C = 5;
  const float lr = 0.05f, mu = 0.9f;
  fff::Rng rng(77);
  Param dense("w", {R, C}, false), lazy("w", {R, C}, true);
  fill_random(dense.value, rng);
  lazy.value = dense.value;
  Optimizer od(sgd(lr, mu), {&dense});
  Optimizer ol(sgd(lr, mu), {&lazy});
  auto compare = [&](int step) {
    for (size_t i = 0; i < dense.value.data.size(); ++i)
      ASSERT_TRUE(close_rel(lazy.value.data[i], dense.value.data[i], 1e-6))
          << "after step " << step << ", element " << i << " (row " << i / C << ")";
  };
  int step = 0;
  for (int phase = 0; phase < 2; ++phase) {
    for (int s = 0; s < 20; ++s, ++step) {
      // A random set of touched rows: sometimes none, sometimes all, usually a few.
      std::vector<int32_t> touched;
      const float density = s % 7 == 3 ? 0.0f : (s % 7 == 5 ? 1.0f : 0.25f);
      for (int32_t r = 0; r < R; ++r)
        if (rng.uniform() < density) touched.push_back(r);
      dense.grad.zero();
      // Stale junk in the lazy gradient's untouched rows must be ignored.
      for (float& v : lazy.grad.data) v = 1000.0f;
      for (int32_t r : touched) {
        for (int64_t j = 0; j < C; ++j) {
          const float g = rng.uniform(-1.0f, 1.0f);
          dense.grad.row(r)[j] = g;
          lazy.grad.row(r)[j] = g;
        }
      }
      lazy.touched_rows = touched;
      od.step();
      ol.step();
    }
    ol.flush();
    compare(step);
    ol.flush();  // flushing twice changes nothing
    compare(step);
    // Then the second phase continues from the flushed state.
  }
  // A row touched at the very end after a long pause (catch-up inside step, not flush).
  dense.grad.zero();
  for (float& v : lazy.grad.data) v = 1000.0f;
  for (int64_t j = 0; j < C; ++j) dense.grad.row(3)[j] = lazy.grad.row(3)[j] = 0.5f;
  lazy.touched_rows = {3};
  od.step();
  ol.step();
  for (int64_t j = 0; j < C; ++j)
    EXPECT_TRUE(close_rel(lazy.value.row(3)[j], dense.value.row(3)[j], 1e-6));
  ol.flush();
  compare(step + 1);
}

// Hand-computed Adam (lr 0.1, beta1 0.9, beta2 0.999, eps 1e-8) with bias correction:
//   w = 1, g = 0.5 then -0.25:
//     step 1: m = 0.05, v = 0.00025, m^ = 0.5, v^ = 0.25, w = 1 - 0.1 * 0.5 / 0.5 = 0.9
//     step 2: m = 0.02, v = 0.00031225, m^ = 0.02 / 0.19, v^ = 0.00031225 / 0.001999,
//             w = 0.9 - 0.1 * 0.1052632 / 0.3952254 = 0.8733663
//   w = 3, g = -2 then -2: m^ = -2, v^ = 4 at both steps, so w = 3.1 then 3.2.
TEST(Optimizer, AdamDenseTwoSteps) {
  Param p("w", {2});
  p.value.data = {1.0f, 3.0f};
  Optimizer opt(adam(0.1f), {&p});
  const float grads[2][2] = {{0.5f, -2.0f}, {-0.25f, -2.0f}};
  const double expected[2][2] = {{0.900000002, 3.0999999995}, {0.8733662987, 3.199999999}};
  for (int s = 0; s < 2; ++s) {
    p.grad.data = {grads[s][0], grads[s][1]};
    opt.step();
    for (int i = 0; i < 2; ++i)
      EXPECT_TRUE(close_rel(p.value.data[i], expected[s][i], 1e-6)) << "step " << s + 1;
  }
}

// AdamW: w <- w (1 - lr wd), then Adam's step, recomputed here in double.
TEST(Optimizer, DecoupledWeightDecayAdamAndSgd) {
  const float lr = 0.1f, wd = 0.5f;
  Param p("w", {3});
  p.value.data = {1.0f, -2.0f, 0.25f};
  OptimizerConfig c = adam(lr);
  c.weight_decay = wd;
  Optimizer opt(c, {&p});
  std::vector<double> w = {1.0, -2.0, 0.25}, m(3, 0.0), v(3, 0.0);
  const float grads[2][3] = {{0.5f, -1.0f, 0.0f}, {0.25f, 2.0f, -0.5f}};
  for (int t = 1; t <= 2; ++t) {
    for (int i = 0; i < 3; ++i) p.grad.data[i] = grads[t - 1][i];
    opt.step();
    for (int i = 0; i < 3; ++i) {
      const double g = grads[t - 1][i];
      w[i] *= 1.0 - static_cast<double>(lr) * wd;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double mh = m[i] / (1.0 - std::pow(0.9, t)), vh = v[i] / (1.0 - std::pow(0.999, t));
      w[i] -= lr * mh / (std::sqrt(vh) + 1e-8);
      EXPECT_TRUE(close_rel(p.value.data[i], w[i], 1e-6)) << "step " << t << " [" << i << "]";
    }
  }
  // SGD with a zero gradient: only the decay.
  Param q("q", {2});
  q.value.data = {4.0f, -8.0f};
  OptimizerConfig cs = sgd(lr);
  cs.weight_decay = wd;
  Optimizer so(cs, {&q});
  so.step();
  EXPECT_FLOAT_EQ(q.value.data[0], 4.0f * 0.95f);
  EXPECT_FLOAT_EQ(q.value.data[1], -8.0f * 0.95f);
  // Refused: negative or NaN, and on row-sparse parameters (untouched rows would not decay).
  for (float bad : {-0.1f, std::numeric_limits<float>::quiet_NaN()}) {
    OptimizerConfig b = adam(lr);
    b.weight_decay = bad;
    EXPECT_THROW(Optimizer(b, {&p}), fff::Error);
  }
  Param sp("emb", {4, 2});
  sp.sparse = true;
  try {
    Optimizer(c, {&sp});
    ADD_FAILURE() << "no error";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("emb"), std::string::npos) << e.what();
  }
}

// Lazy Adam: rows not touched keep their weights; a row touched at every step follows dense
// Adam exactly as a dense parameter would.
TEST(Optimizer, LazyAdamUpdatesOnlyTouchedRows) {
  const int64_t R = 4, C = 3;
  fff::Rng rng(9);
  Param dense("w", {R, C}), lazy("w", {R, C}, true);
  fill_random(dense.value, rng);
  lazy.value = dense.value;
  const fff::Tensor w0 = dense.value;
  Optimizer od(adam(0.01f), {&dense});
  Optimizer ol(adam(0.01f), {&lazy});
  for (int s = 0; s < 5; ++s) {
    fill_random(dense.grad, rng);
    lazy.grad = dense.grad;
    lazy.touched_rows = {2};
    od.step();
    ol.step();
  }
  ol.flush();
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < C; ++j) {
      if (r == 2) {
        EXPECT_TRUE(close_rel(lazy.value.row(r)[j], dense.value.row(r)[j], 1e-6));
      } else {
        EXPECT_EQ(lazy.value.row(r)[j], w0.row(r)[j]);
      }
    }
  }
}

// The warm-up of the average's decay: min(decay, (1 + t) / (10 + t)) after t updates.
TEST(Ema, DecayWarmsUpAsTensorFlowsNumUpdates) {
  EXPECT_FLOAT_EQ(fff::ema_decay(0.999f, 0), 0.1f);
  EXPECT_FLOAT_EQ(fff::ema_decay(0.999f, 1), 2.0f / 11.0f);
  EXPECT_FLOAT_EQ(fff::ema_decay(0.999f, 90), 0.91f);
  EXPECT_FLOAT_EQ(fff::ema_decay(0.9f, 90), 0.9f);        // capped by the decay asked for
  EXPECT_FLOAT_EQ(fff::ema_decay(0.999f, 8990), 0.999f);  // (8991 / 9000 = 0.999)
  EXPECT_FLOAT_EQ(fff::ema_decay(0.999f, 100000), 0.999f);
  EXPECT_FLOAT_EQ(fff::ema_decay(0.05f, 0), 0.05f);
  for (int64_t t = 1; t < 2000; ++t)
    EXPECT_GE(fff::ema_decay(0.99f, t), fff::ema_decay(0.99f, t - 1));
}

// A few optimizer steps on a dense and a row-sparse parameter, the averages against a
// double-precision loop over the same weights: s_0 = w_0, s_t = d_t s_{t-1} + (1 - d_t) w_t.
TEST(Ema, UpdateFollowsANaiveReference) {
  fff::Rng rng(21);
  Param a("a", {3, 5}), b("b", {4, 2}, true);
  fill_random(a.value, rng);
  fill_random(b.value, rng);
  std::vector<Param*> params{&a, &b};
  Optimizer opt(adam(0.05f), params);
  std::vector<fff::Tensor> shadow = fff::ema_start(params);
  ASSERT_EQ(shadow.size(), 2u);
  EXPECT_EQ(shadow[0].data, a.value.data);
  EXPECT_EQ(shadow[1].data, b.value.data);
  std::vector<std::vector<double>> ref;
  for (const Param* p : params) ref.emplace_back(p->value.data.begin(), p->value.data.end());
  const fff::Tensor b0 = b.value;
  for (int64_t t = 0; t < 6; ++t) {
    for (Param* p : params) fill_random(p->grad, rng);
    b.touched_rows = {static_cast<int32_t>(t % 2)};  // rows 2 and 3 never move
    opt.step();
    const float d = fff::ema_decay(0.8f, t);
    fff::ema_update(shadow, params, d);
    for (size_t k = 0; k < params.size(); ++k)
      for (size_t i = 0; i < ref[k].size(); ++i)
        ref[k][i] = d * ref[k][i] + (1.0 - d) * params[k]->value.data[i];
  }
  for (size_t k = 0; k < params.size(); ++k)
    for (size_t i = 0; i < ref[k].size(); ++i) {
      EXPECT_TRUE(close_rel(shadow[k].data[i], ref[k][i], 1e-6))
          << params[k]->name << "[" << i << "]";
      // The average lags the weights: after 6 Adam steps of 0.05 they differ.
      if (k == 0) {
        EXPECT_NE(shadow[k].data[i], params[k]->value.data[i]);
      }
    }
  // A weight that never moved keeps an average bit-equal to it.
  for (int64_t r = 2; r < 4; ++r)
    for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(shadow[1].row(r)[j], b0.row(r)[j]);
  // Decay 0 copies the weights.
  fff::ema_update(shadow, params, 0.0f);
  EXPECT_EQ(shadow[0].data, a.value.data);
  // Shadows of other shapes are refused, naming the parameter.
  std::vector<fff::Tensor> wrong{fff::Tensor({3, 5}), fff::Tensor({2, 4})};
  try {
    fff::ema_update(wrong, params, 0.5f);
    ADD_FAILURE() << "no error";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
  std::vector<fff::Tensor> one{fff::Tensor({3, 5})};
  EXPECT_THROW(fff::ema_update(one, params, 0.5f), fff::Error);
}

}  // namespace
