// Fully connected layer on sgemm, and its naive reference.
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
  for (int64_t r = 0; r < B; ++r) std::copy(b, b + out, y + r * out);
  gemm(ctx, false, false, B, out, in, 1.0f, x, in, W, out, 1.0f, y, out);
}

void linear_infer(Context& ctx, const float* x, int64_t B, int64_t in, int64_t out, const float* W,
                  const float* b, float* y) {
  CallScope scope(ctx);
  for (int64_t r = 0; r < B; ++r) std::copy(b, b + out, y + r * out);
  gemm_inference(ctx, false, false, B, out, in, 1.0f, x, in, W, out, 1.0f, y, out);
}

void linear_backward(Context& ctx, const float* x, const float* dy, int64_t B, int64_t in,
                     int64_t out, const float* W, float* dx, float* dW, float* db) {
  CallScope scope(ctx);
  gemm(ctx, true, false, in, out, B, 1.0f, x, in, dy, out, 0.0f, dW, out);
  column_sums(dy, B, out, db);
  if (dx) gemm(ctx, false, true, B, in, out, 1.0f, dy, out, W, out, 0.0f, dx, in);
}

void linear_forward_reference(const float* x, int64_t B, int64_t in, int64_t out, const float* W,
                              const float* b, float* y) {
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < out; ++j) {
      double acc = b[j];
      for (int64_t k = 0; k < in; ++k) acc += static_cast<double>(x[r * in + k]) * W[k * out + j];
      y[r * out + j] = static_cast<float>(acc);
    }
}

void linear_backward_reference(const float* x, const float* dy, int64_t B, int64_t in, int64_t out,
                               const float* W, float* dx, float* dW, float* db) {
  for (int64_t k = 0; k < in; ++k)
    for (int64_t j = 0; j < out; ++j) {
      double acc = 0.0;
      for (int64_t r = 0; r < B; ++r) acc += static_cast<double>(x[r * in + k]) * dy[r * out + j];
      dW[k * out + j] = static_cast<float>(acc);
    }
  for (int64_t j = 0; j < out; ++j) {
    double acc = 0.0;
    for (int64_t r = 0; r < B; ++r) acc += dy[r * out + j];
    db[j] = static_cast<float>(acc);
  }
  if (dx)
    for (int64_t r = 0; r < B; ++r)
      for (int64_t k = 0; k < in; ++k) {
        double acc = 0.0;
        for (int64_t j = 0; j < out; ++j)
          acc += static_cast<double>(dy[r * out + j]) * W[k * out + j];
        dx[r * in + k] = static_cast<float>(acc);
      }
}

}  // namespace fff
