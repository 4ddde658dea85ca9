// Fully connected layer y = x W + b, forward/backward.
//   x: (B, in)   W: (in, out)   b: (out), or null for no bias   y: (B, out)
// Backward overwrites dW, db (if non-null) and dx (if non-null).
// naive reference: fff/testing/layers.h
#pragma once

#include <cstdint>

#include "fff/core/context.h"

namespace fff {

void linear_forward(Context& ctx, const float* x, int64_t B, int64_t in, int64_t out,
                    const float* W, const float* b, float* y);
// The same forward with the product split one block per thread (gemm_inference): for inference.
void linear_infer(Context& ctx, const float* x, int64_t B, int64_t in, int64_t out, const float* W,
                  const float* b, float* y);
void linear_backward(Context& ctx, const float* x, const float* dy, int64_t B, int64_t in,
                     int64_t out, const float* W, float* dx, float* dW, float* db);

// db[j] = sum over rows of dy[r, j] (overwrites), summed in row order.
void column_sums(const float* dy, int64_t B, int64_t cols, float* db);

}  // namespace fff
