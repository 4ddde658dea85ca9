// sgemm through OpenBLAS split into fixed blocks over the context's threads (the naive reference
// product is in src/testing/cpu.cc).
#include "fff/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>

#include "core/parallel.h"

namespace fff {

namespace {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

// The output is split into blocks that depend only on the product's shape, never on the thread
// count: each block is one single-threaded sgemm call, so every element is computed by the same
// call sequence on 1 or N threads and results are bitwise identical (OpenBLAS's own threading
// splits by thread count). Blocks of at least 128 rows keep sgemm near its full speed (about 4%
// slower on one thread than 256 for a batch-256 training step) and let a batch of 256 rows use
// two threads (0.235 -> 0.199 s per leaf FFF epoch, bench_train).
constexpr int64_t kGemmBlockMin = 128;

// Products that need no blocking: empty ones, K = 0, and single rows (sgemv, several times
// faster than sgemm at M = 1). Returns false for the rest.
bool gemm_special_case(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t /*lda: one row*/, const float* B, int64_t ldb,
                       float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return true;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return true;
  }
  if (M == 1 && !trans_a) {
    if (trans_b)  // B is (N, K): C = B A^T
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(N), static_cast<blasint>(K),
                  alpha, B, static_cast<blasint>(ldb), A, 1, beta, C, 1);
    else  // B is (K, N): C = B^T A^T
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(K), static_cast<blasint>(N),
                  alpha, B, static_cast<blasint>(ldb), A, 1, beta, C, 1);
    return true;
  }
  return false;
}

// The product as `blocks` sgemm calls over equal slices of the larger of M and N, in parallel.
void gemm_in_blocks(Context& ctx, int64_t blocks, bool trans_a, bool trans_b, int64_t M, int64_t N,
                    int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float beta, float* C, int64_t ldc) {
  const bool split_rows = M >= N;
  const int64_t extent = split_rows ? M : N;
  const int64_t block = (extent + blocks - 1) / blocks;
  if (blocks <= 1 || detail::in_region()) {
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_for(ctx, blocks, [&](int64_t b) {
    const int64_t lo = b * block, len = std::min(block, extent - lo);
    if (len <= 0) return;
    if (split_rows) {
      const float* Ab = trans_a ? A + lo : A + lo * lda;
      sgemm(trans_a, trans_b, len, N, K, alpha, Ab, lda, B, ldb, beta, C + lo * ldc, ldc);
    } else {
      const float* Bb = trans_b ? B + lo * ldb : B + lo;
      sgemm(trans_a, trans_b, M, len, K, alpha, A, lda, Bb, ldb, beta, C + lo, ldc);
    }
  });
}

// Inference blocks are at least this wide, so that a block keeps sgemm near its full speed.
constexpr int64_t kInferenceBlockMin = 64;

}  // namespace

void gemm(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  CallScope scope(ctx);
  if (gemm_special_case(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  const int64_t blocks = std::max<int64_t>(1, std::max(M, N) / kGemmBlockMin);
  gemm_in_blocks(ctx, blocks, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_inference(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float beta, float* C, int64_t ldc) {
  CallScope scope(ctx);
  if (gemm_special_case(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  const int64_t blocks = std::clamp<int64_t>(std::max(M, N) / kInferenceBlockMin, 1, ctx.threads);
  gemm_in_blocks(ctx, blocks, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace fff
