// Tests of the transformer kernels: GELU and masked softmax against scalar formulas, and
// multi-head self-attention against its double-precision reference on odd shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cpu/elementwise_kernels.h"
#include "fff/layers/activation.h"
#include "fff/layers/attention.h"
#include "fff/testing/layers.h"
#include "test_util.h"

using fff_test::max_rel_err;
using fff_test::random_vec;

TEST(TransformerKernels, GeluMatchesErfFormOnEverySizeAndRange) {
  fff::Rng rng(3);
  for (int64_t n : {0, 1, 5, 15, 16, 17, 33, 1000}) {
    std::vector<float> x = random_vec(n, rng, 8.0f);
    if (n > 2) {
      x[0] = 0.0f;
      x[1] = -0.0f;
      x[2] = 30.0f;
    }
    std::vector<float> y = x;
    fff::cpu::gelu(y.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double z = x[i];
      const double ref = 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
      ASSERT_TRUE(std::isfinite(y[i]));
      // erf to 2e-7 absolute, scaled by |z| / 2, plus float rounding of the result.
      EXPECT_NEAR(y[i], ref, 2e-7 * std::fabs(z) + 2e-7 * std::fabs(ref) + 1e-30)
          << "n=" << n << " z=" << z;
    }
  }
}

TEST(TransformerKernels, GeluTailsEqualVectorBody) {
  // The same value gives the same result in the vector body and in the scalar tail.
  std::vector<float> a(17, 0.7f), b(1, 0.7f);
  fff::cpu::gelu(a.data(), a.data(), 17);
  fff::cpu::gelu(b.data(), b.data(), 1);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[16], b[0]);
}

TEST(TransformerKernels, SoftmaxMatchesReferenceWithMaskAndLargeValues) {
  fff::Rng rng(4);
  for (int64_t n : {1, 2, 7, 16, 31, 128, 129}) {
    std::vector<float> x = random_vec(n, rng, 20.0f), add(static_cast<size_t>(n), 0.0f);
    for (int64_t i = 0; i < n; i += 3) add[i] = -10000.0f;
    x[0] += 1000.0f;  // no overflow: the max is subtracted first
    std::vector<float> y = x;
    fff::cpu::softmax_inplace(y.data(), add.data(), n);
    double m = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, double(x[i]) + add[i]);
    for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) + add[i] - m);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = std::exp(double(x[i]) + add[i] - m) / sum;
      ASSERT_TRUE(std::isfinite(y[i]));
      EXPECT_NEAR(y[i], ref, 1e-6 * ref + 1e-12) << "n=" << n << " i=" << i;
    }
  }
}

TEST(Attention, MatchesReferenceOnOddShapesWithPadding) {
  fff::Rng rng(5);
  struct Case {
    int64_t batch, seq, heads, head_dim;
  };
  for (const Case c : {Case{1, 1, 1, 1}, Case{1, 5, 2, 3}, Case{3, 17, 3, 7}, Case{2, 33, 4, 16},
                       Case{1, 128, 12, 64}}) {
    const fff::AttentionShape s{c.batch, c.seq, c.heads, c.head_dim};
    const int64_t N = s.batch * s.seq, H = s.width();
    std::vector<float> qkv = random_vec(N * 3 * H, rng, 2.0f);
    std::vector<uint8_t> mask(static_cast<size_t>(N), 1);
    for (int64_t b = 1; b < s.batch; ++b)  // later sequences end in padding
      for (int64_t t = s.seq - b * s.seq / (2 * s.batch); t < s.seq; ++t) mask[b * s.seq + t] = 0;
    std::vector<float> bias(static_cast<size_t>(N));
    fff::attention_key_bias(mask.data(), N, bias.data());
    for (const float* kb : std::vector<const float*>{nullptr, bias.data()}) {
      std::vector<float> ref(static_cast<size_t>(N * H)), got(ref.size(), NAN);
      fff::self_attention_reference(s, qkv.data(), kb, ref.data());
      for (int threads : {1, 2}) {
        fff::Context ectx(threads);
        fff::self_attention(ectx, s, qkv.data(), kb, got.data());
        EXPECT_LT(max_rel_err(got, ref), 2e-6)
            << "batch " << s.batch << " seq " << s.seq << " heads " << s.heads << " hd "
            << s.head_dim << " threads " << threads << (kb ? " masked" : "");
      }
    }
  }
}

TEST(Attention, PaddedKeysDoNotChangeRealTokens) {
  fff::Context ectx(2);
  // A sequence alone equals the same sequence followed by padding keys, on its real rows.
  fff::Rng rng(6);
  const int64_t L = 9, S = 16, heads = 2, hd = 8, H = heads * hd;
  std::vector<float> qkv_pad = random_vec(S * 3 * H, rng, 3.0f);
  std::vector<float> qkv_alone(qkv_pad.begin(), qkv_pad.begin() + L * 3 * H);
  std::vector<uint8_t> mask(S, 0);
  std::fill(mask.begin(), mask.begin() + L, 1);
  std::vector<float> bias(S);
  fff::attention_key_bias(mask.data(), S, bias.data());
  std::vector<float> a(static_cast<size_t>(L * H)), p(static_cast<size_t>(S * H));
  fff::self_attention(ectx, {1, L, heads, hd}, qkv_alone.data(), nullptr, a.data());
  fff::self_attention(ectx, {1, S, heads, hd}, qkv_pad.data(), bias.data(), p.data());
  EXPECT_LT(max_rel_err(p.data(), a.data(), a.size()), 1e-6);
}

TEST(Attention, RejectsBadShapes) {
  fff::Context ectx(2);
  float dummy = 0.0f;
  EXPECT_THROW(fff::self_attention(ectx, {1, 1, 0, 4}, &dummy, nullptr, &dummy), fff::Error);
  EXPECT_THROW(fff::self_attention(ectx, {-1, 1, 1, 4}, &dummy, nullptr, &dummy), fff::Error);
}

TEST(TransformerKernels, LayerNormRowMatchesDoubleReference) {
  fff::Rng rng(7);
  for (int64_t n : {1, 2, 15, 16, 17, 31, 33, 768, 1001}) {
    std::vector<float> x = random_vec(n, rng, 3.0f), g = random_vec(n, rng), b = random_vec(n, rng);
    for (float& v : x) v += 50.0f;  // a large mean: the variance pass must centre first
    std::vector<float> y(static_cast<size_t>(n), NAN);
    fff::cpu::layer_norm_row(x.data(), n, g.data(), b.data(), 1e-12f, y.data());
    double mean = 0.0, var = 0.0;
    for (float v : x) mean += v;
    mean /= n;
    for (float v : x) var += (v - mean) * (v - mean);
    var /= n;
    for (int64_t i = 0; i < n; ++i) {
      const double ref = (x[i] - mean) / std::sqrt(var + 1e-12) * g[i] + b[i];
      ASSERT_TRUE(std::isfinite(y[i]));
      // Float rounding of values near the mean, relative to the spread, bounds what is reachable.
      const double tol =
          4e-7 * (1.0 + std::fabs(mean) / std::sqrt(var + 1e-12)) * (1.0 + std::fabs(g[i]));
      EXPECT_NEAR(y[i], ref, tol) << "n=" << n << " i=" << i;
    }
  }
}
