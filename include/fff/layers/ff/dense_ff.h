// Dense feedforward baseline y = phi(x W1 + b1) W2 + b2 (or phi(x W1) W2 without biases, as
// crammedBERT's blocks are).
//   x: (B, in)  W1: (in, width)  b1: (width)  W2: (width, out)  b2: (out)  y: (B, out)
// Backward overwrites every gradient and, if non-null, dx.
// naive reference: fff/testing/ff.h
#pragma once

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/cpu/packed_gemm.h"
#include "fff/layers/activation.h"

namespace fff {

struct DenseFFConfig {
  int64_t in = 0, width = 0, out = 0;
  Activation act = Activation::relu;
  bool bias = true;  // b1 and b2; without them they stay zero-sized and are not parameters
};

struct DenseFF {
  DenseFFConfig cfg;
  Param w1, b1, w2, b2;
  std::vector<Param*> params() {
    if (!cfg.bias) return {&w1, &w2};
    return {&w1, &b1, &w2, &b2};
  }
};

// Uniform init as in the FFF reference: +-1/sqrt(in) for W1, b1; +-1/sqrt(width) for W2, b2.
DenseFF make_dense_ff(const DenseFFConfig& cfg, Rng& rng);

struct DenseFFContext {
  Tensor z1, a1;  // (B, width): pre- and post-activation hidden values
};

// The parameters by pointer, row-major in the shapes above (biases null without them), so that
// storage other than a Param (PyTorch's tensors, in the Python binding) is used in place.
struct DenseFFWeights {
  const float *w1, *b1, *w2, *b2;
};
struct DenseFFGrads {
  float *w1, *b1, *w2, *b2;
};
DenseFFWeights weights_of(const DenseFF& m);
DenseFFGrads grads_of(DenseFF& m);

// cache (what backward needs) may be null at inference.
void dense_ff_forward(Context& ctx, const DenseFFConfig& cfg, const DenseFFWeights& w,
                      const float* x, int64_t B, float* y, DenseFFContext* cache);
// Inference: the same function with products split one block per thread (gemm_inference), the
// fastest dense baseline; `hidden` is scratch space, (B, width) after the call.
void dense_ff_infer(Context& ctx, const DenseFFConfig& cfg, const DenseFFWeights& w, const float* x,
                    int64_t B, float* y, Tensor& hidden);
void dense_ff_backward(Context& ctx, const DenseFFConfig& cfg, const DenseFFWeights& w,
                       const DenseFFGrads& g, const float* x, int64_t B, const float* dy,
                       const DenseFFContext& cache, float* dx);

// Inference on weights packed once (fff/cpu/packed_gemm.h), for a block that runs many batches
// on the same weights (DenseBlock, the encoders): no per-call packing, which at a few rows costs
// more than the products, and each row's result independent of the batch around it. Pack again
// after the weights change.
struct DenseFFPacked {
  DenseFFConfig cfg;
  PackedMatrix w1, w2;
  Tensor b1, b2;  // empty without biases
};
DenseFFPacked pack_dense_ff(const DenseFFConfig& cfg, const DenseFFWeights& w);
void dense_ff_infer(Context& ctx, const DenseFFPacked& p, const float* x, int64_t B, float* y,
                    Tensor& hidden);

inline void dense_ff_forward(Context& ctx, const DenseFF& m, const float* x, int64_t B, float* y,
                             DenseFFContext* cache) {
  dense_ff_forward(ctx, m.cfg, weights_of(m), x, B, y, cache);
}
inline void dense_ff_infer(Context& ctx, const DenseFF& m, const float* x, int64_t B, float* y,
                           Tensor& hidden) {
  dense_ff_infer(ctx, m.cfg, weights_of(m), x, B, y, hidden);
}
inline void dense_ff_backward(Context& ctx, DenseFF& m, const float* x, int64_t B, const float* dy,
                              const DenseFFContext& cache, float* dx) {
  dense_ff_backward(ctx, m.cfg, weights_of(m), grads_of(m), x, B, dy, cache, dx);
}

// Floating-point operations of one forward row: 2 * width * (in + out).
double dense_ff_flops_per_row(const DenseFFConfig& cfg);

}  // namespace fff
