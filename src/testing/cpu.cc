// Naive references of the CPU primitives (fff/testing/cpu.h): the product and the scan by loops
// in double.
#include "fff/testing/cpu.h"

namespace fff {

void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[i * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

void scan_forward_reference(const float* f, const float* x, int64_t T, int64_t C, const float* h0,
                            float* h) {
  for (int64_t c = 0; c < C; ++c) {
    double state = h0 ? h0[c] : 0.0;
    for (int64_t t = 0; t < T; ++t) {
      state = static_cast<double>(f[t * C + c]) * state + x[t * C + c];
      h[t * C + c] = static_cast<float>(state);
    }
  }
}

}  // namespace fff
