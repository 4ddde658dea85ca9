// Tests of the dense -> leaf FFF conversion (bert_convert.h) on small random post-norm BERTs:
// coactivation's leaves partition the dense neurons and its routing beats chance; token_split
// routes the tokens in equal halves and its leaves' outputs are the least-squares fit (against a
// naive solve in the test); both methods' reported figures agree with running the converted
// blocks, results are deterministic and survive a file round trip.
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
    o.method = fff::ConvertMethod::coactivation;
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
  o.method = fff::ConvertMethod::coactivation;
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

namespace {

// Leaf j's least-squares output layer by the normal equations in double, plain loops: minimises
// sum over its tokens of ||[a_S(x), 1] [W2; b2] - y||^2 + lambda ||W2||^2, lambda as
// refit_leaf_outputs takes it (ridge x the mean diagonal of A^T A). Returns (l + 1, H) rows.
std::vector<double> naive_leaf_fit(const std::vector<float>& X, const std::vector<float>& Y,
                                   const std::vector<int32_t>& routes, int32_t leaf,
                                   const fff::FFBlock& dense, const std::vector<int64_t>& neurons,
                                   int64_t H, double ridge) {
  const fff::Tensor &w1 = param(dense, "w1"), &b1 = param(dense, "b1");
  const int64_t I = b1.size(), l = static_cast<int64_t>(neurons.size()), m = l + 1;
  std::vector<double> G(static_cast<size_t>(m * m), 0.0), R(static_cast<size_t>(m * H), 0.0);
  for (size_t r = 0; r < routes.size(); ++r) {
    if (routes[r] != leaf) continue;
    std::vector<double> a(static_cast<size_t>(m), 1.0);
    for (int64_t q = 0; q < l; ++q) {
      double z = b1.data[neurons[q]];
      for (int64_t h = 0; h < H; ++h) z += X[r * H + h] * w1.data[h * I + neurons[q]];
      a[q] = 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
    }
    for (int64_t u = 0; u < m; ++u) {
      for (int64_t v = 0; v < m; ++v) G[u * m + v] += a[u] * a[v];
      for (int64_t h = 0; h < H; ++h) R[u * H + h] += a[u] * Y[r * H + h];
    }
  }
  double trace = 0;
  for (int64_t q = 0; q < l; ++q) trace += G[q * m + q];
  for (int64_t q = 0; q < l; ++q) G[q * m + q] += ridge * trace / static_cast<double>(l);
  // Gauss-Jordan elimination with partial pivoting on [G | R].
  for (int64_t c = 0; c < m; ++c) {
    int64_t piv = c;
    for (int64_t r = c + 1; r < m; ++r)
      if (std::fabs(G[r * m + c]) > std::fabs(G[piv * m + c])) piv = r;
    for (int64_t v = 0; v < m; ++v) std::swap(G[c * m + v], G[piv * m + v]);
    for (int64_t h = 0; h < H; ++h) std::swap(R[c * H + h], R[piv * H + h]);
    for (int64_t r = 0; r < m; ++r) {
      if (r == c) continue;
      const double f = G[r * m + c] / G[c * m + c];
      for (int64_t v = 0; v < m; ++v) G[r * m + v] -= f * G[c * m + v];
      for (int64_t h = 0; h < H; ++h) R[r * H + h] -= f * R[c * H + h];
    }
  }
  for (int64_t r = 0; r < m; ++r)
    for (int64_t h = 0; h < H; ++h) R[r * H + h] /= G[r * m + r];
  return R;
}

}  // namespace

TEST(BertConvert, TokenSplitHalvesTheTokensAndFitsEachLeafByLeastSquares) {
  const fff::BertModel d = dense_model(11);
  fff::Context ctx(2);
  const auto seqs = sequences(70, 12);
  const int64_t H = 32, I = 64;
  for (const int64_t depth : {1, 2, 3}) {
    fff::ConvertOptions o;  // token_split is the default
    o.depth = depth;
    o.leaf_ridge = 1e-2f;  // fixed, for the naive fit below
    const fff::ConvertResult r = fff::convert_dense_to_leaf(ctx, d, seqs, o);
    const int64_t k = int64_t{1} << depth, l = I / k;
    const fff::BertFFSamples s = fff::record_ff_samples(ctx, d, seqs, o.max_tokens);
    const int64_t N = s.tokens;
    for (size_t i = 0; i < 2; ++i) {
      const fff::FFBlock& db = *d.layers[i].ff;
      fff::FFBlock& lb = *r.model.layers[i].ff;
      std::vector<float> y(static_cast<size_t>(N * H));
      std::vector<int32_t> routes;
      lb.infer(ctx, s.x[i].data(), N, y.data(), &routes);
      // Each split halves its tokens: every leaf gets N / k of them, up to one per level.
      std::vector<int64_t> count(static_cast<size_t>(k), 0);
      for (int32_t leaf : routes) ++count[leaf];
      for (int64_t j = 0; j < k; ++j) EXPECT_NEAR(count[j], N / k, depth + 1) << depth;
      // Leaf j's hidden neurons are l distinct dense neurons (w1 column and b1 as in dense).
      const fff::Tensor &w1 = param(db, "w1"), &b1 = param(db, "b1");
      const fff::Tensor &lw1 = param(lb, "w1"), &lb1 = param(lb, "b1"), &lw2 = param(lb, "w2"),
                        &lb2 = param(lb, "b2");
      for (int64_t j = 0; j < k; ++j) {
        std::vector<int64_t> neurons;
        for (int64_t q = 0; q < l; ++q) {
          int64_t found = -1;
          for (int64_t n = 0; n < I && found < 0; ++n) {
            bool same = b1.data[n] == lb1.data[j * l + q];
            for (int64_t h = 0; h < H && same; ++h)
              same = w1.data[h * I + n] == lw1.data[h * k * l + j * l + q];
            if (same) found = n;
          }
          ASSERT_GE(found, 0);
          neurons.push_back(found);
        }
        EXPECT_EQ(std::set<int64_t>(neurons.begin(), neurons.end()).size(), static_cast<size_t>(l));
        // Its output layer is the ridge least-squares fit on its tokens.
        const std::vector<double> ref = naive_leaf_fit(
            s.x[i], s.y[i], routes, static_cast<int32_t>(j), db, neurons, H, o.leaf_ridge);
        double err = 0, scale = 0;
        for (int64_t q = 0; q <= l; ++q)
          for (int64_t h = 0; h < H; ++h) {
            const double got = q < l ? lw2.row(j * l + q)[h] : lb2.row(j)[h];
            err = std::max(err, std::fabs(got - ref[q * H + h]));
            scale = std::max(scale, std::fabs(ref[q * H + h]));
          }
        EXPECT_LT(err, 2e-3 * scale) << "depth " << depth << " layer " << i << " leaf " << j;
      }
      // The reported error is the block's on the recorded inputs, and below coactivation's.
      double e = 0, t = 0;
      for (int64_t q = 0; q < N * H; ++q) {
        e += (y[q] - s.y[i][q]) * (y[q] - s.y[i][q]);
        t += s.y[i][q] * s.y[i][q];
      }
      EXPECT_NEAR(std::sqrt(e / t), r.layers[i].relative_error, 1e-4);
      EXPECT_LE(r.layers[i].best_relative_error, r.layers[i].relative_error + 1e-6);
    }
    fff::ConvertOptions co = o;
    co.method = fff::ConvertMethod::coactivation;
    const fff::ConvertResult c = fff::convert_dense_to_leaf(ctx, d, seqs, co);
    for (size_t i = 0; i < 2; ++i)
      EXPECT_LT(r.layers[i].relative_error, c.layers[i].relative_error) << depth;
    // Deterministic for a seed.
    const fff::ConvertResult again = fff::convert_dense_to_leaf(ctx, d, seqs, o);
    for (size_t i = 0; i < 2; ++i)
      for (const char* p : {"nodes_w", "nodes_b", "w1", "b1", "w2", "b2"})
        EXPECT_TRUE(fff_test::bitwise_equal(param(*r.model.layers[i].ff, p).data,
                                            param(*again.model.layers[i].ff, p).data));
  }
}

TEST(BertConvert, TokenSplitChoosesTheLeafPenaltyOnHeldOutTokens) {
  // Few tokens per leaf for 33 outputs weights: a weak penalty overfits them. The penalty chosen
  // per leaf on a tenth of its tokens does better on other text than the weakest one alone.
  const fff::BertModel d = dense_model(13);
  fff::Context ctx(2);
  const auto seqs = sequences(20, 14), other = sequences(60, 15);
  const fff::BertFFSamples s = fff::record_ff_samples(ctx, d, other, 100000);
  auto error_on_other = [&](float ridge) {
    fff::ConvertOptions o;
    o.depth = 2;
    o.leaf_ridge = ridge;
    const fff::ConvertResult r = fff::convert_dense_to_leaf(ctx, d, seqs, o);
    double e = 0, t = 0;
    for (size_t i = 0; i < 2; ++i) {
      std::vector<float> y(s.y[i].size());
      r.model.layers[i].ff->infer(ctx, s.x[i].data(), s.tokens, y.data(), nullptr);
      for (size_t q = 0; q < y.size(); ++q) {
        e += (y[q] - s.y[i][q]) * (y[q] - s.y[i][q]);
        t += s.y[i][q] * s.y[i][q];
      }
    }
    return std::sqrt(e / t);
  };
  const double chosen = error_on_other(-1.0f), weakest = error_on_other(1e-4f);
  EXPECT_LT(chosen, weakest);
  EXPECT_TRUE(std::isfinite(chosen));
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
  EXPECT_THROW(fff::parse_convert_method("moefication"), fff::Error);
  EXPECT_EQ(fff::parse_convert_method("coactivation"), fff::ConvertMethod::coactivation);
  EXPECT_STREQ(fff::convert_method_name(fff::ConvertMethod::token_split), "token-split");
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
