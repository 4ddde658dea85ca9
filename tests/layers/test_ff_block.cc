// The feedforward block interface: kind names (new and old spellings), config validation naming
// fields, parameter shapes without allocating, metadata round trips, and that each block runs
// its layer: training through its own cache, inference equal to the layer's reference, and a
// trace of inference's paths and node logits equal to a naive walk of the tree.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "fff/core/context.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"
#include "fff/testing/ff.h"
#include "test_util.h"

namespace {

using fff::FFConfig;
using fff::FFKind;
using fff_test::bitwise_equal;
using fff_test::max_rel_err;
using fff_test::random_vec;

FFConfig config_of(FFKind kind) {
  FFConfig c;
  c.kind = kind;
  c.in = 13;
  c.out = 5;
  c.act = fff::Activation::gelu;
  c.width = 24;
  c.depth = 3;
  c.leaf_width = 3;
  c.trees = 2;
  return c;
}

std::string error_of(const FFConfig& c) {
  try {
    c.validate();
  } catch (const fff::Error& e) {
    return e.what();
  }
  return "";
}

TEST(FFKind, OneSpellingEverywhereAndOldNamesWithANote) {
  for (FFKind k : fff::ff_kinds()) EXPECT_EQ(fff::parse_ff_kind(fff::ff_kind_name(k)), k);
  EXPECT_STREQ(fff::ff_kind_name(FFKind::ff), "ff");
  EXPECT_STREQ(fff::ff_kind_name(FFKind::leaf_fff), "leaf-fff");
  EXPECT_STREQ(fff::ff_kind_name(FFKind::neuron_fff), "neuron-fff");
  std::string note = "stale";
  EXPECT_EQ(fff::parse_ff_kind("leaf-fff", &note), FFKind::leaf_fff);
  EXPECT_EQ(note, "");
  EXPECT_EQ(fff::parse_ff_kind("fff", &note), FFKind::leaf_fff);
  EXPECT_NE(note.find("leaf-fff"), std::string::npos) << note;
  EXPECT_EQ(fff::parse_ff_kind("dense", &note), FFKind::ff);
  EXPECT_NE(note.find("'ff'"), std::string::npos) << note;
  try {
    fff::parse_ff_kind("moe");
    FAIL() << "accepted 'moe'";
  } catch (const fff::Error& e) {
    const std::string m = e.what();
    for (const char* name : {"'moe'", "ff", "leaf-fff", "neuron-fff"})
      EXPECT_NE(m.find(name), std::string::npos) << m;
  }
}

TEST(FFConfig, ValidateNamesTheFieldAndValue) {
  for (FFKind k : fff::ff_kinds()) EXPECT_EQ(error_of(config_of(k)), "") << fff::ff_kind_name(k);
  FFConfig c = config_of(FFKind::ff);
  c.width = 0;
  EXPECT_NE(error_of(c).find("width = 0"), std::string::npos) << error_of(c);
  c = config_of(FFKind::leaf_fff);
  c.leaf_width = -2;
  EXPECT_NE(error_of(c).find("leaf_width = -2"), std::string::npos) << error_of(c);
  c = config_of(FFKind::leaf_fff);
  c.depth = 21;
  EXPECT_NE(error_of(c).find("depth = 21"), std::string::npos) << error_of(c);
  c = config_of(FFKind::neuron_fff);
  c.trees = 0;
  EXPECT_NE(error_of(c).find("trees = 0"), std::string::npos) << error_of(c);
  c = config_of(FFKind::neuron_fff);
  c.in = 0;
  EXPECT_NE(error_of(c).find("in = 0"), std::string::npos) << error_of(c);
}

TEST(FFConfig, WidthsAndFlopsAgreeWithTheLayers) {
  const FFConfig ff = config_of(FFKind::ff), leaf = config_of(FFKind::leaf_fff),
                 neuron = config_of(FFKind::neuron_fff);
  EXPECT_EQ(ff.training_width(), 24);
  EXPECT_EQ(ff.inference_width(), 24);
  EXPECT_EQ(leaf.training_width(), 8 * 3);
  EXPECT_EQ(leaf.inference_width(), 3);
  EXPECT_EQ(neuron.training_width(), 2 * 15);
  EXPECT_EQ(neuron.inference_width(), 2 * 4);
  EXPECT_EQ(ff.inference_flops_per_row(), 2.0 * 24 * (13 + 5));
  EXPECT_EQ(ff.describe(), "dense FF, width 24, gelu");
  EXPECT_EQ(leaf.describe(),
            "leaf FFF, depth 3, leaf width 3 (training width 24, inference width 3), gelu");
  EXPECT_EQ(neuron.describe(),
            "neuron FFF, 2 tree(s) of depth 3 (30 neurons, 8 used per input), gelu");
  EXPECT_EQ(neuron.inference_flops_per_row(),
            fff::neuron_fff_flops_per_row({13, 5, 2, 3, fff::Activation::gelu, true}));
}

TEST(FFBlock, ParamShapesMatchTheBlockWithoutAllocating) {
  fff::Rng rng(1);
  for (FFKind k : fff::ff_kinds())
    for (bool bias : {true, false}) {
      FFConfig c = config_of(k);
      c.output_bias = bias;
      auto block = fff::make_ff_block(c, rng);
      const auto shapes = c.param_shapes();
      const auto params = block->params();
      ASSERT_EQ(shapes.size(), params.size()) << fff::ff_kind_name(k);
      for (size_t i = 0; i < shapes.size(); ++i) {
        EXPECT_EQ(shapes[i].first, params[i]->name);
        EXPECT_EQ(shapes[i].second, params[i]->value.shape) << params[i]->name;
      }
    }
  // A depth whose tree cannot exist in memory still gets shapes, saturated, not a crash.
  FFConfig huge = config_of(FFKind::leaf_fff);
  huge.depth = 20;
  huge.leaf_width = int64_t{1} << 50;
  for (const auto& [name, shape] : huge.param_shapes())
    for (int64_t d : shape) EXPECT_GE(d, 0) << name;
}

TEST(FFBlock, MetadataRoundTripsWithAPrefix) {
  for (FFKind k : fff::ff_kinds()) {
    FFConfig c = config_of(k);
    c.output_bias = false;
    std::map<std::string, std::string> meta;
    fff::write_ff_metadata(c, meta, "ff.");
    EXPECT_EQ(meta.at("ff.model"), fff::ff_kind_name(k));
    const FFConfig r = fff::read_ff_metadata(meta, "file.safetensors", "ff.");
    fff_test::expect_same_ff_config(r, c);
  }
  std::map<std::string, std::string> meta;
  fff::write_ff_metadata(config_of(FFKind::leaf_fff), meta);
  meta["output_bias"] = "yes";
  EXPECT_THROW(fff::read_ff_metadata(meta, "m.safetensors"), fff::Error);
  meta["output_bias"] = "true";
  meta["model"] = "fff";  // files written before the kinds had one spelling
  EXPECT_EQ(fff::read_ff_metadata(meta, "m.safetensors").kind, FFKind::leaf_fff);
}

// Each block's inference equals its layer's naive reference, and its training forward and
// backward are its layer's: two forwards in flight, each with its own cache, give the same
// gradients as one forward then its backward.
TEST(FFBlock, RunsItsLayerAndKeepsOneCachePerForward) {
  const int64_t B = 7;
  for (FFKind k : fff::ff_kinds()) {
    SCOPED_TRACE(fff::ff_kind_name(k));
    const FFConfig c = config_of(k);
    fff::Rng rng(5);
    fff::Context ctx(2);
    auto block = fff::make_ff_block(c, rng);
    const auto xa = random_vec(B * c.in, rng), xb = random_vec(B * c.in, rng);
    const auto dy = random_vec(B * c.out, rng);

    std::vector<float> y(B * c.out), ref(B * c.out);
    block->prepare_inference({});
    block->infer(ctx, xa.data(), B, y.data(), nullptr);
    const auto params = block->params();
    if (k == FFKind::ff) {
      fff::DenseFF m{{c.in, c.width, c.out, c.act}, *params[0], *params[1], *params[2], *params[3]};
      fff::dense_ff_forward_reference(m, xa.data(), B, ref.data());
    } else if (k == FFKind::leaf_fff) {
      fff::LeafFFF m{{c.in, c.out, c.depth, c.leaf_width, c.act},
                     *params[0],
                     *params[1],
                     *params[2],
                     *params[3],
                     *params[4],
                     *params[5]};
      fff::leaf_fff_infer_reference(m, xa.data(), B, ref.data(), nullptr);
    } else {
      fff::NeuronFFF m{{c.in, c.out, c.trees, c.depth, c.act, c.output_bias},
                       *params[0],
                       *params[1],
                       *params[2],
                       *params[3]};
      fff::neuron_fff_forward_reference(m, xa.data(), B, ref.data(), nullptr);
    }
    EXPECT_LE(max_rel_err(y, ref), 1e-5);

    auto grads = [&] {
      std::vector<std::vector<float>> g;
      for (fff::Param* p : block->params())
        g.emplace_back(p->grad.data.begin(), p->grad.data.end());
      return g;
    };
    fff::Rng r1(9), r2(9);
    auto cache_a = block->make_cache();
    std::vector<float> ya(B * c.out), yb(B * c.out), dxa(B * c.in), dxa2(B * c.in);
    block->forward_train(ctx, xa.data(), B, ya.data(), {}, r1, *cache_a);
    block->backward(ctx, xa.data(), B, dy.data(), 0.5f, *cache_a, dxa.data());
    const auto expected = grads();

    auto cache_b = block->make_cache();
    block->forward_train(ctx, xa.data(), B, ya.data(), {}, r2, *cache_a);
    block->forward_train(ctx, xb.data(), B, yb.data(), {}, r2, *cache_b);
    block->backward(ctx, xa.data(), B, dy.data(), 0.5f, *cache_a, dxa2.data());
    EXPECT_TRUE(bitwise_equal(dxa, dxa2));
    const auto got = grads();
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      if (params[i]->sparse) continue;  // rows other than the touched ones are stale by design
      EXPECT_TRUE(bitwise_equal(got[i], expected[i])) << params[i]->name;
    }
  }
}

// A dense block's inference splits batches of a few row blocks by rows over the threads and
// smaller ones by columns: either way it equals the naive reference, and every row has the same
// bits as when it is run alone (batch 1) on any thread count. Odd sizes; batches below, at and
// past the row split's threshold (2 blocks of 96 rows per thread).
TEST(FFBlock, DenseInferenceIsTheReferenceWithTheBitsOfOneRowOnAnyThreads) {
  FFConfig c = config_of(FFKind::ff);
  c.in = 19, c.width = 37, c.out = 11;
  fff::Rng rng(7);
  auto block = fff::make_ff_block(c, rng);
  block->prepare_inference({});
  const auto params = block->params();
  const fff::DenseFF m{
      {c.in, c.width, c.out, c.act}, *params[0], *params[1], *params[2], *params[3]};
  for (int64_t B : {1, 97, 191, 192, 389, 700}) {
    SCOPED_TRACE("batch " + std::to_string(B));
    const auto x = random_vec(B * c.in, rng);
    std::vector<float> ref(B * c.out), alone(B * c.out);
    fff::dense_ff_forward_reference(m, x.data(), B, ref.data());
    fff::Context one(1);
    for (int64_t r = 0; r < B; ++r)
      block->infer(one, x.data() + r * c.in, 1, alone.data() + r * c.out, nullptr);
    EXPECT_LE(max_rel_err(alone, ref), 1e-5);
    for (int threads : {1, 2, 3}) {
      fff::Context ctx(threads);
      std::vector<float> y(B * c.out, std::nanf(""));
      block->infer(ctx, x.data(), B, y.data(), nullptr);
      EXPECT_TRUE(bitwise_equal(y, alone)) << threads << " threads";
    }
  }
}

// FFBlock::trace against a naive walk of the tree on random weights (odd sizes, batch 1 and
// batches over several inference tiles, one and two threads): the same nodes, the logits to
// float rounding, the same decisions infer takes (its routes).
TEST(FFBlock, TraceIsTheNaivePathWithItsLogits) {
  struct Shape {
    FFKind kind;
    int64_t depth, trees;
  };
  for (const Shape& sh :
       {Shape{FFKind::leaf_fff, 3, 1}, Shape{FFKind::leaf_fff, 4, 1}, Shape{FFKind::leaf_fff, 0, 1},
        Shape{FFKind::neuron_fff, 2, 3}, Shape{FFKind::neuron_fff, 0, 1}, Shape{FFKind::ff, 0, 1}})
    for (int64_t B : {1, 5, 301, 2085})
      for (int threads : {1, 2}) {
        SCOPED_TRACE(std::string(fff::ff_kind_name(sh.kind)) + " depth " +
                     std::to_string(sh.depth) + " trees " + std::to_string(sh.trees) + " B " +
                     std::to_string(B) + " threads " + std::to_string(threads));
        FFConfig c = config_of(sh.kind);
        c.in = 37;
        c.depth = sh.depth;
        c.trees = sh.trees;
        fff::Rng rng(11 + static_cast<uint64_t>(B));
        fff::Context ctx(threads);
        auto block = fff::make_ff_block(c, rng);
        block->prepare_inference({});
        const auto x = random_vec(B * c.in, rng, 2.0f);
        fff::FFTrace t;
        block->trace(ctx, x.data(), B, t);
        std::vector<int32_t> routes;
        std::vector<float> y(static_cast<size_t>(B * c.out));
        block->infer(ctx, x.data(), B, y.data(), &routes);
        const auto params = block->params();
        if (sh.kind == FFKind::ff) {
          EXPECT_EQ(t.per_row, 0);
          EXPECT_TRUE(t.nodes.empty() && t.logits.empty() && t.leaves.empty());
          continue;
        }
        // Node k's weights and bias: leaf FFF nodes_w, nodes_b; neuron FFF w1, b1.
        const fff::Tensor& w = params[0]->value;
        const fff::Tensor& b = params[1]->value;
        auto logit = [&](int64_t r, int64_t k) {
          double z = b.data[k];
          for (int64_t f = 0; f < c.in; ++f)
            z += static_cast<double>(w.row(k)[f]) * x[static_cast<size_t>(r * c.in + f)];
          return z;
        };
        const bool leaf = sh.kind == FFKind::leaf_fff;
        const int64_t per_row = leaf ? sh.depth : sh.trees * (sh.depth + 1);
        ASSERT_EQ(t.per_row, per_row);
        ASSERT_EQ(t.nodes.size(), static_cast<size_t>(B * per_row));
        ASSERT_EQ(t.logits.size(), static_cast<size_t>(B * per_row));
        ASSERT_EQ(t.leaves.size(), leaf ? static_cast<size_t>(B) : 0u);
        const int64_t per_tree = (int64_t{2} << sh.depth) - 1;
        for (int64_t r = 0; r < B; ++r) {
          int64_t slot = r * per_row;
          for (int64_t tree = 0; tree < (leaf ? 1 : sh.trees); ++tree) {
            int64_t node = 0;
            // Leaf FFF: the depth internal nodes, then the leaf; neuron FFF: every level.
            for (int64_t level = 0; level < (leaf ? sh.depth : sh.depth + 1); ++level, ++slot) {
              const int64_t k = leaf ? node : tree * per_tree + node;
              const double z = logit(r, k);
              ASSERT_EQ(t.nodes[slot], k) << "row " << r << " level " << level;
              EXPECT_NEAR(t.logits[slot], z, 1e-4 * (1.0 + std::fabs(z)));
              const bool right = leaf ? z >= 0.0 : z > 0.0;
              node = 2 * node + 1 + (right ? 1 : 0);
            }
            if (leaf) {
              EXPECT_EQ(t.leaves[r], node - ((int64_t{1} << sh.depth) - 1));
            }
          }
        }
        EXPECT_EQ(leaf ? t.leaves : t.nodes, routes);
      }
}

}  // namespace

namespace {

// A block built from tensors (as loaders do) runs like the block they came from; its copy is
// deep; a dense block may have no biases; half weights are a neuron FFF's option only.
TEST(FFBlock, FromTensorsCloneNoBiasAndHalfWeights) {
  const int64_t B = 5;
  for (FFKind k : fff::ff_kinds())
    for (bool bias : {true, false}) {
      if (k == FFKind::leaf_fff && !bias) continue;  // leaf FFF always has its biases
      SCOPED_TRACE(std::string(fff::ff_kind_name(k)) + (bias ? " bias" : " no bias"));
      FFConfig c = config_of(k);
      c.output_bias = bias;
      fff::Rng rng(3);
      fff::Context ctx(2);
      auto block = fff::make_ff_block(c, rng);
      EXPECT_EQ(block->params().size(), c.param_shapes().size());
      const auto x = random_vec(B * c.in, rng);
      std::vector<float> y(B * c.out), y_from(B * c.out), y_clone(B * c.out);
      block->prepare_inference({});
      block->infer(ctx, x.data(), B, y.data(), nullptr);

      std::map<std::string, fff::Tensor> tensors;
      for (fff::Param* p : block->params()) tensors[p->name] = p->value;
      auto from = fff::make_ff_block_from(c, tensors, "test");
      EXPECT_TRUE(tensors.empty());  // moved in
      from->infer(ctx, x.data(), B, y_from.data(), nullptr);
      EXPECT_TRUE(bitwise_equal(y, y_from));

      auto copy = from->clone();
      for (fff::Param* p : from->params()) p->value.zero();  // the copy keeps its own weights
      copy->infer(ctx, x.data(), B, y_clone.data(), nullptr);
      EXPECT_TRUE(bitwise_equal(y, y_clone));

      if (k == FFKind::neuron_fff) {
        EXPECT_NO_THROW(copy->prepare_inference({.half_weights = true}));
        copy->infer(ctx, x.data(), B, y_clone.data(), nullptr);
        EXPECT_LE(max_rel_err(y_clone, y), 1e-2);  // weights rounded to 11 bits
        EXPECT_FALSE(bitwise_equal(y_clone, y));   // and really read from the half copy
      } else {
        EXPECT_THROW(copy->prepare_inference({.half_weights = true}), fff::Error);
      }
    }
}

TEST(FFBlock, FromTensorsRefusesMissingWrongAndExtraTensors) {
  const FFConfig c = config_of(FFKind::neuron_fff);
  fff::Rng rng(4);
  auto block = fff::make_ff_block(c, rng);
  auto tensors_of = [&] {
    std::map<std::string, fff::Tensor> t;
    for (fff::Param* p : block->params()) t[p->name] = p->value;
    return t;
  };
  auto error_of = [](std::map<std::string, fff::Tensor> t, const FFConfig& cfg) {
    try {
      fff::make_ff_block_from(cfg, t, "model.safetensors");
    } catch (const fff::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto t = tensors_of();
  t.erase("w2");
  EXPECT_NE(error_of(t, c).find("model.safetensors: tensor 'w2' is missing"), std::string::npos);
  t = tensors_of();
  t["b1"] = fff::Tensor({3});
  EXPECT_NE(error_of(t, c).find("'b1' has shape (3)"), std::string::npos) << error_of(t, c);
  t = tensors_of();
  t["w3"] = fff::Tensor({1});
  EXPECT_NE(error_of(t, c).find("unexpected tensor 'w3'"), std::string::npos);
  FFConfig bad = c;
  bad.trees = 0;
  EXPECT_NE(error_of(tensors_of(), bad).find("trees = 0"), std::string::npos);
}

}  // namespace
