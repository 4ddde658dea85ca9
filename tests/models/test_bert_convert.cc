// Tests of the dense -> leaf FFF conversion (bert_convert.h) on small random post-norm BERTs:
// the leaves partition the dense neurons, routing beats chance and the reported figures agree
// with running the converted blocks, the result is deterministic and survives a file round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "fff/core/context.h"
#include "fff/models/bert.h"
#include "fff/models/bert_convert.h"
#include "temp_dir.h"
#include "test_util.h"

namespace {

fff::BertModel dense_model(uint64_t seed) {
  fff::BertConfig c;
  c.arch = fff::BertArch::bert;
  c.hidden = 32, c.layers = 2, c.heads = 4, c.vocab = 60, c.max_seq = 24, c.type_vocab = 2;
  c.ff.kind = fff::FFKind::ff, c.ff.width = 64, c.ff.output_bias = true;
  c.ff.act = fff::Activation::gelu;
  return fff::make_random_bert(c, seed);
}

std::vector<std::vector<int32_t>> sequences(int n, uint64_t seed) {
  fff::Rng rng(seed);
  std::vector<std::vector<int32_t>> s(static_cast<size_t>(n));
  for (auto& q : s) {
    q.resize(static_cast<size_t>(8 + rng.below(16)));
    for (int32_t& id : q) id = static_cast<int32_t>(rng.below(60));
  }
  return s;
}

const fff::Tensor& param(const fff::FFBlock& b, const std::string& name) {
  for (fff::Param* p : const_cast<fff::FFBlock&>(b).params())
    if (p->name == name) return p->value;
  throw fff::Error("no parameter " + name);
}

}  // namespace

TEST(BertConvert, LeavesPartitionTheDenseNeuronsAndFiguresMatchTheBlocks) {
  const fff::BertModel d = dense_model(1);
  fff::Context ctx(2);
  const auto seqs = sequences(60, 2);
  for (const int64_t depth : {1, 2, 3}) {
    fff::ConvertOptions o;
    o.depth = depth;
    const fff::ConvertResult r = fff::convert_dense_to_leaf(ctx, d, seqs, o);
    const int64_t k = int64_t{1} << depth, l = 64 / k, H = 32;
    ASSERT_EQ(r.model.cfg.ff.kind, fff::FFKind::leaf_fff);
    EXPECT_EQ(r.model.cfg.ff.leaf_width, l);
    ASSERT_EQ(r.layers.size(), 2u);
    const fff::BertFFSamples s = fff::record_ff_samples(ctx, d, seqs, o.max_tokens);
    for (size_t i = 0; i < 2; ++i) {
      // Every dense neuron (w1 column, b1, w2 row) is in exactly one leaf.
      const fff::FFBlock &db = *d.layers[i].ff, &lb = *r.model.layers[i].ff;
      const fff::Tensor &w1 = param(db, "w1"), &b1 = param(db, "b1"), &w2 = param(db, "w2");
      const fff::Tensor &lw1 = param(lb, "w1"), &lb1 = param(lb, "b1"), &lw2 = param(lb, "w2");
      std::set<int64_t> used;
      for (int64_t q = 0; q < 64; ++q) {
        int64_t found = -1;
        for (int64_t n = 0; n < 64 && found < 0; ++n)
          if (b1.data[n] == lb1.data[q] && w2.row(n)[0] == lw2.row(q)[0]) found = n;
        ASSERT_GE(found, 0);
        EXPECT_TRUE(used.insert(found).second);
        for (int64_t h = 0; h < H; ++h) {
          EXPECT_EQ(w1.data[h * 64 + found], lw1.data[h * 64 + q]);
          EXPECT_EQ(w2.row(found)[h], lw2.row(q)[h]);
        }
      }
      // The reported figures are those of the converted block on the recorded inputs.
      const int64_t N = s.tokens;
      std::vector<float> y(static_cast<size_t>(N * H));
      std::vector<int32_t> routes;
      r.model.layers[i].ff->infer(ctx, s.x[i].data(), N, y.data(), &routes);
      double e = 0, t = 0;
      for (int64_t j = 0; j < N * H; ++j) {
        e += (y[j] - s.y[i][j]) * (y[j] - s.y[i][j]);
        t += s.y[i][j] * s.y[i][j];
      }
      EXPECT_NEAR(std::sqrt(e / t), r.layers[i].relative_error, 1e-4);
      EXPECT_EQ(r.layers[i].tokens, N);
      // Routing beats chance, and the block is closer to dense than a zero-information one.
      EXPECT_GT(r.layers[i].best_leaf_fraction, 1.5 / static_cast<double>(k)) << depth;
      EXPECT_LT(r.layers[i].relative_error, 1.0);
      std::set<int32_t> leaves(routes.begin(), routes.end());
      if (depth > 1) {
        EXPECT_GT(leaves.size(), 1u);
      }
    }
  }
}

TEST(BertConvert, FittedLeafBiasesLowerTheErrorAndResultsAreDeterministic) {
  const fff::BertModel d = dense_model(3);
  fff::Context ctx(2);
  const auto seqs = sequences(50, 4);
  fff::ConvertOptions o;
  o.depth = 2;
  const fff::ConvertResult a = fff::convert_dense_to_leaf(ctx, d, seqs, o);
  const fff::ConvertResult b = fff::convert_dense_to_leaf(ctx, d, seqs, o);
  o.fit_leaf_bias = false;
  const fff::ConvertResult c = fff::convert_dense_to_leaf(ctx, d, seqs, o);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a.layers[i].relative_error, b.layers[i].relative_error);
    EXPECT_LE(a.layers[i].relative_error, c.layers[i].relative_error + 1e-9);
    // Without the fit, sending every token to its best leaf is a lower bound.
    EXPECT_LE(c.layers[i].best_relative_error, c.layers[i].relative_error + 1e-6);
    for (const char* p : {"nodes_w", "nodes_b", "w1", "b2"})
      EXPECT_TRUE(fff_test::bitwise_equal(param(*a.model.layers[i].ff, p).data,
                                          param(*b.model.layers[i].ff, p).data));
    // Without the fit every leaf's output bias is the dense one.
    const fff::Tensor& b2 = param(*d.layers[i].ff, "b2");
    const fff::Tensor& lb2 = param(*c.model.layers[i].ff, "b2");
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_TRUE(std::equal(b2.data.begin(), b2.data.end(), lb2.row(j)));
  }
  // The converted model saves, loads and encodes as it did.
  TempDir dir;
  fff::save_bert(a.model, dir.file("leaf.safetensors"));
  const fff::BertModel r = fff::load_bert(dir.file("leaf.safetensors"));
  std::vector<float> h1(10 * 32), h2(10 * 32);
  fff::bert_encode(ctx, a.model, seqs[0].data(), nullptr, 1, 10, h1.data());
  fff::bert_encode(ctx, r, seqs[0].data(), nullptr, 1, 10, h2.data());
  EXPECT_TRUE(fff_test::bitwise_equal(h1, h2));
}

TEST(BertConvert, RejectsWhatItCannotConvert) {
  const fff::BertModel d = dense_model(5);
  fff::Context ctx(1);
  fff::ConvertOptions o;
  o.depth = 7;  // 128 leaves of a width-64 block
  EXPECT_THROW(fff::convert_dense_to_leaf(ctx, d, sequences(5, 1), o), fff::Error);
  o.depth = 2;
  EXPECT_THROW(fff::convert_dense_to_leaf(ctx, d, {}, o), fff::Error);
  o.depth = 0;
  EXPECT_THROW(fff::convert_dense_to_leaf(ctx, d, sequences(5, 1), o), fff::Error);
}

TEST(BertConvert, DistillationLowersTheHeldOutErrorOrKeepsTheConvertedBlock) {
  const fff::BertModel d = dense_model(7);
  fff::Context ctx(2);
  const auto seqs = sequences(80, 8);
  fff::ConvertOptions o;
  o.depth = 2;
  const fff::ConvertResult plain = fff::convert_dense_to_leaf(ctx, d, seqs, o);
  for (const bool soft : {true, false}) {
    o.distill_steps = 300, o.distill_batch = 64, o.distill_lr = 3e-3f, o.distill_soft = soft;
    const fff::ConvertResult r = fff::convert_dense_to_leaf(ctx, d, seqs, o);
    const fff::BertFFSamples s = fff::record_ff_samples(ctx, d, seqs, o.max_tokens);
    const int64_t N = s.tokens, n_train = N * 9 / 10, H = 32;
    int distilled = 0;
    for (size_t i = 0; i < 2; ++i) {
      const fff::LayerConvertStats& st = r.layers[i];
      // The undistilled figure is the plain conversion's, on the held-out rows.
      EXPECT_GT(st.heldout_converted_error, 0.0);
      EXPECT_EQ(st.relative_error, plain.layers[i].relative_error);
      distilled += st.distilled;
      EXPECT_EQ(st.distilled, st.heldout_distilled_error < st.heldout_converted_error);
      // The block kept is the one whose held-out error is reported.
      std::vector<float> y(static_cast<size_t>((N - n_train) * H));
      r.model.layers[i].ff->infer(ctx, s.x[i].data() + n_train * H, N - n_train, y.data(), nullptr);
      double e = 0, t = 0;
      for (size_t j = 0; j < y.size(); ++j) {
        const double dd = y[j] - s.y[i][n_train * H + j];
        e += dd * dd;
        t += static_cast<double>(s.y[i][n_train * H + j]) * s.y[i][n_train * H + j];
      }
      EXPECT_NEAR(std::sqrt(e / t),
                  st.distilled ? st.heldout_distilled_error : st.heldout_converted_error, 1e-5);
    }
    // Training on the pairs helps at least one layer of a random model.
    EXPECT_GE(distilled, 1) << (soft ? "soft" : "hard");
  }
}
