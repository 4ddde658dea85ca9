// Tests for the dense kernels: gemm against gemm_reference, the linear layer against its
// reference, activations (values, derivatives by finite differences, parsing) and softmax
// cross-entropy (gradient by finite differences, special values, arg-max counting); the training
// vector kernels (dot, axpy, optimizer updates, scan composition, ReLU) on every instruction set
// the CPU supports.
#include <gtest/gtest.h>
// As for the library (CMakeLists.txt): with -march=native on an AVX-512 VNNI machine, Highway's
// target list must include AVX3_DL, the static target, or its headers refuse to compile.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/cache_size.h"
#include "cpu/elementwise_kernels.h"
#include "cpu/scan_kernels.h"
#include "cpu/vec_kernels.h"
#include "fff/core/common.h"
#include "fff/cpu/gemm.h"
#include "fff/cpu/packed_gemm.h"
#include "fff/layers/activation.h"
#include "fff/layers/linear.h"
#include "fff/layers/loss.h"
#include "fff/testing/cpu.h"
#include "fff/testing/layers.h"
#include "hwy_targets.h"
#include "test_util.h"

namespace {

using fff::Activation;
using fff::Rng;
using fff_test::fd4;
using fff_test::random_vec;

// ---------------------------------------------------------------------------------------------
// gemm

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K;
  int64_t pad_a, pad_b, pad_c;  // extra leading-dimension padding
  float alpha, beta;
};

// Runs gemm and gemm_reference on the same random operands and checks every element of C,
// including the padding columns that must stay untouched.
// Random operands of a case, with their leading dimensions (padding included).
struct GemmOperands {
  int64_t lda, ldb, ldc;
  std::vector<float> A, B, C0;
};

GemmOperands make_operands(const GemmCase& g, Rng& rng) {
  const int64_t a_rows = g.ta ? g.K : g.M, a_cols = g.ta ? g.M : g.K;
  const int64_t b_rows = g.tb ? g.N : g.K, b_cols = g.tb ? g.K : g.N;
  GemmOperands o{a_cols + g.pad_a, b_cols + g.pad_b, g.N + g.pad_c, {}, {}, {}};
  o.A = random_vec(a_rows * o.lda, rng);
  o.B = random_vec(b_rows * o.ldb, rng);
  o.C0 = random_vec(g.M * o.ldc, rng);
  return o;
}

void check_gemm(const GemmCase& g, uint64_t seed) {
  fff::Context ectx(2);
  Rng rng(seed);
  const auto [lda, ldb, ldc, A, B, C0] = make_operands(g, rng);
  auto C = C0, R = C0;
  fff::gemm(ectx, g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta,
            C.data(), ldc);
  fff::gemm_reference(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta,
                      R.data(), ldc);
  for (int64_t i = 0; i < g.M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t idx = static_cast<size_t>(i * ldc + j);
      ASSERT_TRUE(std::isfinite(C[idx])) << "C(" << i << "," << j << ") is not finite";
      if (j >= g.N) {
        // Padding beyond N is not part of C and must not be written.
        ASSERT_EQ(C[idx], C0[idx]) << "padding overwritten at (" << i << "," << j << ")";
        continue;
      }
      // Scale of the element: |alpha| sum_k |a_ik b_kj| + |beta c_ij|. Float accumulation of K
      // products: tolerance 1e-6 * sqrt(K + 1) of that scale (OpenBLAS sums in float with FMA).
      double scale = std::fabs(g.beta * C0[idx]);
      for (int64_t k = 0; k < g.K; ++k) {
        const float a = g.ta ? A[k * lda + i] : A[i * lda + k];
        const float b = g.tb ? B[j * ldb + k] : B[k * ldb + j];
        scale += std::fabs(static_cast<double>(g.alpha) * a * b);
      }
      const double tol = 1e-6 * std::sqrt(static_cast<double>(g.K + 1)) * scale + 1e-30;
      ASSERT_NEAR(C[idx], R[idx], tol)
          << "ta=" << g.ta << " tb=" << g.tb << " M=" << g.M << " N=" << g.N << " K=" << g.K
          << " alpha=" << g.alpha << " beta=" << g.beta << " at (" << i << "," << j << ")";
    }
  }
}

TEST(Gemm, MatchesReferenceAllTransposesFixedShapes) {
  const int64_t dims[][3] = {{1, 1, 1},    {1, 7, 5},    {7, 1, 5},     {7, 5, 1},
                             {1, 1, 33},   {3, 5, 7},    {17, 13, 9},   {16, 16, 16},
                             {33, 65, 31}, {64, 1, 100}, {1, 100, 64},  {129, 67, 257},
                             {300, 1, 7},  {1, 300, 7},  {67, 300, 45}, {257, 129, 3}};
  const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 0.0f}, {-1.5f, 0.75f}, {2.0f, 1.0f}, {1.0f, -2.0f}};
  uint64_t seed = 1;
  for (const auto& d : dims)
    for (int t = 0; t < 4; ++t)
      for (const auto& s : ab) {
        const GemmCase g{(t & 1) != 0, (t & 2) != 0, d[0], d[1], d[2], 0, 0, 0, s[0], s[1]};
        ASSERT_NO_FATAL_FAILURE(check_gemm(g, seed++));
      }
}

TEST(Gemm, MatchesReferenceRandomShapesWithPadding) {
  Rng rng(2024);
  for (int it = 0; it < 200; ++it) {
    GemmCase g;
    g.ta = rng.below(2) != 0;
    g.tb = rng.below(2) != 0;
    // Mostly small odd sizes, with 1 often.
    auto dim = [&]() -> int64_t {
      const uint64_t r = rng.below(10);
      if (r == 0) return 1;
      if (r < 8) return 1 + static_cast<int64_t>(rng.below(40));
      return 1 + static_cast<int64_t>(rng.below(200));
    };
    g.M = dim();
    g.N = dim();
    g.K = dim();
    g.pad_a = static_cast<int64_t>(rng.below(4));
    g.pad_b = static_cast<int64_t>(rng.below(4));
    g.pad_c = static_cast<int64_t>(rng.below(4));
    g.alpha = rng.uniform(-2.0f, 2.0f);
    g.beta = rng.below(3) == 0 ? 0.0f : rng.uniform(-2.0f, 2.0f);
    ASSERT_NO_FATAL_FAILURE(check_gemm(g, 1000 + it));
  }
}

TEST(Gemm, TwoThreadsBitwiseEqualOneAndMatchReference) {
  // Shapes large enough for the product to be split over threads, in rows (M >= N) and in
  // columns (N > M), with every transpose combination and leading-dimension padding.
  const GemmCase cases[] = {
      {false, false, 517, 33, 70, 1, 2, 3, 1.0f, 0.0f},
      {true, false, 517, 33, 70, 0, 1, 0, -0.5f, 1.5f},
      {false, true, 29, 401, 65, 2, 0, 1, 2.0f, 1.0f},
      {true, true, 29, 401, 65, 0, 0, 0, 1.0f, -1.0f},
      {false, false, 300, 300, 1, 0, 0, 0, 0.75f, 0.25f},
  };
  uint64_t seed = 500;
  for (const GemmCase& g : cases) {
    ASSERT_NO_FATAL_FAILURE(check_gemm(g, seed));
    Rng rng(seed++);
    const auto [lda, ldb, ldc, A, B, C0] = make_operands(g, rng);
    std::vector<float> C[2] = {C0, C0};
    for (int t = 0; t < 2; ++t) {
      fff::Context ectx(t + 1);
      fff::gemm(ectx, g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta,
                C[t].data(), ldc);
    }
    ASSERT_EQ(0, std::memcmp(C[0].data(), C[1].data(), C[0].size() * sizeof(float)))
        << "1 and 2 threads differ: ta=" << g.ta << " tb=" << g.tb << " M=" << g.M << " N=" << g.N
        << " K=" << g.K;
  }
}

TEST(Gemm, BetaZeroIgnoresGarbageInC) {
  fff::Context ectx(2);
  // BLAS semantics: with beta = 0, C is not read, so NaN in C must not propagate.
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    Rng rng(77 + t);
    const int64_t M = 5, N = 3, K = 4;
    const auto A = random_vec(M * K, rng), B = random_vec(K * N, rng);
    std::vector<float> C(M * N, std::numeric_limits<float>::quiet_NaN()), R = C;
    fff::gemm(ectx, ta, tb, M, N, K, 1.25f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f,
              C.data(), N);
    fff::gemm_reference(ta, tb, M, N, K, 1.25f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f,
                        R.data(), N);
    for (size_t i = 0; i < C.size(); ++i) {
      ASSERT_TRUE(std::isfinite(C[i])) << i;
      ASSERT_TRUE(std::isfinite(R[i])) << i;
      EXPECT_NEAR(C[i], R[i], 1e-5) << i;
    }
  }
}

TEST(Gemm, KZeroScalesC) {
  fff::Context ectx(2);
  // K = 0: op(A) op(B) is the zero matrix, so C = beta * C (and 0 for beta = 0, even over NaN).
  std::vector<float> C = {1.0f, -2.0f, 3.0f, 4.0f}, R = C;
  fff::gemm(ectx, false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, C.data(), 2);
  fff::gemm_reference(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, R.data(), 2);
  for (size_t i = 0; i < C.size(); ++i) {
    EXPECT_EQ(C[i], R[i]);
    EXPECT_EQ(C[i], std::vector<float>({0.5f, -1.0f, 1.5f, 2.0f})[i]);
  }
  std::vector<float> N(4, std::numeric_limits<float>::quiet_NaN());
  fff::gemm(ectx, true, true, 2, 2, 0, 1.0f, nullptr, 2, nullptr, 1, 0.0f, N.data(), 2);
  for (float v : N) EXPECT_EQ(v, 0.0f);
}

TEST(Gemm, ContextThreadsAreValidated) {
  // The old global setting clamped 0 to one thread; a Context refuses it (tested in full in
  // tests/core/test_context.cc).
  EXPECT_EQ(fff::Context(2).threads, 2);
  EXPECT_THROW(fff::Context(0), fff::Error);
}

// ---------------------------------------------------------------------------------------------
// linear layer

void check_linear(int64_t B, int64_t in, int64_t out, bool with_dx, uint64_t seed) {
  fff::Context ectx(2);
  Rng rng(seed);
  const auto x = random_vec(B * in, rng), W = random_vec(in * out, rng, 0.5f);
  const auto b = random_vec(out, rng, 0.5f), dy = random_vec(B * out, rng);
  // Outputs start as garbage (NaN): forward and backward overwrite.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(B * out, nan), yr(B * out, nan);
  fff::linear_forward(ectx, x.data(), B, in, out, W.data(), b.data(), y.data());
  fff::linear_forward_reference(x.data(), B, in, out, W.data(), b.data(), yr.data());
  // |y| <= sum |x||W| + |b| <= in * 0.5 + 0.5; float sums: tolerance 1e-6 * (in + 1) absolute.
  const double tol_y = 1e-6 * static_cast<double>(in + 1);
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_TRUE(std::isfinite(y[i])) << i;
    ASSERT_NEAR(y[i], yr[i], tol_y) << "B=" << B << " in=" << in << " out=" << out << " i=" << i;
  }

  std::vector<float> dW(in * out, nan), db(out, nan), dWr(in * out, nan), dbr(out, nan);
  std::vector<float> dx(B * in, nan), dxr(B * in, nan);
  fff::linear_backward(ectx, x.data(), dy.data(), B, in, out, W.data(),
                       with_dx ? dx.data() : nullptr, dW.data(), db.data());
  fff::linear_backward_reference(x.data(), dy.data(), B, in, out, W.data(),
                                 with_dx ? dxr.data() : nullptr, dWr.data(), dbr.data());
  // dW, db sum over B rows of |.| <= 1 products; dx sums out products of |.| <= 0.5.
  const double tol_w = 1e-6 * static_cast<double>(B + 1);
  const double tol_x = 1e-6 * static_cast<double>(out + 1);
  for (size_t i = 0; i < dW.size(); ++i) {
    ASSERT_TRUE(std::isfinite(dW[i])) << i;
    ASSERT_NEAR(dW[i], dWr[i], tol_w) << "dW B=" << B << " in=" << in << " out=" << out;
  }
  for (size_t i = 0; i < db.size(); ++i) {
    ASSERT_TRUE(std::isfinite(db[i])) << i;
    ASSERT_NEAR(db[i], dbr[i], tol_w) << "db B=" << B << " in=" << in << " out=" << out;
  }
  if (with_dx) {
    for (size_t i = 0; i < dx.size(); ++i) {
      ASSERT_TRUE(std::isfinite(dx[i])) << i;
      ASSERT_NEAR(dx[i], dxr[i], tol_x) << "dx B=" << B << " in=" << in << " out=" << out;
    }
  } else {
    // dx == nullptr: nothing written there.
    for (float v : dx) ASSERT_TRUE(std::isnan(v));
  }
}

TEST(Linear, MatchesReferenceFixedShapes) {
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 5, 3},    {1, 784, 10}, {7, 1, 1},     {7, 3, 1},
                               {7, 1, 9}, {13, 17, 11}, {64, 64, 64}, {37, 100, 33}, {2, 129, 65}};
  uint64_t seed = 10;
  for (const auto& s : shapes)
    for (bool with_dx : {false, true})
      ASSERT_NO_FATAL_FAILURE(check_linear(s[0], s[1], s[2], with_dx, seed++));
}

TEST(Linear, MatchesReferenceRandomShapes) {
  Rng rng(555);
  for (int it = 0; it < 60; ++it) {
    const int64_t B = 1 + static_cast<int64_t>(rng.below(it % 3 == 0 ? 2 : 70));
    const int64_t in = 1 + static_cast<int64_t>(rng.below(90));
    const int64_t out = 1 + static_cast<int64_t>(rng.below(40));
    ASSERT_NO_FATAL_FAILURE(check_linear(B, in, out, rng.below(2) != 0, 9000 + it));
  }
}

TEST(Linear, ColumnSums) {
  const std::vector<float> dy = {1, 2, 3, 4, 5, 6};
  std::vector<float> db = {100, 100, 100};  // overwritten, not accumulated
  fff::column_sums(dy.data(), 2, 3, db.data());
  EXPECT_EQ(db, std::vector<float>({5, 7, 9}));
  fff::column_sums(dy.data(), 0, 3, db.data());
  EXPECT_EQ(db, std::vector<float>({0, 0, 0}));
}

// ---------------------------------------------------------------------------------------------
// activations

TEST(Activation, ParseAndName) {
  for (const char* name : {"relu", "gelu", "identity"})
    EXPECT_STREQ(fff::activation_name(fff::parse_activation(name)), name);
  EXPECT_EQ(fff::parse_activation("relu"), Activation::relu);
  EXPECT_EQ(fff::parse_activation("gelu"), Activation::gelu);
  EXPECT_EQ(fff::parse_activation("identity"), Activation::identity);
  EXPECT_THROW(fff::parse_activation("tanh"), fff::Error);
  EXPECT_THROW(fff::parse_activation(""), fff::Error);
  EXPECT_THROW(fff::parse_activation("ReLU"), fff::Error);
  try {
    fff::parse_activation("tanh");
    FAIL() << "no throw";
  } catch (const fff::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tanh"), std::string::npos) << msg;
    EXPECT_NE(msg.find("relu"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gelu"), std::string::npos) << msg;
    EXPECT_NE(msg.find("identity"), std::string::npos) << msg;
  }
}

TEST(Activation, GeluMatchesErfFormInDouble) {
  // GELU(z) = 0.5 z (1 + erf(z / sqrt 2)). Float evaluation: tolerance 1e-6 * max(1, |z|)
  // absolute (the 1 + erf cancellation for negative z limits relative accuracy there).
  Rng rng(3);
  std::vector<float> zs = {0.0f, -0.0f, 1.0f, -1.0f, 3.0f, -3.0f, 8.0f, -8.0f, 1e-6f, -1e-6f};
  for (int i = 0; i < 2000; ++i) zs.push_back(rng.uniform(-8.0f, 8.0f));
  for (float z : zs) {
    const double zd = z;
    const double ref = 0.5 * zd * (1.0 + std::erf(zd / std::sqrt(2.0)));
    const float v = fff::activate(Activation::gelu, z);
    ASSERT_TRUE(std::isfinite(v)) << z;
    ASSERT_NEAR(v, ref, 1e-6 * std::max(1.0, std::fabs(zd))) << "z=" << z;
  }
  // Large |z|: GELU approaches relu.
  EXPECT_EQ(fff::activate(Activation::gelu, 50.0f), 50.0f);
  EXPECT_EQ(fff::activate(Activation::gelu, -50.0f), 0.0f);
}

TEST(Activation, ReluAndIdentityValues) {
  EXPECT_EQ(fff::activate(Activation::relu, 2.5f), 2.5f);
  EXPECT_EQ(fff::activate(Activation::relu, -2.5f), 0.0f);
  EXPECT_EQ(fff::activate(Activation::relu, 0.0f), 0.0f);
  EXPECT_EQ(fff::activate_grad(Activation::relu, 0.0f), 0.0f);  // ReLU'(0) = 0 by definition
  EXPECT_EQ(fff::activate_grad(Activation::relu, 1e-30f), 1.0f);
  EXPECT_EQ(fff::activate_grad(Activation::relu, -1e-30f), 0.0f);
  EXPECT_EQ(fff::activate(Activation::identity, -7.25f), -7.25f);
  EXPECT_EQ(fff::activate_grad(Activation::identity, -7.25f), 1.0f);
}

TEST(Activation, DerivativeMatchesFiniteDifferences) {
  // 4-point stencil with h = 1e-2 on the float activation; points kept >= 0.05 from the ReLU
  // kink so the stencil never crosses it. Tolerance 1e-4 * max(1, |grad|): float rounding of
  // phi (~1e-7 * |phi|) amplified by 1.5 / h, plus O(h^4) truncation.
  const double h = 1e-2;
  Rng rng(4);
  for (Activation a : {Activation::relu, Activation::gelu, Activation::identity}) {
    for (int i = 0; i < 500; ++i) {
      float z = rng.uniform(-6.0f, 6.0f);
      if (std::fabs(z) < 0.05f) continue;
      const double fd =
          fd4([&](double t) { return fff::activate(a, static_cast<float>(t)); }, z, h);
      const double g = fff::activate_grad(a, z);
      ASSERT_TRUE(std::isfinite(fd));
      ASSERT_TRUE(std::isfinite(g));
      ASSERT_NEAR(g, fd, 1e-4 * std::max(1.0, std::fabs(g)))
          << fff::activation_name(a) << " z=" << z;
    }
  }
}

TEST(Activation, GeluDerivativeMatchesDoubleFormula) {
  // d/dz GELU = Phi(z) + z phi(z); tolerance 1e-6 absolute.
  Rng rng(5);
  for (int i = 0; i < 2000; ++i) {
    const float z = rng.uniform(-8.0f, 8.0f);
    const double zd = z;
    const double ref = 0.5 * (1.0 + std::erf(zd / std::sqrt(2.0))) +
                       zd * std::exp(-0.5 * zd * zd) / std::sqrt(2.0 * M_PI);
    ASSERT_NEAR(fff::activate_grad(Activation::gelu, z), ref, 1e-6) << "z=" << z;
  }
}

TEST(Activation, ArrayForwardBackwardMatchElementwiseIncludingAliasing) {
  fff::Context ectx(2);
  Rng rng(6);
  const int64_t n = 103;
  for (Activation a : {Activation::relu, Activation::gelu, Activation::identity}) {
    auto z = random_vec(n, rng, 4.0f);
    z[0] = 0.0f;  // exact kink: relu'(0) = 0
    const auto da = random_vec(n, rng);
    std::vector<float> out(n, -99.0f), dz(n, -99.0f);
    fff::activation_forward(ectx, a, z.data(), out.data(), n);
    fff::activation_backward(a, z.data(), da.data(), dz.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      if (a == Activation::gelu)  // the array form uses a vectorised erf within 2e-7 of erff
        ASSERT_NEAR(out[i], fff::activate(a, z[i]), 2e-7 * (1.0 + std::fabs(z[i])))
            << fff::activation_name(a) << " " << i;
      else
        ASSERT_EQ(out[i], fff::activate(a, z[i])) << fff::activation_name(a) << " " << i;
      ASSERT_EQ(dz[i], da[i] * fff::activate_grad(a, z[i])) << fff::activation_name(a) << " " << i;
    }
    // In place: a aliases z; dz aliases da.
    auto zz = z;
    fff::activation_forward(ectx, a, zz.data(), zz.data(), n);
    EXPECT_EQ(zz, out) << fff::activation_name(a);
    auto dd = da;
    fff::activation_backward(a, z.data(), dd.data(), dd.data(), n);
    EXPECT_EQ(dd, dz) << fff::activation_name(a);
  }
}

// ---------------------------------------------------------------------------------------------
// softmax cross-entropy

TEST(SoftmaxCrossEntropy, UniformLogitsGiveLogC) {
  for (int64_t C : {1, 2, 3, 10, 1000}) {
    const int64_t B = 3;
    std::vector<float> logits(B * C, 0.37f);
    std::vector<int32_t> labels = {0, static_cast<int32_t>(C - 1), static_cast<int32_t>(C / 2)};
    std::vector<float> d(B * C);
    const double loss =
        fff::softmax_cross_entropy(logits.data(), labels.data(), B, C, d.data(), nullptr);
    EXPECT_NEAR(loss, std::log(static_cast<double>(C)), 1e-9) << C;
    for (int64_t r = 0; r < B; ++r)
      for (int64_t j = 0; j < C; ++j) {
        const double expect = (1.0 / C - (j == labels[r] ? 1.0 : 0.0)) / B;
        EXPECT_NEAR(d[r * C + j], expect, 1e-7);
      }
  }
}

// d, the gradient of loss() with respect to logits, against the 4-point stencil with h = 2^-7 on
// each float logit in turn. The losses are double but the logit differences are taken in float
// (~1e-7 error), so the FD error is ~1.5e-7 / h ~ 2e-5: tolerance 1e-4 * max(1, |grad|).
template <class Loss>
void check_logit_gradient(std::vector<float>& logits, const std::vector<float>& d, Loss loss,
                          const std::string& what) {
  const double h = 0x1p-7;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float saved = logits[i];
    const double fd = fd4(
        [&](double t) {
          logits[i] = static_cast<float>(t);
          return loss();
        },
        saved, h);
    logits[i] = saved;
    ASSERT_TRUE(std::isfinite(fd)) << what << " i=" << i;
    ASSERT_TRUE(std::isfinite(d[i])) << what << " i=" << i;
    ASSERT_NEAR(d[i], fd, 1e-4 * std::max(1.0, std::fabs(fd))) << what << " i=" << i;
  }
}

TEST(SoftmaxCrossEntropy, GradientMatchesFiniteDifferences) {
  // With and without label smoothing (check_logit_gradient).
  Rng rng(8);
  for (auto [B, C] : {std::pair<int64_t, int64_t>{1, 2}, {1, 10}, {4, 3}, {5, 7}, {3, 33}})
    for (float eps : {0.0f, 0.1f, 0.9f}) {
      auto logits = random_vec(B * C, rng, 3.0f);
      std::vector<int32_t> labels(B);
      for (auto& l : labels) l = static_cast<int32_t>(rng.below(C));
      std::vector<float> d(B * C);
      fff::softmax_cross_entropy(logits.data(), labels.data(), B, C, d.data(), nullptr, eps);
      ASSERT_NO_FATAL_FAILURE(check_logit_gradient(
          logits, d,
          [&] {
            return fff::softmax_cross_entropy(logits.data(), labels.data(), B, C, nullptr, nullptr,
                                              eps);
          },
          "B=" + std::to_string(B) + " C=" + std::to_string(C) + " eps=" + std::to_string(eps)));
      // Each row of the gradient sums to zero (the target sums to 1).
      for (int64_t r = 0; r < B; ++r) {
        double s = 0;
        for (int64_t j = 0; j < C; ++j) s += d[r * C + j];
        EXPECT_NEAR(s, 0.0, 1e-6);
      }
    }
}

TEST(SoftmaxCrossEntropy, MatchesTheDirectFormulaInDoubleWithAndWithoutLabelSmoothing) {
  // The loss against the target -sum_j t_j log softmax_j, t = (1 - eps) onehot + eps / C (eps = 0:
  // the one-hot label), written out in double (the gradient is checked by finite differences
  // above); eps = 0 gives the loss and gradient of the call without the argument bit for bit.
  Rng rng(10);
  for (auto [B, C] : {std::pair<int64_t, int64_t>{1, 2}, {4, 3}, {5, 10}, {2, 33}})
    for (float eps : {0.0f, 0.1f, 0.5f, 0.9f}) {
      const auto logits = random_vec(B * C, rng, 3.0f);
      std::vector<int32_t> labels(B);
      for (auto& l : labels) l = static_cast<int32_t>(rng.below(C));
      double expect = 0.0;
      for (int64_t r = 0; r < B; ++r) {
        double s = 0.0;
        for (int64_t j = 0; j < C; ++j) s += std::exp(static_cast<double>(logits[r * C + j]));
        for (int64_t j = 0; j < C; ++j) {
          const double t = (j == labels[r] ? 1.0 - eps : 0.0) + static_cast<double>(eps) / C;
          expect -= t * (logits[r * C + j] - std::log(s));
        }
      }
      expect /= B;
      std::vector<float> d(B * C);
      const double loss =
          fff::softmax_cross_entropy(logits.data(), labels.data(), B, C, d.data(), nullptr, eps);
      EXPECT_NEAR(loss, expect, 1e-6 * std::max(1.0, expect)) << "B=" << B << " eps=" << eps;
      if (eps == 0.0f) {
        std::vector<float> plain(B * C);
        EXPECT_EQ(loss, fff::softmax_cross_entropy(logits.data(), labels.data(), B, C, plain.data(),
                                                   nullptr));
        EXPECT_EQ(d, plain);
      }
    }
}

TEST(SoftmaxCrossEntropy, LargeLogitsStayFinite) {
  const int64_t C = 3;
  const std::vector<float> logits = {1e4f, 0.0f, -1e4f, 1e4f, 1e4f, 1e4f, -1e4f, -1e4f, 1e4f};
  for (int32_t label = 0; label < C; ++label) {
    const std::vector<int32_t> labels(3, label);
    std::vector<float> d(9);
    const double loss =
        fff::softmax_cross_entropy(logits.data(), labels.data(), 3, C, d.data(), nullptr);
    ASSERT_TRUE(std::isfinite(loss)) << label;
    for (float v : d) ASSERT_TRUE(std::isfinite(v)) << label;
    // Row 0 costs 0, 1e4, 2e4 by label; row 1 ln 3; row 2 2e4, 2e4, 0.
    const double row0[] = {0.0, 1e4, 2e4}, row2[] = {2e4, 2e4, 0.0};
    const double expect = (row0[label] + std::log(3.0) + row2[label]) / 3.0;
    EXPECT_NEAR(loss, expect, 1e-3 * std::max(1.0, expect)) << label;
  }
  // Single row, huge positive and negative values, label on the largest.
  const std::vector<float> big = {1e4f, 9999.0f};
  const std::vector<int32_t> lab = {0};
  const double l = fff::softmax_cross_entropy(big.data(), lab.data(), 1, 2, nullptr, nullptr);
  EXPECT_NEAR(l, std::log1p(std::exp(-1.0)), 1e-6);
}

TEST(SoftmaxCrossEntropy, ArgmaxCountsAccumulate) {
  const int64_t B = 5, C = 4;
  const std::vector<float> logits = {
      0,  1, 2, 3,     // argmax 3
      5,  1, 2, 3,     // argmax 0
      1,  1, 1, 1,     // tie: first, 0
      -1, 2, 2, -5,    // tie: first, 1
      0,  0, 0, 0.5f,  // 3
  };
  const std::vector<int32_t> labels = {3, 0, 1, 1, 2};  // rows 0, 1, 3 correct
  int64_t correct = 10;                                 // adds, does not overwrite
  fff::softmax_cross_entropy(logits.data(), labels.data(), B, C, nullptr, &correct);
  EXPECT_EQ(correct, 13);
  EXPECT_EQ(fff::argmax(logits.data() + 8, 4), 0);
  EXPECT_EQ(fff::argmax(logits.data() + 12, 4), 1);
  const float one = 7.0f;
  EXPECT_EQ(fff::argmax(&one, 1), 0);
}

TEST(SoftmaxCrossEntropy, EmptyBatch) {
  int64_t correct = 0;
  EXPECT_EQ(fff::softmax_cross_entropy(nullptr, nullptr, 0, 3, nullptr, &correct), 0.0);
  EXPECT_EQ(correct, 0);
}

// ---------------------------------------------------------------------------------------------
// distillation loss

TEST(DistillationLoss, GradientMatchesFiniteDifferences) {
  // As for cross-entropy above (check_logit_gradient).
  Rng rng(18);
  for (auto [B, C] : {std::pair<int64_t, int64_t>{1, 2}, {1, 10}, {4, 3}, {5, 7}, {3, 33}})
    for (float T : {1.0f, 2.0f, 4.0f, 0.5f}) {
      auto logits = random_vec(B * C, rng, 3.0f);
      const auto teacher = random_vec(B * C, rng, 5.0f);
      std::vector<float> d(B * C);
      fff::distillation_loss(logits.data(), teacher.data(), B, C, T, d.data());
      ASSERT_NO_FATAL_FAILURE(check_logit_gradient(
          logits, d,
          [&] { return fff::distillation_loss(logits.data(), teacher.data(), B, C, T, nullptr); },
          "B=" + std::to_string(B) + " C=" + std::to_string(C) + " T=" + std::to_string(T)));
    }
}

TEST(DistillationLoss, ZeroForTheTeachersOwnLogitsAndPositiveOtherwise) {
  Rng rng(19);
  const int64_t B = 4, C = 10;
  const auto teacher = random_vec(B * C, rng, 6.0f);
  std::vector<float> d(B * C, 1.0f);
  EXPECT_NEAR(fff::distillation_loss(teacher.data(), teacher.data(), B, C, 4.0f, d.data()), 0.0,
              1e-9);
  for (float g : d) EXPECT_NEAR(g, 0.0f, 1e-7f);
  // Adding a constant to a row changes no softmax.
  auto shifted = teacher;
  for (float& v : shifted) v += 3.5f;
  EXPECT_NEAR(fff::distillation_loss(shifted.data(), teacher.data(), B, C, 2.0f, nullptr), 0.0,
              1e-6);
  const auto other = random_vec(B * C, rng, 6.0f);
  EXPECT_GT(fff::distillation_loss(other.data(), teacher.data(), B, C, 2.0f, nullptr), 1e-3);
}

TEST(DistillationLoss, MatchesTheDirectFormulaInDouble) {
  // T^2 sum_j p_j log(p_j / q_j) / B, softmaxes written out plainly.
  Rng rng(20);
  const int64_t B = 3, C = 6;
  const float T = 3.0f;
  const auto s = random_vec(B * C, rng, 4.0f), t = random_vec(B * C, rng, 4.0f);
  double expect = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    double zs = 0.0, zt = 0.0;
    for (int64_t j = 0; j < C; ++j) {
      zs += std::exp(s[r * C + j] / static_cast<double>(T));
      zt += std::exp(t[r * C + j] / static_cast<double>(T));
    }
    for (int64_t j = 0; j < C; ++j) {
      const double p = std::exp(t[r * C + j] / static_cast<double>(T)) / zt;
      const double q = std::exp(s[r * C + j] / static_cast<double>(T)) / zs;
      expect += T * T * p * std::log(p / q);
    }
  }
  EXPECT_NEAR(fff::distillation_loss(s.data(), t.data(), B, C, T, nullptr), expect / B, 1e-9);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Training vector kernels (dot, axpy) against double references, on every instruction set the
// CPU supports: each is forced in turn through Highway's test hook, so a portable build's
// targets are all checked, not only the one this machine would pick.

namespace {

using fff_test::for_each_target;

const int64_t kVecSizes[] = {0, 1, 2, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 1023};

}  // namespace

TEST(VecKernels, DotMatchesDoubleReferenceOnEveryTarget) {
  for_each_target([] {
    Rng rng(11);
    for (int64_t n : kVecSizes) {
      // Odd offsets: unaligned starts, as rows of odd widths give.
      const auto a = random_vec(n + 3, rng), b = random_vec(n + 5, rng);
      const float* pa = a.data() + 3;
      const float* pb = b.data() + 5;
      double ref = 0.0, mag = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(pa[i]) * pb[i];
        mag += std::fabs(static_cast<double>(pa[i]) * pb[i]);
      }
      const float got = fff::cpu::dot(pa, pb, n);
      // Worst-case float summation error (n rounding steps of 2^-24 each, plus the products).
      const double tol = (static_cast<double>(n) + 2.0) * 0x1p-24 * mag;
      EXPECT_NEAR(got, ref, tol) << "n=" << n;
      EXPECT_EQ(got, fff::cpu::dot(pa, pb, n)) << "n=" << n << ": not deterministic";
    }
  });
}

TEST(VecKernels, DotOfZeroLengthIsZeroAndReadsNothing) {
  for_each_target([] { EXPECT_EQ(fff::cpu::dot(nullptr, nullptr, 0), 0.0f); });
}

TEST(VecKernels, AxpyMatchesDoubleReferenceOnEveryTargetAndLeavesTheRestAlone) {
  for_each_target([] {
    Rng rng(12);
    for (int64_t n : kVecSizes) {
      const auto x = random_vec(n + 1, rng);
      const auto y0 = random_vec(n + 2, rng);  // y0[n + 1] is a guard past the end
      auto y = y0;
      const float alpha = rng.uniform() * 4.0f - 2.0f;
      fff::cpu::axpy(alpha, x.data() + 1, y.data() + 1, n);
      EXPECT_EQ(y[0], y0[0]);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = static_cast<double>(y0[i + 1]) + static_cast<double>(alpha) * x[i + 1];
        // One product and one sum, each rounded at most once.
        const double tol = 0x1p-23 * (std::fabs(y0[i + 1]) + std::fabs(alpha * x[i + 1]));
        ASSERT_NEAR(y[i + 1], ref, tol) << "n=" << n << " i=" << i;
      }
      EXPECT_EQ(y[n + 1], y0[n + 1]) << "n=" << n << ": wrote past the end";
    }
  });
}

TEST(VecKernels, ForcingATargetDispatchesToIt) {
  // Guards the test hook itself: if forcing a target had no effect, the loops above would check
  // one target many times.
  const auto targets = hwy::SupportedAndGeneratedTargets();
  EXPECT_FALSE(targets.empty());
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    EXPECT_STREQ(fff::cpu::vec_simd_target(), hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Says which targets the loops above run on (a failure names its target through SCOPED_TRACE, a
// pass names none): scripts/cross_aarch64.sh reports them for each CPU it emulates.
TEST(VecKernels, PrintsTheTargetsItRuns) {
  std::string names;
  for (int64_t target : hwy::SupportedAndGeneratedTargets())
    names += std::string(" ") + hwy::TargetName(target);
  std::printf("Highway targets:%s\n", names.c_str());
  EXPECT_FALSE(names.empty());
}

TEST(VecKernels, OptimizerUpdatesAndMulMatchScalarFormulasOnEveryTarget) {
  for_each_target([] {
    Rng rng(13);
    const float lr = 0.05f, mu = 0.9f, b1 = 0.9f, b2 = 0.999f, c1 = 1.7f, c2 = 3.1f, eps = 1e-8f;
    for (int64_t n : kVecSizes) {
      const auto g = random_vec(n, rng), w0 = random_vec(n, rng), m0 = random_vec(n, rng);
      auto v0 = random_vec(n, rng, 0.5f);
      for (float& x : v0) x = 0.25f + std::fabs(x);  // positive, so the step stays O(lr)
      // Each formula in double, with a relative tolerance of a few float roundings.
      auto near = [&](float got, double ref, const char* what, int64_t i) {
        ASSERT_NEAR(got, ref, 4 * 0x1p-24 * (std::fabs(ref) + 1.0))
            << what << " n=" << n << " i=" << i;
      };
      auto w = w0;
      fff::cpu::sgd_update(lr, g.data(), w.data(), n);
      for (int64_t i = 0; i < n; ++i) near(w[i], w0[i] - static_cast<double>(lr) * g[i], "sgd", i);
      auto m = m0;
      w = w0;
      fff::cpu::sgd_momentum_update(lr, mu, g.data(), m.data(), w.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double mr = static_cast<double>(mu) * m0[i] + g[i];
        near(m[i], mr, "momentum m", i);
        near(w[i], w0[i] - lr * mr, "momentum w", i);
      }
      m = m0;
      auto v = v0;
      w = w0;
      fff::cpu::adam_update(lr, b1, b2, c1, c2, eps, g.data(), m.data(), v.data(), w.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double mr = static_cast<double>(b1) * m0[i] + (1.0 - b1) * g[i];
        const double vr = static_cast<double>(b2) * v0[i] + (1.0 - b2) * g[i] * g[i];
        near(m[i], mr, "adam m", i);
        near(v[i], vr, "adam v", i);
        near(w[i], w0[i] - lr * (mr * c1) / (std::sqrt(vr * c2) + eps), "adam w", i);
      }
      std::vector<float> out(static_cast<size_t>(n));
      fff::cpu::mul(g.data(), w0.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i)
        EXPECT_EQ(out[i], g[i] * w0[i]) << "n=" << n << " i=" << i;  // one rounding either way
    }
  });
}

TEST(VecKernels, ScanComposeMatchesScalarFormulaInPlaceAndNotOnEveryTarget) {
  for_each_target([] {
    Rng rng(14);
    for (int64_t n : kVecSizes) {
      const auto a = random_vec(n, rng), b = random_vec(n, rng);
      const auto ap = random_vec(n, rng), bp = random_vec(n, rng);
      std::vector<float> ao(static_cast<size_t>(n)), bo(static_cast<size_t>(n));
      fff::cpu::scan_compose(a.data(), b.data(), ap.data(), bp.data(), ao.data(), bo.data(), n);
      auto ai = a, bi = b;  // in place, as Blelloch's sweeps call it
      fff::cpu::scan_compose(ai.data(), bi.data(), ap.data(), bp.data(), ai.data(), bi.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double bref = static_cast<double>(a[i]) * bp[i] + b[i];
        EXPECT_EQ(ao[i], a[i] * ap[i]) << "n=" << n << " i=" << i;  // one rounding
        ASSERT_NEAR(bo[i], bref, 0x1p-23 * (std::fabs(a[i] * bp[i]) + std::fabs(b[i])))
            << "n=" << n << " i=" << i;
        EXPECT_EQ(ai[i], ao[i]) << "n=" << n << " i=" << i;
        EXPECT_EQ(bi[i], bo[i]) << "n=" << n << " i=" << i;
      }
    }
  });
}

TEST(VecKernels, ReluForwardAndBackwardMatchTheScalarRuleOnEveryTarget) {
  for_each_target([] {
    Rng rng(15);
    for (int64_t n : kVecSizes) {
      auto z = random_vec(n, rng);
      const auto da = random_vec(n, rng);
      // Exact zeros, negative zero and NaN take the "not positive" branch.
      if (n > 3) {
        z[0] = 0.0f;
        z[1] = -0.0f;
        z[2] = std::numeric_limits<float>::quiet_NaN();
      }
      std::vector<float> y(static_cast<size_t>(n)), dz(static_cast<size_t>(n));
      fff::cpu::relu(z.data(), y.data(), n);
      fff::cpu::relu_backward(z.data(), da.data(), dz.data(), n);
      auto inplace = da;
      fff::cpu::relu_backward(z.data(), inplace.data(), inplace.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const bool pos = z[i] > 0.0f;
        EXPECT_EQ(y[i], pos ? z[i] : 0.0f) << "n=" << n << " i=" << i;
        EXPECT_EQ(dz[i], pos ? da[i] : 0.0f) << "n=" << n << " i=" << i;
        EXPECT_EQ(inplace[i], dz[i]) << "n=" << n << " i=" << i;
        EXPECT_FALSE(std::signbit(y[i]) && !pos) << "n=" << n << " i=" << i << ": -0 kept";
      }
    }
  });
}

// The pre-packed product against gemm_reference on every target: odd shapes (partial panels and
// row tiles, M = 1, K = 1), both storage orders of B, with and without bias and accumulation,
// a leading dimension wider than the matrix; and the same bits on 1 and 2 threads.
TEST(PackedGemm, MatchesTheReferenceOnEveryTargetAndThreadCount) {
  for_each_target([] {
    Rng rng(21);
    fff::Context one(1), two(2);
    for (int64_t M : {1, 5, 6, 7, 13, 40})
      for (int64_t N : {1, 7, 16, 33, 100})
        for (int64_t K : {1, 3, 17, 130})
          for (int variant = 0; variant < 4; ++variant) {
            const bool trans = variant & 1, with_bias = variant & 2, accumulate = (M + N) % 2;
            const int64_t lda = K + 3, ldb = (trans ? K : N) + 2, ldc = N + 5;
            const auto A = random_vec(M * lda, rng);
            const auto B = random_vec((trans ? N : K) * ldb, rng);
            const auto bias = random_vec(N, rng);
            const auto C0 = random_vec(M * ldc, rng);
            // Reference: C = A B + (accumulate ? C : 0), then the bias on every row.
            std::vector<float> want = C0;
            fff::gemm_reference(false, trans, M, N, K, 1.0f, A.data(), lda, B.data(), ldb,
                                accumulate ? 1.0f : 0.0f, want.data(), ldc);
            if (with_bias)
              for (int64_t r = 0; r < M; ++r)
                for (int64_t j = 0; j < N; ++j) want[r * ldc + j] += bias[j];
            const fff::PackedMatrix P = fff::pack_matrix(B.data(), ldb, trans, K, N);
            std::vector<float> got1 = C0, got2 = C0;
            fff::gemm_packed(one, M, A.data(), lda, P, with_bias ? bias.data() : nullptr,
                             accumulate, got1.data(), ldc);
            fff::gemm_packed(two, M, A.data(), lda, P, with_bias ? bias.data() : nullptr,
                             accumulate, got2.data(), ldc);
            const std::string tag = "M=" + std::to_string(M) + " N=" + std::to_string(N) +
                                    " K=" + std::to_string(K) + " variant " +
                                    std::to_string(variant);
            for (int64_t r = 0; r < M; ++r)
              for (int64_t j = 0; j < ldc; ++j) {
                const int64_t i = r * ldc + j;
                if (j >= N) {  // the padding between rows of C is never written
                  ASSERT_EQ(got1[i], C0[i]) << tag;
                  continue;
                }
                ASSERT_TRUE(std::isfinite(got1[i])) << tag;
                ASSERT_NEAR(got1[i], want[i], 1e-5f * (1.0f + static_cast<float>(K))) << tag;
                ASSERT_EQ(got1[i], got2[i]) << tag << ": differs between 1 and 2 threads";
              }
          }
  });
}

TEST(PackedGemm, ARowDoesNotDependOnTheRowsAroundItAndBadUseIsRefused) {
  Rng rng(22);
  fff::Context ctx(2);
  const int64_t K = 384, N = 1152, M = 23;
  const auto A = random_vec(M * K, rng), B = random_vec(N * K, rng);
  const fff::PackedMatrix P = fff::pack_matrix(B.data(), K, true, K, N);
  std::vector<float> all(static_cast<size_t>(M * N)), single(static_cast<size_t>(N));
  fff::gemm_packed(ctx, M, A.data(), K, P, nullptr, false, all.data(), N);
  for (int64_t r : {0, 5, 6, 22}) {
    fff::gemm_packed(ctx, 1, A.data() + r * K, K, P, nullptr, false, single.data(), N);
    for (int64_t j = 0; j < N; ++j) ASSERT_EQ(single[j], all[r * N + j]) << "row " << r;
  }
  fff::gemm_packed(ctx, 0, nullptr, K, P, nullptr, false, nullptr, N);  // nothing to do
  EXPECT_THROW(fff::gemm_packed(ctx, -1, A.data(), K, P, nullptr, false, all.data(), N),
               fff::Error);
  EXPECT_THROW(fff::pack_matrix(B.data(), K, false, -1, N), fff::Error);
}

// ---------------------------------------------------------------------------------------------
// cache size

TEST(CacheSize, ParsesSysfsSizesAndReportsAPlausibleL2) {
  EXPECT_EQ(fff::cpu::parse_cache_size("1024K"), int64_t{1} << 20);
  EXPECT_EQ(fff::cpu::parse_cache_size("512K\n"), int64_t{512} << 10);
  EXPECT_EQ(fff::cpu::parse_cache_size("2M"), int64_t{2} << 20);
  EXPECT_EQ(fff::cpu::parse_cache_size("65536"), 65536);
  for (const char* bad : {"", "K", "-4K", "0K", "12G", "abc"})
    EXPECT_EQ(fff::cpu::parse_cache_size(bad), 0) << bad;
  // Whatever the machine: between 64 KB and 64 MB, and the same on every call.
  const int64_t l2 = fff::cpu::l2_cache_bytes();
  EXPECT_GE(l2, int64_t{64} << 10);
  EXPECT_LE(l2, int64_t{64} << 20);
  EXPECT_EQ(fff::cpu::l2_cache_bytes(), l2);
}
