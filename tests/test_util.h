// Helpers shared by the test programs: random data, error measures that never pass NaN,
// bitwise comparison and neuron FFF configurations.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/layers/activation.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/layers/ff/neuron_fff.h"
#include "fff/models/bert.h"

namespace fff_test {

// A small original (post-norm) BERT, as all-MiniLM-L6-v2 is, with a made-up vocabulary of 40
// tokens ("the capital of france is paris ." and tok12 ... tok39) and L2-normalised sentence
// embeddings of at most `sentence_max_len` tokens.
inline fff::BertModel small_sentence_model(int64_t hidden, int64_t heads, int64_t max_seq,
                                           int64_t ff_width, int64_t sentence_max_len,
                                           uint64_t seed) {
  fff::BertConfig c;
  c.arch = fff::BertArch::bert;
  c.hidden = hidden, c.layers = 2, c.heads = heads, c.vocab = 40, c.max_seq = max_seq;
  c.ff.kind = fff::FFKind::ff, c.ff.width = ff_width, c.ff.output_bias = true;
  fff::BertModel m = fff::make_random_bert(c, seed);
  std::string v = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncapital\nof\nfrance\nis\nparis\n.";
  for (int i = 12; i < 40; ++i) v += "\ntok" + std::to_string(i);
  m.vocab_text = v;
  m.normalize_embeddings = true;
  m.sentence_max_len = sentence_max_len;
  return m;
}

// Every field of two feedforward block configs is equal.
inline void expect_same_ff_config(const fff::FFConfig& a, const fff::FFConfig& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.in, b.in);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.act, b.act);
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.depth, b.depth);
  EXPECT_EQ(a.leaf_width, b.leaf_width);
  EXPECT_EQ(a.trees, b.trees);
  EXPECT_EQ(a.output_bias, b.output_bias);
}

inline std::vector<float> random_vec(int64_t n, fff::Rng& rng, float bound = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.uniform(-bound, bound);
  return v;
}

// max |a - b| / max(max |b|, tiny): error relative to the largest reference value. NaN or
// infinity anywhere gives +inf so that it never passes.
inline double max_rel_err(const float* a, const float* b, size_t n) {
  double num = 0.0, den = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / den;
}
template <class VA, class VB>
double max_rel_err(const VA& a, const VB& b) {
  EXPECT_EQ(a.size(), b.size());
  return max_rel_err(a.data(), b.data(), std::min(a.size(), b.size()));
}

// Bitwise equality of two arrays (std::vector or a tensor's storage); reports the first
// difference.
template <class VA, class VB>
::testing::AssertionResult bitwise_equal(const VA& a, const VB& b) {
  static_assert(sizeof(a[0]) == sizeof(b[0]));
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(a[0])) != 0)
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

inline fff::NeuronFFFConfig neuron_config(int64_t in, int64_t out, int64_t K, int64_t D,
                                          fff::Activation a, bool bias) {
  fff::NeuronFFFConfig c;
  c.in = in;
  c.out = out;
  c.trees = K;
  c.depth = D;
  c.act = a;
  c.output_bias = bias;
  return c;
}

inline std::string neuron_desc(const fff::NeuronFFFConfig& c, int64_t B) {
  return "K=" + std::to_string(c.trees) + " D=" + std::to_string(c.depth) +
         " in=" + std::to_string(c.in) + " out=" + std::to_string(c.out) +
         " B=" + std::to_string(B) + " act=" + fff::activation_name(c.act) +
         (c.output_bias ? " bias" : " nobias");
}

// 4-point central difference of f at t: (-f(t+2h) + 8 f(t+h) - 8 f(t-h) + f(t-2h)) / (12 h).
template <class F>
double fd4(F&& f, double t, double h) {
  return (-f(t + 2 * h) + 8 * f(t + h) - 8 * f(t - h) + f(t - 2 * h)) / (12 * h);
}

}  // namespace fff_test
