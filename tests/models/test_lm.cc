// Tests for the language model's parts: layer norm and embedding (values, gradients, errors),
// and a tiny QRNN + FFF language model for every channel mixer: gradients of every parameter
// by finite differences (starting from a carried state), and a sequence run in two segments
// giving the same logits as in one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fff/layers/embedding.h"
#include "fff/layers/layer_norm.h"
#include "fff/layers/loss.h"
#include "fff/models/lm.h"
#include "test_util.h"

namespace {

using fff::Rng;
using namespace fff_test;

TEST(LayerNorm, NormalisesAndMatchesFiniteDifferences) {
  fff::Context ectx(2);
  Rng rng(1);
  const int64_t N = 3, d = 7;
  fff::LayerNorm m = fff::make_layer_norm(d, "ln");
  for (float& v : m.gain.value.data) v = rng.uniform(0.5f, 1.5f);
  for (float& v : m.bias.value.data) v = rng.uniform(-0.5f, 0.5f);
  const auto x = random_vec(N * d, rng, 3.0f), R = random_vec(N * d, rng);
  std::vector<float> y(N * d);
  fff::LayerNormContext ctx;
  fff::layer_norm_forward(ectx, m, x.data(), N, y.data(), ctx);
  for (int64_t r = 0; r < N; ++r) {  // the normalised row has mean 0 and variance ~1
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < d; ++j) mean += ctx.xhat.row(r)[j];
    for (int64_t j = 0; j < d; ++j) var += ctx.xhat.row(r)[j] * ctx.xhat.row(r)[j];
    EXPECT_NEAR(mean / d, 0.0, 1e-6);
    EXPECT_NEAR(var / d, 1.0, 1e-4);
  }
  std::vector<float> dx(N * d);
  fff::layer_norm_backward(ectx, m, R.data(), N, ctx, dx.data());
  auto loss = [&](const fff::LayerNorm& mm, const std::vector<float>& xx) {
    std::vector<float> yy(N * d);
    fff::LayerNormContext c2;
    fff::layer_norm_forward(ectx, mm, xx.data(), N, yy.data(), c2);
    double s = 0.0;
    for (int64_t i = 0; i < N * d; ++i) s += static_cast<double>(R[i]) * yy[i];
    return s;
  };
  for (int64_t i = 0; i < N * d; ++i) {
    const double g = fd4(
        [&](double e) {
          auto xx = x;
          xx[i] += static_cast<float>(e);
          return loss(m, xx);
        },
        0.0, 1e-2);
    EXPECT_NEAR(dx[i], g, 2e-3 * (1.0 + std::fabs(g))) << "dx " << i;
  }
  for (int64_t j = 0; j < d; ++j) {
    const double gg = fd4(
        [&](double e) {
          auto mm = m;
          mm.gain.value.data[j] += static_cast<float>(e);
          return loss(mm, x);
        },
        0.0, 1e-2);
    const double gb = fd4(
        [&](double e) {
          auto mm = m;
          mm.bias.value.data[j] += static_cast<float>(e);
          return loss(mm, x);
        },
        0.0, 1e-2);
    EXPECT_NEAR(m.gain.grad.data[j], gg, 2e-3 * (1.0 + std::fabs(gg)));
    EXPECT_NEAR(m.bias.grad.data[j], gb, 2e-3 * (1.0 + std::fabs(gb)));
  }
}

TEST(Embedding, GathersAccumulatesAndRejectsBadTokens) {
  Rng rng(2);
  fff::Embedding m = fff::make_embedding(5, 3, rng);
  const std::vector<int32_t> tokens = {4, 1, 4};
  std::vector<float> y(9), dy = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  fff::embedding_forward(m, tokens.data(), 3, y.data());
  for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(y[j], m.table.value.row(4)[j]);
  fff::embedding_backward(m, tokens.data(), 3, dy.data());
  EXPECT_EQ(m.table.grad.row(4)[0], 1.0f + 7.0f);  // both uses of token 4 add up
  EXPECT_EQ(m.table.grad.row(1)[2], 6.0f);
  EXPECT_EQ(m.table.grad.row(0)[0], 0.0f);
  const std::vector<int32_t> bad = {5};
  EXPECT_THROW(fff::embedding_forward(m, bad.data(), 1, y.data()), fff::Error);
}

fff::LmConfig tiny(fff::FFKind mixer) {
  fff::LmConfig c;
  c.dim = 4;
  c.layers = 2;
  c.window = 2;
  c.scan = fff::ScanAlgo::chunked;
  c.mixer = mixer;
  c.width = 8;
  c.leaf_width = 2;  // depth 2
  c.trees = 2;
  c.depth = 1;
  return c;
}

TEST(TinyLm, GradientsMatchFiniteDifferences) {
  fff::Context ectx(2);
  for (fff::FFKind mixer :
       {fff::FFKind::ff, fff::FFKind::leaf_fff, fff::FFKind::neuron_fff}) {
    Rng rng(3);
    fff::LmModel m = fff::make_lm(tiny(mixer), rng);
    const int64_t T = 4, B = 2, N = T * B;
    std::vector<int32_t> tokens(N), targets(N);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(256));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(256));
    // A carried state from an earlier segment.
    fff::LmState state0;
    fff::LmContext ctx;
    std::vector<float> logits(N * 256), dlogits(N * 256);
    fff::lm_forward(ectx, m, tokens.data(), T, B, state0, true, logits.data(), ctx);
    const float hardening = mixer == fff::FFKind::leaf_fff ? 0.5f : 0.0f;
    auto loss = [&](fff::LmModel& mm) {
      fff::LmState s = state0;
      fff::LmContext c2;
      std::vector<float> lg(N * 256);
      const double entropy = fff::lm_forward(ectx, mm, tokens.data(), T, B, s, true, lg.data(), c2);
      return fff::softmax_cross_entropy(lg.data(), targets.data(), N, 256, nullptr, nullptr) +
             hardening * entropy;
    };
    fff::LmState s = state0;
    fff::lm_forward(ectx, m, tokens.data(), T, B, s, true, logits.data(), ctx);
    fff::softmax_cross_entropy(logits.data(), targets.data(), N, 256, dlogits.data(), nullptr);
    fff::lm_backward(ectx, m, tokens.data(), dlogits.data(), hardening, ctx);
    int checked = 0;
    for (fff::Param* p : m.params()) {
      if (p->sparse) continue;  // neuron FFF rows off the paths hold stale gradients
      for (int64_t i = 0; i < p->value.size(); i += std::max<int64_t>(1, p->value.size() / 5)) {
        const float saved = p->value.data[i];
        const double g = fd4(
            [&](double e) {
              p->value.data[i] = saved + static_cast<float>(e);
              const double l = loss(m);
              p->value.data[i] = saved;
              return l;
            },
            0.0, 1e-3);
        EXPECT_NEAR(p->grad.data[i], g, 5e-3 * (1.0 + std::fabs(g)))
            << fff::ff_kind_name(mixer) << " " << p->name << "[" << i << "]";
        ++checked;
      }
    }
    EXPECT_GT(checked, 20) << fff::ff_kind_name(mixer);
  }
}

TEST(TinyLm, TwoSegmentsEqualOne) {
  fff::Context ectx(2);
  for (fff::FFKind mixer : {fff::FFKind::ff, fff::FFKind::leaf_fff}) {
    Rng rng(4);
    fff::LmModel m = fff::make_lm(tiny(mixer), rng);
    const int64_t T = 9, T1 = 4, B = 3;
    std::vector<int32_t> tokens(T * B);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(256));
    std::vector<float> whole(T * B * 256), parts(T * B * 256);
    fff::LmContext ctx;
    fff::LmState s1, s2;
    fff::lm_forward(ectx, m, tokens.data(), T, B, s1, false, whole.data(), ctx);
    fff::lm_forward(ectx, m, tokens.data(), T1, B, s2, false, parts.data(), ctx);
    fff::lm_forward(ectx, m, tokens.data() + T1 * B, T - T1, B, s2, false, parts.data() + T1 * B * 256,
                    ctx);
    EXPECT_LE(max_rel_err(parts, whole), 1e-5) << fff::ff_kind_name(mixer);
  }
}

}  // namespace
