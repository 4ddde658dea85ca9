// Fully connected layer on sgemm (its naive reference is in src/testing/layers.cc).
#include "fff/layers/linear.h"

#include <algorithm>

#include "core/parallel.h"
#include "fff/cpu/gemm.h"

namespace fff {

void column_sums(const float* dy, int64_t B, int64_t cols, float* db) {
  std::fill(db, db + cols, 0.0f);
  for (int64_t r = 0; r < B; ++r) {
    const float* row = dy + r * cols;
    for (int64_t j = 0; j < cols; ++j) db[j] += row[j];
  }
}

void linear_forward(Context& ctx, const float* x, int64_t B, int64_t in, int64_t out,
                    const float* W, const float* b, float* y) {
  CallScope scope(ctx);
  if (b)
    for (int64_t r = 0; r < B; ++r) std::copy(b, b + out, y + r * out);
  gemm(ctx, false, false, B, out, in, 1.0f, x, in, W, out, b ? 1.0f : 0.0f, y, out);
}

void linear_infer(Context& ctx, const float* x, int64_t B, int64_t in, int64_t out, const float* W,
                  const float* b, float* y) {
  CallScope scope(ctx);
  if (b)
    for (int64_t r = 0; r < B; ++r) std::copy(b, b + out, y + r * out);
  gemm_inference(ctx, false, false, B, out, in, 1.0f, x, in, W, out, b ? 1.0f : 0.0f, y, out);
}

void linear_backward(Context& ctx, const float* x, const float* dy, int64_t B, int64_t in,
                     int64_t out, const float* W, float* dx, float* dW, float* db) {
  CallScope scope(ctx);
  gemm(ctx, true, false, in, out, B, 1.0f, x, in, dy, out, 0.0f, dW, out);
  if (db) column_sums(dy, B, out, db);
  if (dx) gemm(ctx, false, true, B, in, out, 1.0f, dy, out, W, out, 0.0f, dx, in);
}

}  // namespace fff
