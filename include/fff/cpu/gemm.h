// Dense matrix products (OpenBLAS sgemm behind one call).
// naive reference: fff/testing/cpu.h
#pragma once

#include <cstdint>

#include "fff/core/context.h"

namespace fff {

// C = alpha * op(A) * op(B) + beta * C, all row-major; op(A) is (M, K), op(B) is (K, N).
// trans_a means A is stored (K, M) with leading dimension lda, likewise for B. Split into blocks
// that depend only on the shape, spread over ctx.threads.
void gemm(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc);

// The same product split into one block per thread of ctx (the larger of M, N is split), each block
// one sgemm call: the fastest split, for inference. Results agree with gemm's to rounding but may
// differ in the last bits between thread counts, since OpenBLAS's value for an element can depend
// on the extent of the call it is in.
void gemm_inference(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float beta, float* C, int64_t ldc);

}  // namespace fff
