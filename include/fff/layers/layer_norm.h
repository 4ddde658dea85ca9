// Layer normalisation over each row, and a token embedding table.
//   LayerNorm: x, y: (N, d)   gain, bias: (d)
//     y = (x - mean(x)) / sqrt(var(x) + eps) * gain + bias   (biased variance, per row)
//   Embedding: tokens: (N) in [0, vocab)   table: (vocab, d)   y: (N, d),  y[r] = table[tokens[r]]
// Backward overwrites the parameter gradients and dx (if non-null).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"

namespace fff {

struct LayerNorm {
  int64_t dim = 0;
  float eps = 1e-5f;
  Param gain, bias;
  std::vector<Param*> params() { return {&gain, &bias}; }
};

LayerNorm make_layer_norm(int64_t dim, const std::string& name);  // gain 1, bias 0

struct LayerNormContext {
  Tensor xhat;              // (N, d) normalised inputs
  std::vector<float> rstd;  // (N) 1 / sqrt(var + eps)
};

void layer_norm_forward(Context& ctx, const LayerNorm& m, const float* x, int64_t N, float* y,
                        LayerNormContext& cache);
// Inference: the same y without a LayerNormContext; rows spread over threads, each normalised by a
// SIMD kernel in float (two passes: mean, then the variance of the centred row). y may alias x.
void layer_norm_infer(Context& ctx, const LayerNorm& m, const float* x, int64_t N, float* y);
void layer_norm_backward(Context& ctx, LayerNorm& m, const float* dy, int64_t N,
                         const LayerNormContext& cache, float* dx);

// Embedding: a table of vocab rows of d floats, initialised normal(0, 1).
struct Embedding {
  int64_t vocab = 0, dim = 0;
  Param table;
  std::vector<Param*> params() { return {&table}; }
};

Embedding make_embedding(int64_t vocab, int64_t dim, Rng& rng);
// Throws fff::Error on a token outside [0, vocab).
void embedding_forward(const Embedding& m, const int32_t* tokens, int64_t N, float* y);
void embedding_backward(Embedding& m, const int32_t* tokens, int64_t N, const float* dy);

}  // namespace fff
