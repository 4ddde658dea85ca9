// Invariance tests: leaf FFF of depth 0 equals a dense FF; the hardened training forward equals
// hard inference; fast paths (packed leaf inference, soft training forward, neuron forward)
// equal their naive references on random shapes; ties z = 0 route as documented (leaf FFF
// right, neuron FFF left); 1 thread equals 2 threads bitwise; splitting a batch changes nothing
// at inference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
#include "fff/testing/ff.h"
#include "test_util.h"

namespace {

using fff::Activation;
using fff::Rng;
using namespace fff_test;

const Activation kActs[] = {Activation::relu, Activation::gelu, Activation::identity};

std::string leaf_desc(const fff::LeafFFFConfig& c, int64_t B) {
  return "depth=" + std::to_string(c.depth) + " in=" + std::to_string(c.in) +
         " leaf_width=" + std::to_string(c.leaf_width) + " out=" + std::to_string(c.out) +
         " B=" + std::to_string(B) + " act=" + fff::activation_name(c.act);
}

// ---------------------------------------------------------------------------------------------
// (a) Leaf FFF of depth 0 is a dense FF of width leaf_width.

TEST(LeafDepthZero, EqualsDenseFF) {
  fff::Context ectx(2);
  for (Activation act : kActs) {
    const int64_t B = 9, in = 7, lw = 5, out = 3;
    Rng rng(1);
    fff::LeafFFF leaf = fff::make_leaf_fff({in, out, 0, lw, act}, rng);
    fff::DenseFF dense = fff::make_dense_ff({in, lw, out, act}, rng);
    ASSERT_EQ(leaf.w1.value.shape, dense.w1.value.shape);
    ASSERT_EQ(leaf.b1.value.shape, dense.b1.value.shape);
    ASSERT_EQ(leaf.w2.value.shape, dense.w2.value.shape);
    ASSERT_EQ(leaf.b2.value.size(), dense.b2.value.size());
    dense.w1.value.data = leaf.w1.value.data;
    dense.b1.value.data = leaf.b1.value.data;
    dense.w2.value.data = leaf.w2.value.data;
    dense.b2.value.data = leaf.b2.value.data;
    const auto x = random_vec(B * in, rng), dy = random_vec(B * out, rng);
    const std::string what = fff::activation_name(act);

    // Training forward (soft and hardened: with no nodes they are the same): tolerance 1e-6
    // relative to max |y| (the same products, bias added in another order).
    fff::DenseFFContext dctx;
    std::vector<float> yd(B * out), yl(B * out), yh(B * out), yi(B * out), yr(B * out);
    fff::dense_ff_forward(ectx, dense, x.data(), B, yd.data(), &dctx);
    fff::LeafFFFContext lctx, hctx;
    const double ent = fff::leaf_fff_forward_train(ectx, leaf, x.data(), B, yl.data(), {}, lctx);
    EXPECT_EQ(ent, 0.0) << what;
    EXPECT_LE(max_rel_err(yl, yd), 1e-6) << what;
    fff::LeafTrainMode hard;
    hard.hardened = true;
    fff::leaf_fff_forward_train(ectx, leaf, x.data(), B, yh.data(), hard, hctx);
    EXPECT_LE(max_rel_err(yh, yd), 1e-6) << what;

    // Hard inference (fast and reference): every row reaches leaf 0; tolerance 1e-5.
    std::vector<int32_t> leaves(B, -1), leaves_ref(B, -1);
    fff::leaf_fff_infer(ectx, leaf, x.data(), B, yi.data(), leaves.data());
    fff::leaf_fff_infer_reference(leaf, x.data(), B, yr.data(), leaves_ref.data());
    EXPECT_LE(max_rel_err(yi, yd), 1e-5) << what;
    EXPECT_LE(max_rel_err(yr, yd), 1e-5) << what;
    for (int64_t r = 0; r < B; ++r) {
      EXPECT_EQ(leaves[r], 0);
      EXPECT_EQ(leaves_ref[r], 0);
    }
    // Dense reference agrees too.
    std::vector<float> ydr(B * out);
    fff::dense_ff_forward_reference(dense, x.data(), B, ydr.data());
    EXPECT_LE(max_rel_err(yd, ydr), 1e-5) << what;

    // Gradients: tolerance 1e-6 relative to the largest entry of each.
    std::vector<float> dxd(B * in), dxl(B * in);
    fff::dense_ff_backward(ectx, dense, x.data(), B, dy.data(), dctx, dxd.data());
    fff::leaf_fff_backward_train(ectx, leaf, x.data(), B, dy.data(), 3.0f, lctx, dxl.data());
    EXPECT_LE(max_rel_err(leaf.w1.grad.data, dense.w1.grad.data), 1e-6) << what << " w1";
    EXPECT_LE(max_rel_err(leaf.b1.grad.data, dense.b1.grad.data), 1e-6) << what << " b1";
    EXPECT_LE(max_rel_err(leaf.w2.grad.data, dense.w2.grad.data), 1e-6) << what << " w2";
    EXPECT_LE(max_rel_err(leaf.b2.grad.data, dense.b2.grad.data), 1e-6) << what << " b2";
    EXPECT_LE(max_rel_err(dxl, dxd), 1e-6) << what << " dx";
    EXPECT_EQ(leaf.nodes_w.grad.size(), 0);
    EXPECT_EQ(leaf.nodes_b.grad.size(), 0);
  }
}

// ---------------------------------------------------------------------------------------------
// (b) The soft training forward in hardened mode is hard inference.

TEST(LeafHardened, TrainForwardEqualsInference) {
  fff::Context ectx(2);
  Rng pick(2);
  for (int it = 0; it < 40; ++it) {
    const int64_t depths[] = {1, 2, 3, 4, 5, 6};
    const int64_t ins[] = {1, 3, 17, 64};
    const int64_t lws[] = {1, 2, 3, 8};
    const int64_t outs[] = {1, 10, 33};
    const int64_t Bs[] = {1, 2, 37, 200};
    const fff::LeafFFFConfig cfg{ins[pick.below(4)], outs[pick.below(3)], depths[pick.below(6)],
                                 lws[pick.below(4)], kActs[pick.below(3)]};
    const int64_t B = Bs[pick.below(4)];
    Rng rng(1000 + it);
    const fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
    const auto x = random_vec(B * cfg.in, rng);
    const std::string what = leaf_desc(cfg, B);

    fff::LeafTrainMode mode;
    mode.hardened = true;
    fff::LeafFFFContext ctx;
    std::vector<float> yt(B * cfg.out), yi(B * cfg.out), yr(B * cfg.out);
    fff::leaf_fff_forward_train(ectx, m, x.data(), B, yt.data(), mode, ctx);
    std::vector<int32_t> leaves(B, -1), leaves_ref(B, -1);
    fff::leaf_fff_infer(ectx, m, x.data(), B, yi.data(), leaves.data());
    fff::leaf_fff_infer_reference(m, x.data(), B, yr.data(), leaves_ref.data());

    EXPECT_EQ(leaves, leaves_ref) << what;
    EXPECT_LE(max_rel_err(yt, yi), 1e-5) << what;
    EXPECT_LE(max_rel_err(yt, yr), 1e-5) << what;
    // The hardened reference forward agrees as well.
    std::vector<float> yhr(B * cfg.out);
    fff::leaf_fff_forward_train_reference(m, x.data(), B, yhr.data(), mode);
    EXPECT_LE(max_rel_err(yt, yhr), 1e-5) << what;
  }
}

// ---------------------------------------------------------------------------------------------
// (c) Packed hard inference against the reference on random shapes.

TEST(LeafInfer, PackedMatchesReferenceRandomShapes) {
  fff::Context ectx(2);
  const std::vector<int64_t> depths = {0, 1, 2, 3, 4, 5, 6}, ins = {1, 3, 17, 64, 100, 784},
                             lws = {1, 2, 3, 8, 13}, outs = {1, 10, 33},
                             Bs = {1, 2, 37, 1000, 3000};
  Rng pick(3);
  auto any = [&](const std::vector<int64_t>& v) { return v[pick.below(v.size())]; };
  struct Shape {
    fff::LeafFFFConfig cfg;
    int64_t B;
  };
  // Reference cost per config (multiply-adds) kept under 1e7 so the test stays fast.
  auto cost = [](const Shape& s) {
    return s.B * (s.cfg.depth * s.cfg.in + s.cfg.leaf_width * s.cfg.out * s.cfg.in);
  };
  std::vector<Shape> shapes;
  auto add = [&](int axis, int64_t value) {
    for (;;) {
      Shape s{{any(ins), any(outs), any(depths), any(lws), kActs[pick.below(3)]}, any(Bs)};
      if (axis == 0) s.cfg.depth = value;
      if (axis == 1) s.cfg.in = value;
      if (axis == 2) s.cfg.leaf_width = value;
      if (axis == 3) s.cfg.out = value;
      if (axis == 4) s.B = value;
      if (cost(s) <= 10'000'000) {
        shapes.push_back(s);
        return;
      }
    }
  };
  // Every value of every axis at least once, then random combinations.
  for (int64_t v : depths) add(0, v);
  for (int64_t v : ins) add(1, v);
  for (int64_t v : lws) add(2, v);
  for (int64_t v : outs) add(3, v);
  for (int64_t v : Bs) add(4, v);
  for (int i = 0; i < 40; ++i) add(-1, 0);
  // The largest corners.
  shapes.push_back({{784, 10, 6, 1, Activation::relu}, 1000});
  shapes.push_back({{784, 33, 6, 13, Activation::gelu}, 20});
  shapes.push_back({{100, 33, 6, 13, Activation::identity}, 37});

  for (size_t si = 0; si < shapes.size(); ++si) {
    const auto& [cfg, B] = shapes[si];
    Rng rng(5000 + si);
    const fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
    const auto x = random_vec(B * cfg.in, rng);
    const std::string what = leaf_desc(cfg, B);
    std::vector<float> y(B * cfg.out, NAN), y2(B * cfg.out, NAN), yr(B * cfg.out, NAN);
    std::vector<int32_t> leaves(B, -1), leaves_ref(B, -1);
    const fff::LeafFFFPacked packed = fff::pack_leaf_fff(m);
    fff::leaf_fff_infer(ectx, packed, x.data(), B, y.data(), leaves.data());
    fff::leaf_fff_infer_reference(m, x.data(), B, yr.data(), leaves_ref.data());
    ASSERT_LE(max_rel_err(y, yr), 1e-5) << what;
    ASSERT_EQ(leaves, leaves_ref) << what;
    // The unpacked overload and a null leaves pointer give the same output.
    fff::leaf_fff_infer(ectx, m, x.data(), B, y2.data(), nullptr);
    ASSERT_TRUE(bitwise_equal(y, y2)) << what;
    for (int32_t j : leaves) ASSERT_TRUE(j >= 0 && j < cfg.n_leaves()) << what;
  }
}

// ---------------------------------------------------------------------------------------------
// (d) Soft training forward against its reference (soft and hardened, with and without leak).

TEST(LeafTrain, ForwardMatchesReferenceRandomShapes) {
  fff::Context ectx(2);
  Rng pick(4);
  for (int it = 0; it < 120; ++it) {
    const int64_t depths[] = {0, 1, 2, 3, 4};
    const int64_t ins[] = {1, 3, 17, 64};
    const int64_t lws[] = {1, 2, 3, 8};
    const int64_t outs[] = {1, 3, 10};
    const int64_t Bs[] = {1, 2, 9, 37};
    const fff::LeafFFFConfig cfg{ins[pick.below(4)], outs[pick.below(3)], depths[pick.below(5)],
                                 lws[pick.below(4)], kActs[pick.below(3)]};
    const int64_t B = Bs[pick.below(4)];
    const bool hardened = (it & 1) != 0, leak = (it & 2) != 0;
    Rng rng(7000 + it);
    const fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
    const auto x = random_vec(B * cfg.in, rng);
    const auto flips = fff::sample_region_leak(B, cfg.n_nodes(), 0.25f, rng);
    fff::LeafTrainMode mode;
    mode.hardened = hardened;
    if (leak) mode.flips = &flips;
    const std::string what =
        leaf_desc(cfg, B) + (hardened ? " hardened" : " soft") + (leak ? " leak" : "");

    fff::LeafFFFContext ctx;
    std::vector<float> y(B * cfg.out, NAN), yr(B * cfg.out, NAN);
    const double ent = fff::leaf_fff_forward_train(ectx, m, x.data(), B, y.data(), mode, ctx);
    fff::leaf_fff_forward_train_reference(m, x.data(), B, yr.data(), mode);
    ASSERT_LE(max_rel_err(y, yr), 1e-5) << what;

    // The returned value is the mean entropy of sigmoid(z) over (sample, node), before leak
    // and hardening; z in double here. Tolerance 1e-5 absolute.
    const int64_t n = cfg.n_nodes();
    double expect = 0.0;
    for (int64_t r = 0; r < B; ++r)
      for (int64_t i = 0; i < n; ++i) {
        double z = m.nodes_b.value.data[i];
        for (int64_t k = 0; k < cfg.in; ++k)
          z += static_cast<double>(m.nodes_w.value.row(i)[k]) * x[r * cfg.in + k];
        expect += fff::binary_entropy(1.0 / (1.0 + std::exp(-z)));
      }
    expect = n > 0 ? expect / static_cast<double>(B * n) : 0.0;
    ASSERT_NEAR(ent, expect, 1e-5) << what;
  }
}

TEST(LeafTrain, RegionLeakRateAndShape) {
  Rng rng(5);
  const auto none = fff::sample_region_leak(10, 7, 0.0f, rng);
  EXPECT_EQ(none.size(), 70u);
  for (uint8_t f : none) EXPECT_EQ(f, 0);
  const auto all = fff::sample_region_leak(10, 7, 1.0f, rng);
  for (uint8_t f : all) EXPECT_EQ(f, 1);
  const auto some = fff::sample_region_leak(1000, 10, 0.2f, rng);
  int64_t count = 0;
  for (uint8_t f : some) count += f;
  EXPECT_NEAR(static_cast<double>(count) / some.size(), 0.2, 0.02);
  // Deterministic for a seed.
  Rng a(9), b(9);
  EXPECT_EQ(fff::sample_region_leak(50, 3, 0.5f, a), fff::sample_region_leak(50, 3, 0.5f, b));
}

// ---------------------------------------------------------------------------------------------
// (e) Ties at exactly zero: leaf FFF goes right (z >= 0), neuron FFF goes left (z > 0 is right).

TEST(Ties, LeafFFFGoesRightAtZero) {
  fff::Context ectx(2);
  const int64_t B = 11, in = 6, out = 4, depth = 3;
  const fff::LeafFFFConfig cfg{in, out, depth, 2, Activation::gelu};
  Rng rng(6);
  fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
  const auto x = random_vec(B * in, rng);
  const int64_t n = cfg.n_nodes(), L = cfg.n_leaves();

  // All nodes zero: z = 0 everywhere, so every row takes the all-right path to leaf L - 1.
  fff::LeafFFF all = m;
  all.nodes_w.value.zero();
  all.nodes_b.value.zero();
  std::vector<float> y(B * out), yr(B * out);
  std::vector<int32_t> leaves(B, -1), leaves_ref(B, -1);
  fff::leaf_fff_infer(ectx, all, x.data(), B, y.data(), leaves.data());
  fff::leaf_fff_infer_reference(all, x.data(), B, yr.data(), leaves_ref.data());
  for (int64_t r = 0; r < B; ++r) {
    EXPECT_EQ(leaves[r], L - 1) << r;
    EXPECT_EQ(leaves_ref[r], L - 1) << r;
  }
  EXPECT_LE(max_rel_err(y, yr), 1e-5);
  // Hardened training rounds p = 0.5 to 1 (agrees with inference): leaf L - 1 only.
  fff::LeafTrainMode hard;
  hard.hardened = true;
  fff::LeafFFFContext ctx;
  std::vector<float> yt(B * out), yh(B * out);
  fff::leaf_fff_forward_train(ectx, all, x.data(), B, yt.data(), hard, ctx);
  EXPECT_LE(max_rel_err(yt, yr), 1e-5);
  fff::leaf_fff_forward_train_reference(all, x.data(), B, yh.data(), hard);
  EXPECT_LE(max_rel_err(yh, yr), 1e-5);
  // Soft training: p = 0.5 at every node, every leaf weighs 1 / L: the mean of the leaf blocks.
  std::vector<float> ys(B * out), yavg(B * out, 0.0f);
  fff::leaf_fff_forward_train(ectx, all, x.data(), B, ys.data(), {}, ctx);
  for (int64_t j = 0; j < L; ++j) {
    // Leaf j alone: route every row to j by setting the node biases to +-1e30.
    fff::LeafFFF one = all;
    for (int64_t pos = n + j; pos > 0; pos = (pos - 1) / 2) {
      const int64_t parent = (pos - 1) / 2;
      one.nodes_b.value.data[parent] = pos == 2 * parent + 2 ? 1e30f : -1e30f;
    }
    std::vector<float> yj(B * out);
    std::vector<int32_t> lj(B);
    fff::leaf_fff_infer_reference(one, x.data(), B, yj.data(), lj.data());
    for (int64_t r = 0; r < B; ++r) ASSERT_EQ(lj[r], j);
    for (size_t i = 0; i < yavg.size(); ++i) yavg[i] += yj[i] / static_cast<float>(L);
  }
  EXPECT_LE(max_rel_err(ys, yavg), 1e-5);

  // Only some nodes zero (root and node 4): those decisions go right, the others follow z.
  fff::LeafFFF some = m;
  for (int64_t i : {0, 4}) {
    std::fill_n(some.nodes_w.value.row(i), in, 0.0f);
    some.nodes_b.value.data[i] = 0.0f;
  }
  fff::leaf_fff_infer(ectx, some, x.data(), B, y.data(), leaves.data());
  fff::leaf_fff_infer_reference(some, x.data(), B, yr.data(), leaves_ref.data());
  EXPECT_EQ(leaves, leaves_ref);
  EXPECT_LE(max_rel_err(y, yr), 1e-5);
  for (int64_t r = 0; r < B; ++r) {
    EXPECT_GE(leaves[r], L / 2) << "root tie must go right, row " << r;
    // Walk the path from the leaf upwards: every zeroed node on it was left to the right.
    for (int64_t pos = n + leaves[r]; pos > 0; pos = (pos - 1) / 2) {
      const int64_t parent = (pos - 1) / 2;
      if (parent == 0 || parent == 4) {
        EXPECT_EQ(pos, 2 * parent + 2) << "row " << r;
      }
    }
  }
  fff::leaf_fff_forward_train(ectx, some, x.data(), B, yt.data(), hard, ctx);
  EXPECT_LE(max_rel_err(yt, yr), 1e-5);
}

TEST(Ties, NeuronFFFGoesLeftAtZero) {
  fff::Context ectx(2);
  const int64_t B = 7, in = 5, out = 3;
  for (int64_t K : {1, 3}) {
    const int64_t D = 4;
    const auto cfg = neuron_config(in, out, K, D, Activation::gelu, true);
    Rng rng(7 + K);
    fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
    const auto x = random_vec(B * in, rng);
    const int64_t P = cfg.path_length(), per_tree = cfg.nodes_per_tree();

    // All nodes zero: z = 0, every level goes left: heap nodes 0, 1, 3, 7, 15 of each tree.
    fff::NeuronFFF all = m;
    all.w1.value.zero();
    all.b1.value.zero();
    std::vector<float> y(B * out), yr(B * out);
    std::vector<int32_t> nodes(B * P, -1);
    fff::NeuronFFFContext ctx;
    fff::neuron_fff_forward(ectx, all, x.data(), B, y.data(), &ctx);
    fff::neuron_fff_forward_reference(all, x.data(), B, yr.data(), nodes.data());
    for (int64_t r = 0; r < B; ++r)
      for (int64_t t = 0; t < K; ++t)
        for (int64_t level = 0; level <= D; ++level) {
          const int64_t slot = r * P + t * (D + 1) + level;
          const int32_t expect = static_cast<int32_t>(t * per_tree + (int64_t{1} << level) - 1);
          EXPECT_EQ(nodes[slot], expect) << "reference, K=" << K << " row " << r;
          EXPECT_EQ(ctx.node[slot], expect) << "fast, K=" << K << " row " << r;
          EXPECT_EQ(ctx.z[slot], 0.0f);
        }
    EXPECT_LE(max_rel_err(y, yr), 1e-5);

    // Only each tree's root zero: level 1 is its left child (node 1), below that z decides.
    fff::NeuronFFF roots = m;
    for (int64_t t = 0; t < K; ++t) {
      std::fill_n(roots.w1.value.row(t * per_tree), in, 0.0f);
      roots.b1.value.data[t * per_tree] = 0.0f;
    }
    fff::neuron_fff_forward(ectx, roots, x.data(), B, y.data(), &ctx);
    fff::neuron_fff_forward_reference(roots, x.data(), B, yr.data(), nodes.data());
    EXPECT_EQ(ctx.node, nodes);
    for (int64_t r = 0; r < B; ++r)
      for (int64_t t = 0; t < K; ++t)
        EXPECT_EQ(nodes[r * P + t * (D + 1) + 1], t * per_tree + 1) << "row " << r;
    EXPECT_LE(max_rel_err(y, yr), 1e-5);
  }
}

// ---------------------------------------------------------------------------------------------
// (f) Neuron FFF forward against its reference.

TEST(NeuronForward, MatchesReferenceRandomShapes) {
  fff::Context ectx(2);
  Rng pick(8);
  int redraws = 0;
  for (int it = 0; it < 40; ++it) {
    const int64_t K = 1 + static_cast<int64_t>(pick.below(4));
    const int64_t D = static_cast<int64_t>(pick.below(9));
    const int64_t in = 1 + 2 * static_cast<int64_t>(pick.below(40));   // odd
    const int64_t out = 1 + 2 * static_cast<int64_t>(pick.below(20));  // odd
    const int64_t B = 1 + static_cast<int64_t>(pick.below(300));
    const Activation act = kActs[pick.below(3)];
    const bool bias = pick.below(2) != 0;
    const auto cfg = neuron_config(in, out, K, D, act, bias);
    const std::string what = neuron_desc(cfg, B);
    const int64_t P = cfg.path_length();
    // A z within 1e-5 of zero may legitimately route differently in float and double:
    // re-draw the data with another seed then.
    for (uint64_t seed = 0;; ++seed) {
      ASSERT_LT(seed, 100u) << what;
      Rng rng(9000 + 100 * it + seed);
      const fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
      const auto x = random_vec(B * in, rng);
      std::vector<float> y(B * out, NAN), y2(B * out, NAN), yr(B * out, NAN);
      std::vector<int32_t> nodes(B * P, -1);
      fff::NeuronFFFContext ctx;
      fff::neuron_fff_forward(ectx, m, x.data(), B, y.data(), &ctx);
      if (std::any_of(ctx.z.begin(), ctx.z.end(), [](float z) { return std::fabs(z) < 1e-5f; })) {
        ++redraws;
        continue;
      }
      fff::neuron_fff_forward_reference(m, x.data(), B, yr.data(), nodes.data());
      ASSERT_LE(max_rel_err(y, yr), 1e-5) << what;
      ASSERT_EQ(ctx.node, nodes) << what;
      // Paths are valid heap walks inside each tree.
      const int64_t per_tree = cfg.nodes_per_tree();
      for (int64_t r = 0; r < B; ++r)
        for (int64_t t = 0; t < K; ++t) {
          const int32_t* path = nodes.data() + r * P + t * (D + 1);
          ASSERT_EQ(path[0], t * per_tree) << what;
          for (int64_t l = 1; l <= D; ++l) {
            const int64_t parent = path[l - 1] - t * per_tree, child = path[l] - t * per_tree;
            ASSERT_TRUE(child == 2 * parent + 1 || child == 2 * parent + 2) << what;
            // The branch follows the sign of the recorded z.
            ASSERT_EQ(child == 2 * parent + 2, ctx.z[r * P + t * (D + 1) + l - 1] > 0.0f);
          }
        }
      // Without a context: the same output.
      fff::neuron_fff_forward(ectx, m, x.data(), B, y2.data(), nullptr);
      ASSERT_TRUE(bitwise_equal(y, y2)) << what;
      break;
    }
  }
  EXPECT_LE(redraws, 20);
}

// ---------------------------------------------------------------------------------------------
// (g) One thread equals two threads, bitwise.

TEST(Threads, LeafTrainForwardBackwardBitwise) {
  const fff::LeafFFFConfig cfg{64, 10, 4, 8, Activation::gelu};
  const int64_t B = 301;
  Rng rng(10);
  const fff::LeafFFF m0 = fff::make_leaf_fff(cfg, rng);
  const auto x = random_vec(B * cfg.in, rng), dy = random_vec(B * cfg.out, rng);
  const auto flips = fff::sample_region_leak(B, cfg.n_nodes(), 0.1f, rng);
  for (int variant = 0; variant < 3; ++variant) {
    fff::LeafTrainMode mode;
    if (variant >= 1) mode.flips = &flips;
    mode.hardened = variant == 2;
    std::vector<float> y[2], dx[2];
    fff::LeafFFF m[2] = {m0, m0};
    for (int t = 0; t < 2; ++t) {
      fff::Context ectx(t + 1);
      fff::LeafFFFContext ctx;
      y[t].assign(B * cfg.out, NAN);
      dx[t].assign(B * cfg.in, NAN);
      fff::leaf_fff_forward_train(ectx, m[t], x.data(), B, y[t].data(), mode, ctx);
      fff::leaf_fff_backward_train(ectx, m[t], x.data(), B, dy.data(), 3.0f, ctx, dx[t].data());
    }
    EXPECT_TRUE(bitwise_equal(y[0], y[1])) << "y, variant " << variant;
    EXPECT_TRUE(bitwise_equal(dx[0], dx[1])) << "dx, variant " << variant;
    for (size_t k = 0; k < m[0].params().size(); ++k)
      EXPECT_TRUE(bitwise_equal(m[0].params()[k]->grad.data, m[1].params()[k]->grad.data))
          << m[0].params()[k]->name << ", variant " << variant;
  }
}

TEST(Threads, LeafTrainEntropyBitwise) {
  // Regression: the mean entropy was once summed by an OpenMP reduction, whose order depends on
  // the thread count; tiny entropies (large |z|) over a large B * n_nodes exposed it.
  const fff::LeafFFFConfig cfg{16, 2, 6, 1, Activation::gelu};
  const int64_t B = 4096;
  Rng rng(1);
  const fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
  const auto x = random_vec(B * cfg.in, rng, 30.0f);  // large logits: many tiny entropies
  double ent[2];
  std::vector<float> y[2];
  for (int t = 0; t < 2; ++t) {
    fff::Context ectx(t + 1);
    fff::LeafFFFContext ctx;
    y[t].assign(B * cfg.out, NAN);
    ent[t] = fff::leaf_fff_forward_train(ectx, m, x.data(), B, y[t].data(), {}, ctx);
  }
  EXPECT_TRUE(bitwise_equal(y[0], y[1]));
  EXPECT_TRUE(bitwise_equal(std::vector<double>{ent[0]}, std::vector<double>{ent[1]}))
      << "mean entropy with 1 thread " << ent[0] << " vs 2 threads " << ent[1];
}

TEST(Threads, LeafInferBitwise) {
  for (int64_t depth : {0, 3, 6}) {
    const fff::LeafFFFConfig cfg{100, 33, depth, 13, Activation::relu};
    const int64_t B = 1000;
    Rng rng(11 + depth);
    const fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
    const auto packed = fff::pack_leaf_fff(m);
    const auto x = random_vec(B * cfg.in, rng);
    std::vector<float> y[2];
    std::vector<int32_t> leaves[2];
    for (int t = 0; t < 2; ++t) {
      fff::Context ectx(t + 1);
      y[t].assign(B * cfg.out, NAN);
      leaves[t].assign(B, -1);
      fff::leaf_fff_infer(ectx, packed, x.data(), B, y[t].data(), leaves[t].data());
    }
    EXPECT_TRUE(bitwise_equal(y[0], y[1])) << "depth " << depth;
    EXPECT_EQ(leaves[0], leaves[1]) << "depth " << depth;
  }
}

TEST(Threads, NeuronForwardBackwardBitwise) {
  for (int64_t D : {0, 3, 8}) {
    const auto cfg = neuron_config(65, 17, 3, D, Activation::gelu, true);
    const int64_t B = 257;
    Rng rng(12 + D);
    const fff::NeuronFFF m0 = fff::make_neuron_fff(cfg, rng);
    const auto x = random_vec(B * cfg.in, rng), dy = random_vec(B * cfg.out, rng);
    std::vector<float> y[2], dx[2];
    fff::NeuronFFF m[2] = {m0, m0};
    fff::NeuronFFFContext ctx[2];
    for (int t = 0; t < 2; ++t) {
      fff::Context ectx(t + 1);
      y[t].assign(B * cfg.out, NAN);
      dx[t].assign(B * cfg.in, NAN);
      for (fff::Param* p : m[t].params()) p->grad.zero();
      fff::neuron_fff_forward(ectx, m[t], x.data(), B, y[t].data(), &ctx[t]);
      fff::neuron_fff_backward(ectx, m[t], x.data(), B, dy.data(), ctx[t], dx[t].data());
    }
    const std::string what = "D=" + std::to_string(D);
    EXPECT_TRUE(bitwise_equal(y[0], y[1])) << what;
    EXPECT_EQ(ctx[0].node, ctx[1].node) << what;
    EXPECT_TRUE(bitwise_equal(ctx[0].z, ctx[1].z)) << what;
    EXPECT_TRUE(bitwise_equal(dx[0], dx[1])) << what;
    for (size_t k = 0; k < m[0].params().size(); ++k) {
      EXPECT_TRUE(bitwise_equal(m[0].params()[k]->grad.data, m[1].params()[k]->grad.data))
          << m[0].params()[k]->name << " " << what;
      EXPECT_EQ(m[0].params()[k]->touched_rows, m[1].params()[k]->touched_rows)
          << m[0].params()[k]->name << " " << what;
    }
  }
}

TEST(Threads, DenseForwardBackwardBitwise) {
  // Big enough that gemm splits its products into blocks over the threads.
  const fff::DenseFFConfig cfg{256, 512, 64, Activation::gelu};
  const int64_t B = 512;
  Rng rng(13);
  const fff::DenseFF m0 = fff::make_dense_ff(cfg, rng);
  const auto x = random_vec(B * cfg.in, rng), dy = random_vec(B * cfg.out, rng);
  std::vector<float> y[2], dx[2];
  fff::DenseFF m[2] = {m0, m0};
  for (int t = 0; t < 2; ++t) {
    fff::Context ectx(t + 1);
    fff::DenseFFContext ctx;
    y[t].assign(B * cfg.out, NAN);
    dx[t].assign(B * cfg.in, NAN);
    fff::dense_ff_forward(ectx, m[t], x.data(), B, y[t].data(), &ctx);
    fff::dense_ff_backward(ectx, m[t], x.data(), B, dy.data(), ctx, dx[t].data());
  }
  EXPECT_TRUE(bitwise_equal(y[0], y[1]));
  EXPECT_TRUE(bitwise_equal(dx[0], dx[1]));
  for (size_t k = 0; k < m[0].params().size(); ++k)
    EXPECT_TRUE(bitwise_equal(m[0].params()[k]->grad.data, m[1].params()[k]->grad.data))
        << m[0].params()[k]->name;
}

// ---------------------------------------------------------------------------------------------
// (h) Splitting a batch changes nothing at inference.

TEST(BatchSplit, LeafInferBitwise) {
  fff::Context ectx(2);
  // 3000 rows are tiled differently from small batches: the split must still change nothing.
  for (const auto& [depth, B] : {std::pair<int64_t, int64_t>{0, 37}, {2, 37}, {5, 37}, {5, 3000}}) {
    const fff::LeafFFFConfig cfg{17, 10, depth, 3, Activation::gelu};
    Rng rng(14 + depth);
    const fff::LeafFFF m = fff::make_leaf_fff(cfg, rng);
    const auto packed = fff::pack_leaf_fff(m);
    const auto x = random_vec(B * cfg.in, rng);
    std::vector<float> whole(B * cfg.out, NAN);
    std::vector<int32_t> whole_leaves(B, -1);
    fff::leaf_fff_infer(ectx, packed, x.data(), B, whole.data(), whole_leaves.data());
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{16}, B / 2, B - 1, B}) {
      std::vector<float> parts(B * cfg.out, NAN);
      std::vector<int32_t> leaves(B, -1);
      fff::leaf_fff_infer(ectx, packed, x.data(), k, parts.data(), leaves.data());
      fff::leaf_fff_infer(ectx, packed, x.data() + k * cfg.in, B - k, parts.data() + k * cfg.out,
                          leaves.data() + k);
      EXPECT_TRUE(bitwise_equal(parts, whole)) << "depth " << depth << " split " << k;
      EXPECT_EQ(leaves, whole_leaves) << "depth " << depth << " split " << k;
    }
  }
}

TEST(BatchSplit, NeuronForwardBitwise) {
  fff::Context ectx(2);
  for (int64_t D : {0, 3, 6}) {
    const auto cfg = neuron_config(19, 7, 2, D, Activation::gelu, true);
    const int64_t B = 41;
    Rng rng(15 + D);
    const fff::NeuronFFF m = fff::make_neuron_fff(cfg, rng);
    const auto x = random_vec(B * cfg.in, rng);
    const int64_t P = cfg.path_length();
    std::vector<float> whole(B * cfg.out, NAN);
    fff::NeuronFFFContext wctx;
    fff::neuron_fff_forward(ectx, m, x.data(), B, whole.data(), &wctx);
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{20}, B - 1, B}) {
      std::vector<float> parts(B * cfg.out, NAN);
      fff::NeuronFFFContext c1, c2;
      fff::neuron_fff_forward(ectx, m, x.data(), k, parts.data(), &c1);
      fff::neuron_fff_forward(ectx, m, x.data() + k * cfg.in, B - k, parts.data() + k * cfg.out,
                              &c2);
      EXPECT_TRUE(bitwise_equal(parts, whole)) << "D " << D << " split " << k;
      std::vector<int32_t> nodes = c1.node;
      nodes.insert(nodes.end(), c2.node.begin(), c2.node.end());
      EXPECT_EQ(nodes, wctx.node) << "D " << D << " split " << k;
      ASSERT_EQ(nodes.size(), static_cast<size_t>(B * P));
    }
  }
}

}  // namespace
