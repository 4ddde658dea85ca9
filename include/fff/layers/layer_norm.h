// Layer normalisation over each row.
//   LayerNorm: x, y: (N, d)   gain, bias: (d)
//     y = (x - mean(x)) / sqrt(var(x) + eps) * gain + bias   (biased variance, per row)
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

}  // namespace fff
