// Dense matrix products (OpenBLAS sgemm behind one call) with a naive reference, and the
// library-wide thread setting.
#pragma once

#include <cstdint>

namespace fff {

// C = alpha * op(A) * op(B) + beta * C, all row-major; op(A) is (M, K), op(B) is (K, N).
// trans_a means A is stored (K, M) with leading dimension lda, likewise for B.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The same product split into one block per thread of the current setting (the larger of M, N
// is split), each block one sgemm call: the fastest split, for inference. Results agree with
// gemm's to rounding but may differ in the last bits between thread counts, since OpenBLAS's
// value for an element can depend on the extent of the call it is in.
void gemm_inference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc);

// The same product by a triple loop accumulating in double; kept forever as the reference the
// fast path is tested against.
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc);

// Sets the threads used by OpenBLAS and by fff's own OpenMP loops. Results never depend on it:
// fff's loops split work by rows with fixed reductions.
void set_num_threads(int n);
int num_threads();

// Treats subnormal floats as zero (FTZ/DAZ) on the calling thread and fff's worker threads.
// Hardened trees drive path probabilities far below 1e-38; arithmetic on such subnormals is
// tens of times slower on x86, in sgemm too. Training and inference call this; results stay
// deterministic (only values below 1.2e-38 change, to zero).
void flush_subnormals();

}  // namespace fff
