// Tests for the CMM inference engine: its SIMD kernels against naive double loops on odd sizes,
// and against each other (dot pairs vs dot rows, fp32 vs half weights),
// and both neuron FFF paths (row at a time, grouped) against the naive reference on random
// shapes (K, D from 0 to 12, odd widths, batches 1 to 1000), with ties at z = 0, bitwise
// agreement between paths, tuning options and thread counts, and streamed outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/cmm_kernels.h"
#include "fff/core/context.h"
#include "fff/engine/cmm.h"
#include "fff/layers/ff/neuron_fff.h"
#include "fff/testing/ff.h"
#include "hwy_targets.h"
#include "test_util.h"

namespace {

using fff::Activation;
using fff::Rng;
using namespace fff_test;

const Activation kActs[] = {Activation::relu, Activation::gelu, Activation::identity};

// ---------------------------------------------------------------------------------------------
// Kernels

TEST(CmmKernels, DotRowsMatchesDoubleOddSizes) {
  Rng rng(1);
  for (int64_t n : {1, 3, 15, 16, 17, 31, 48, 63, 64, 65, 100, 129, 768, 771}) {
    for (int64_t rows : {1, 2, 3, 4, 5, 7, 9}) {
      const auto x = random_vec(rows * n, rng), w = random_vec(n, rng);
      std::vector<const float*> xp(rows);
      for (int64_t r = 0; r < rows; ++r) xp[r] = x.data() + r * n;
      std::vector<float> out(rows, NAN);
      fff::cpu::cmm_dot_rows(xp.data(), rows, w.data(), n, out.data());
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0.0;
        for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(x[r * n + i]) * w[i];
        EXPECT_NEAR(out[r], ref, 1e-5 * std::sqrt(static_cast<double>(n))) << n << " " << r;
        // A row's result does not depend on the rows computed beside it.
        float alone = NAN;
        fff::cpu::cmm_dot_rows(&xp[r], 1, w.data(), n, &alone);
        EXPECT_EQ(alone, out[r]) << n << " " << r;
      }
    }
  }
}

// One level of a row's walk (cmm_dot_axpy) gives cmm_dot_rows' dot and, level after level,
// cmm_combine_rows' sum of the path's output rows, bit for bit: the latency path must agree with
// the batched one. Odd widths, in != out, no input columns, fp32 and half weights, every target.
TEST(CmmKernels, DotAxpyEqualsDotRowsAndCombineBitwise) {
  for_each_target([] {
    Rng rng(4);
    for (int64_t n : {0, 1, 15, 17, 64, 65, 100, 768, 771}) {
      for (int64_t m : {1, 3, 16, 63, 64, 100, 771}) {
        constexpr int64_t kTerms = 5;
        const auto x = random_vec(n, rng), w = random_vec(n, rng), init = random_vec(m, rng);
        const auto v = random_vec(kTerms * m, rng), a = random_vec(kTerms, rng);
        std::vector<uint16_t> wh(n), vh(kTerms * m);
        fff::cpu::to_half(w.data(), n, wh.data());
        fff::cpu::to_half(v.data(), kTerms * m, vh.data());
        std::vector<const float*> vp(kTerms);
        std::vector<const uint16_t*> vhp(kTerms);
        for (int64_t j = 0; j < kTerms; ++j) vp[j] = v.data() + j * m, vhp[j] = vh.data() + j * m;
        const float* xp = x.data();
        float dot = NAN, dot_half = NAN;
        fff::cpu::cmm_dot_rows(&xp, 1, w.data(), n, &dot);
        fff::cpu::cmm_dot_rows(&xp, 1, wh.data(), n, &dot_half);
        std::vector<float> want(m, NAN), want_half(m, NAN);
        float* yp = want.data();
        fff::cpu::cmm_combine_rows(a.data(), kTerms, kTerms, vp.data(), m, init.data(), false,
                                   false, &yp, 1);
        yp = want_half.data();
        fff::cpu::cmm_combine_rows(a.data(), kTerms, kTerms, vhp.data(), m, init.data(), false,
                                   false, &yp, 1);
        std::vector<float> y = init, y_half = init;
        for (int64_t j = 0; j < kTerms; ++j) {
          const float z = fff::cpu::cmm_dot_axpy(x.data(), w.data(), n, a[j], vp[j], y.data(), m);
          const float z_half =
              fff::cpu::cmm_dot_axpy(x.data(), wh.data(), n, a[j], vhp[j], y_half.data(), m);
          if (n == 0) continue;
          ASSERT_EQ(z, dot) << n << " " << m;
          ASSERT_EQ(z_half, dot_half) << n << " " << m;
        }
        EXPECT_TRUE(bitwise_equal(y, want)) << n << " " << m;
        EXPECT_TRUE(bitwise_equal(y_half, want_half)) << n << " " << m;
        // Without v only the dot is computed, and y is left alone.
        std::vector<float> untouched = init;
        EXPECT_EQ(fff::cpu::cmm_dot_axpy(x.data(), w.data(), n, 1.0f,
                                         static_cast<const float*>(nullptr), untouched.data(), m),
                  n == 0 ? 0.0f : dot);
        EXPECT_TRUE(bitwise_equal(untouched, init));
      }
    }
  });
}

TEST(CmmKernels, DotPairsEqualDotRowsBitwise) {
  Rng rng(3);
  for (int64_t n : {1, 15, 17, 64, 100, 768, 771}) {
    for (int64_t rows : {1, 2, 3, 4, 5, 7, 8}) {
      const auto x = random_vec(rows * n, rng), w = random_vec(rows * n, rng);
      std::vector<uint16_t> half(rows * n);
      fff::cpu::to_half(w.data(), rows * n, half.data());
      std::vector<const float*> xp(rows), wp(rows);
      std::vector<const uint16_t*> hp(rows);
      for (int64_t r = 0; r < rows; ++r) {
        xp[r] = x.data() + r * n;
        wp[r] = w.data() + r * n;
        hp[r] = half.data() + r * n;
      }
      std::vector<float> pairs(rows, NAN), pairs_half(rows, NAN);
      fff::cpu::cmm_dot_pairs(xp.data(), wp.data(), rows, n, pairs.data());
      fff::cpu::cmm_dot_pairs(xp.data(), hp.data(), rows, n, pairs_half.data());
      for (int64_t r = 0; r < rows; ++r) {
        float one = NAN, one_half = NAN;
        fff::cpu::cmm_dot_rows(&xp[r], 1, wp[r], n, &one);
        fff::cpu::cmm_dot_rows(&xp[r], 1, hp[r], n, &one_half);
        EXPECT_EQ(pairs[r], one) << n << " " << rows << " " << r;
        EXPECT_EQ(pairs_half[r], one_half) << n << " " << rows << " " << r;
      }
    }
  }
}

TEST(CmmKernels, DotMatrixMatchesDoubleOddSizes) {
  Rng rng(2);
  for (int64_t n : {1, 7, 16, 33, 784}) {
    for (int64_t rows : {1, 2, 3, 4, 5, 9}) {
      for (int64_t nw : {1, 2, 3, 4, 5, 8, 9}) {
        const int64_t ldw = n + 3, ldo = nw + 2;
        const auto x = random_vec(rows * n, rng), w = random_vec(nw * ldw, rng);
        std::vector<const float*> xp(rows);
        for (int64_t r = 0; r < rows; ++r) xp[r] = x.data() + r * n;
        std::vector<float> out(rows * ldo, -7.0f);
        fff::cpu::cmm_dot_matrix(xp.data(), rows, w.data(), ldw, n, nw, out.data(), ldo);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t k = 0; k < nw; ++k) {
            double ref = 0.0;
            for (int64_t i = 0; i < n; ++i)
              ref += static_cast<double>(x[r * n + i]) * w[k * ldw + i];
            EXPECT_NEAR(out[r * ldo + k], ref, 1e-5 * std::sqrt(static_cast<double>(n)));
          }
          for (int64_t k = nw; k < ldo; ++k) EXPECT_EQ(out[r * ldo + k], -7.0f);  // untouched
        }
        // Requesting rows ahead changes no bit (and reads none past the rows given).
        for (int64_t ahead : {1, 4, 5}) {
          std::vector<float> again(rows * ldo, -7.0f);
          fff::cpu::cmm_dot_matrix(xp.data(), rows, w.data(), ldw, n, nw, again.data(), ldo, ahead);
          EXPECT_EQ(again, out) << n << " " << rows << " " << nw << " ahead " << ahead;
        }
      }
    }
  }
}

TEST(CmmKernels, CombineRowsMatchesDoubleInEveryMode) {
  Rng rng(3);
  for (int64_t n : {1, 5, 16, 17, 64, 65, 100, 768}) {
    for (int64_t rows : {1, 3, 4, 6}) {
      for (int64_t terms : {1, 2, 12}) {
        for (int mode = 0; mode < 4; ++mode) {  // zero, init, accumulate, streamed
          const auto a = random_vec(rows * terms, rng), w = random_vec(terms * n, rng);
          const auto init = random_vec(n, rng);
          std::vector<const float*> wp(terms);
          for (int64_t j = 0; j < terms; ++j) wp[j] = w.data() + j * n;
          fff::Tensor y({rows, n});  // 64-byte aligned storage, as streaming needs
          for (float& v : y.data) v = rng.uniform(-1.0f, 1.0f);
          const std::vector<float> y0(y.data.begin(), y.data.end());
          std::vector<float*> yp(rows);
          for (int64_t r = 0; r < rows; ++r) yp[r] = y.row(r);
          fff::cpu::cmm_combine_rows(a.data(), terms, terms, wp.data(), n,
                                     mode == 1 ? init.data() : nullptr, mode == 2, mode == 3,
                                     yp.data(), rows);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i) {
              double ref = mode == 1 ? init[i] : mode == 2 ? y0[r * n + i] : 0.0;
              for (int64_t j = 0; j < terms; ++j)
                ref += static_cast<double>(a[r * terms + j]) * w[j * n + i];
              ASSERT_NEAR(y.data[r * n + i], ref, 1e-5) << n << " " << rows << " " << mode;
            }
        }
      }
    }
  }
}

TEST(CmmKernels, HalfPrecisionRoundsToNearestEven) {
  struct Case {
    float v;
    uint16_t bits;
    float back;  // the half's exact value
  };
  const Case cases[] = {{0.0f, 0x0000, 0.0f},
                        {1.0f, 0x3C00, 1.0f},
                        {-2.5f, 0xC100, -2.5f},
                        {65504.0f, 0x7BFF, 65504.0f},     // the largest half
                        {0x1p-24f, 0x0001, 0x1p-24f},     // the smallest subnormal
                        {0x1p-14f, 0x0400, 0x1p-14f},     // the smallest normal
                        {1.0f + 0x1p-11f, 0x3C00, 1.0f},  // a tie goes to the even side
                        {1.0f + 3 * 0x1p-11f, 0x3C02, 1.0f + 0x1p-9f},           // and this one up
                        {1.0f + 0x1p-11f + 0x1p-20f, 0x3C01, 1.0f + 0x1p-10f}};  // above a tie
  for (const Case& c : cases) {
    uint16_t bits = 0xFFFF;
    fff::cpu::to_half(&c.v, 1, &bits);
    EXPECT_EQ(bits, c.bits) << c.v;
    EXPECT_EQ(fff::cpu::half_to_float(c.bits), c.back) << c.v;
  }
  const float minus_zero = -0.0f;
  uint16_t bits = 0;
  fff::cpu::to_half(&minus_zero, 1, &bits);
  EXPECT_EQ(bits, 0x8000);
  // Random values of every length (vector body and padded tail): within half an ulp.
  Rng rng(9);
  for (int64_t n : {1, 5, 16, 17, 100}) {
    const auto v = random_vec(n, rng);
    std::vector<uint16_t> bits(n);
    fff::cpu::to_half(v.data(), n, bits.data());
    for (int64_t i = 0; i < n; ++i) {
      const float r = fff::cpu::half_to_float(bits[i]);
      int exponent = 0;
      std::frexp(v[i], &exponent);  // |v| in [2^(exponent-1), 2^exponent): half an ulp is
      const double half_ulp = std::ldexp(1.0, std::max(exponent, -13) - 12);  // 2^(e-12)
      EXPECT_LE(std::fabs(r - v[i]), half_ulp) << v[i];
    }
  }
  EXPECT_TRUE(std::isnan(fff::cpu::half_to_float(0x7E00)));
  EXPECT_EQ(fff::cpu::half_to_float(0xFC00), -INFINITY);
}

TEST(CmmEngine, HalfWeightsBeyondRangeAreRefused) {
  Rng rng(10);
  fff::NeuronFFFConfig cfg;
  cfg.in = 8;
  cfg.out = 8;
  cfg.depth = 1;
  auto m = fff::make_neuron_fff(cfg, rng);
  m.w2.value.data[3] = 70000.0f;
  try {
    fff::make_half_weights(m);
    FAIL() << "no error";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("w2"), std::string::npos) << e.what();
  }
}

TEST(CmmKernels, DispatchTargetIsNamed) {
  const std::string target = fff::cmm_simd_target();
  EXPECT_FALSE(target.empty());
}

// ---------------------------------------------------------------------------------------------
// Neuron FFF engine

// Runs every inference path on x and checks them against the reference and each other.
void check_all_paths(const fff::NeuronFFF& m, const std::vector<float>& x, int64_t B,
                     const std::string& what) {
  fff::Context ectx(1);
  const int64_t out = m.cfg.out;
  std::vector<float> ref(B * out, NAN), rowwise(B * out, NAN), batched(B * out, NAN),
      tuned(B * out, NAN), picked(B * out, NAN), two(B * out, NAN), two_default(B * out, NAN),
      three(B * out, NAN);
  fff::neuron_fff_forward_reference(m, x.data(), B, ref.data(), nullptr);
  fff::neuron_fff_infer_rowwise(ectx, m, x.data(), B, rowwise.data());
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, batched.data());
  fff::CmmOptions small;  // many bands and tiny tiles: every regrouping and split is exercised
  small.band_levels = 2;
  small.tile_rows = 5;
  fff::CmmOptions packed = small;  // small buckets share tiles
  packed.pack_rows = 4;
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, tuned.data(), small);
  std::vector<float> tuned_packed(B * out, NAN);
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, tuned_packed.data(), packed);
  fff::neuron_fff_infer(ectx, m, x.data(), B, picked.data());
  {
    // From 128 rows threads split the batch into slices; slices walked in bands (here with tiny
    // tiles) switch to disjoint subtrees below a band.
    fff::Context ctx2(2), ctx3(3);
    fff::neuron_fff_infer_batched(ctx2, m, x.data(), B, two.data(), small);
    fff::neuron_fff_infer_batched(ctx2, m, x.data(), B, two_default.data());
    fff::neuron_fff_infer_batched(ctx3, m, x.data(), B, three.data(), small);
  }
  ASSERT_LE(max_rel_err(rowwise, ref), 1e-5) << what;
  // Each output depends only on its row, in a fixed order: all paths agree bitwise.
  ASSERT_TRUE(bitwise_equal(batched, rowwise)) << what;
  ASSERT_TRUE(bitwise_equal(tuned, rowwise)) << what;
  ASSERT_TRUE(bitwise_equal(tuned_packed, rowwise)) << what;
  ASSERT_TRUE(bitwise_equal(picked, rowwise)) << what;
  ASSERT_TRUE(bitwise_equal(two, rowwise)) << what;
  ASSERT_TRUE(bitwise_equal(two_default, rowwise)) << what;
  ASSERT_TRUE(bitwise_equal(three, rowwise)) << what;
  // Half-precision weights: the same arithmetic as fp32 inference with the rounded weights.
  fff::NeuronFFF rounded = m;
  for (fff::Tensor* w : {&rounded.w1.value, &rounded.w2.value})
    for (float& v : w->data) {
      uint16_t bits;
      fff::cpu::to_half(&v, 1, &bits);
      v = fff::cpu::half_to_float(bits);
    }
  const fff::NeuronFFFHalf half = fff::make_half_weights(m);
  std::vector<float> want(B * out, NAN), half_rowwise(B * out, NAN), half_batched(B * out, NAN),
      half_tuned(B * out, NAN);
  fff::neuron_fff_infer_rowwise(ectx, rounded, x.data(), B, want.data());
  fff::neuron_fff_infer_rowwise(ectx, m, x.data(), B, half_rowwise.data(), &half);
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, half_batched.data(), {}, &half);
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, half_tuned.data(), small, &half);
  std::vector<float> half_unpacked(B * out, NAN);
  fff::CmmOptions unpacked = small;
  unpacked.pack_rows = 0;
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, half_unpacked.data(), unpacked, &half);
  std::vector<float> half_two(B * out, NAN);
  {
    fff::Context ctx2(2);
    fff::neuron_fff_infer_batched(ctx2, m, x.data(), B, half_two.data(), {}, &half);
  }
  ASSERT_TRUE(bitwise_equal(half_rowwise, want)) << what << " (half)";
  ASSERT_TRUE(bitwise_equal(half_batched, want)) << what << " (half)";
  ASSERT_TRUE(bitwise_equal(half_tuned, want)) << what << " (half)";
  ASSERT_TRUE(bitwise_equal(half_unpacked, want)) << what << " (half)";
  ASSERT_TRUE(bitwise_equal(half_two, want)) << what << " (half)";
}

TEST(CmmEngine, MatchesReferenceRandomShapes) {
  fff::Context ectx(2);
  Rng pick(11);
  int redraws = 0;
  for (int it = 0; it < 40; ++it) {
    const int64_t K = 1 + static_cast<int64_t>(pick.below(3));
    const int64_t D = it < 13 ? it : static_cast<int64_t>(pick.below(13));  // every D in 0..12
    const int64_t in = 1 + 2 * static_cast<int64_t>(pick.below(40));        // odd
    const int64_t out = 1 + 2 * static_cast<int64_t>(pick.below(40));       // odd
    const int64_t B = it % 5 == 0 ? 1 : 1 + static_cast<int64_t>(pick.below(1000));
    const auto cfg = neuron_config(in, out, K, D, kActs[pick.below(3)], pick.below(2) != 0);
    const std::string what = neuron_desc(cfg, B);
    // A z within 1e-5 of zero may route differently in float and double: redraw then.
    for (uint64_t seed = 0;; ++seed) {
      ASSERT_LT(seed, 100u) << what;
      Rng rng(7000 + 100 * it + seed);
      const fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
      const auto x = random_vec(B * in, rng);
      fff::NeuronFFFContext ctx;
      std::vector<float> y(B * out);
      fff::neuron_fff_forward(ectx, m, x.data(), B, y.data(), &ctx);
      if (std::any_of(ctx.z.begin(), ctx.z.end(), [](float z) { return std::fabs(z) < 1e-5f; })) {
        ++redraws;
        continue;
      }
      check_all_paths(m, x, B, what);
      break;
    }
  }
  EXPECT_LE(redraws, 20);
}

// Builds a random neuron FFF with seed `seed` and checks every path on B random rows.
void check_random_layer(const fff::NeuronFFFConfig& cfg, int64_t B, uint64_t seed) {
  Rng rng(seed);
  const fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
  const auto x = random_vec(B * cfg.in, rng);
  check_all_paths(m, x, B, neuron_desc(cfg, B));
}

TEST(CmmEngine, WideLayerMatchesReference) {
  // UltraFastBERT's width, several trees, a batch that spans tiles and both threads.
  check_random_layer(neuron_config(768, 768, 2, 7, Activation::gelu, false), 300, 12);
}

TEST(CmmEngine, SlicesEitherSideOfOneTile) {
  // On two threads 513 rows are slices of 256 and 257 rows, one tile (256 rows of width 768) and
  // just over it: both threads must take the same schedule, by subtrees below level 6.
  check_random_layer(neuron_config(768, 768, 1, 8, Activation::gelu, true), 513, 15);
}

TEST(CmmEngine, DeepTreeSmallBatchMatchesReference) {
  // Far more nodes than rows at the deep levels: tiles group their rows by sorting, and rows
  // of a batch that spans threads and tiles become alone at their nodes at different levels.
  check_random_layer(neuron_config(9, 7, 2, 16, Activation::gelu, true), 301, 14);
}

TEST(CmmEngine, StreamedOutputsOfALargeBatch) {
  fff::Context ectx(2);
  // One tree and more than 4 MB of outputs: the batched path writes them with streaming
  // stores, into 64-byte aligned rows.
  const int64_t B = 1500, d = 768;
  const auto cfg = neuron_config(d, d, 1, 6, Activation::gelu, true);
  Rng rng(13);
  const fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
  const auto x = random_vec(B * d, rng);
  fff::Tensor y({B, d}), y_row({B, d});
  fff::neuron_fff_infer_batched(ectx, m, x.data(), B, y.ptr());
  fff::neuron_fff_infer_rowwise(ectx, m, x.data(), B, y_row.ptr());
  EXPECT_TRUE(bitwise_equal(y.data, y_row.data));
  std::vector<float> ref(64 * d);
  fff::neuron_fff_forward_reference(m, x.data(), 64, ref.data(), nullptr);
  EXPECT_LE(max_rel_err(y.ptr(), ref.data(), ref.size()), 1e-5);
}

TEST(CmmEngine, TiesAtZeroGoLeft) {
  // Rows of zeros meet nodes whose bias is zero at even levels: z = 0 exactly there, so those
  // rows go left (right iff z > 0), as the reference does. At odd levels z is the node's bias,
  // so the output shows which way each tie went. Other rows route normally.
  const int64_t B = 40, in = 9, out = 5, D = 5;
  for (int64_t K : {1, 2}) {
    for (Activation act : kActs) {
      const auto cfg = neuron_config(in, out, K, D, act, true);
      Rng rng(14 + K);
      fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
      for (int64_t t = 0; t < K; ++t)
        for (int64_t level = 0; level <= D; level += 2)
          for (int64_t k = (int64_t{1} << level) - 1; k < (int64_t{2} << level) - 1; ++k)
            m.b1.value.data[t * cfg.nodes_per_tree() + k] = 0.0f;
      auto x = random_vec(B * in, rng);
      for (int64_t r = 0; r < B; r += 3) std::fill_n(x.begin() + r * in, in, 0.0f);
      check_all_paths(m, x, B, "ties, K=" + std::to_string(K) + " " + fff::activation_name(act));
      std::vector<float> y_ref(B * out);
      std::vector<int32_t> nodes(B * cfg.path_length());
      fff::neuron_fff_forward_reference(m, x.data(), B, y_ref.data(), nodes.data());
      for (int64_t t = 0; t < K; ++t)
        for (int64_t level = 1; level <= D; level += 2) {  // the level after each tie: left child
          const int64_t parent = nodes[t * (D + 1) + level - 1] - t * cfg.nodes_per_tree();
          EXPECT_EQ(nodes[t * (D + 1) + level], t * cfg.nodes_per_tree() + 2 * parent + 1);
        }
    }
  }
}

TEST(CmmEngine, EmptyBatchDoesNothing) {
  fff::Context ectx(2);
  const auto cfg = neuron_config(4, 3, 1, 3, Activation::gelu, true);
  Rng rng(15);
  const fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
  std::vector<float> y(3, -1.0f);
  fff::neuron_fff_infer(ectx, m, nullptr, 0, y.data());
  fff::neuron_fff_infer_batched(ectx, m, nullptr, 0, y.data());
  EXPECT_EQ(y, std::vector<float>(3, -1.0f));
}

}  // namespace
