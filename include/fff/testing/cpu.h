// Naive references of the CPU primitives (fff/cpu/gemm.h, fff/cpu/scan.h): loops accumulating
// in double that the fast paths are tested against. Kept forever, and installed so that code
// built on fff can be tested against them too; slow, not for production use.
#pragma once

#include <cstdint>

namespace fff {

// The same product as gemm (fff/cpu/gemm.h) by a triple loop accumulating in double; kept
// forever as the reference the fast path is tested against.
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc);

// Double-precision sequential scan (fff/cpu/scan.h), kept as the reference the others are tested
// against.
void scan_forward_reference(const float* f, const float* x, int64_t T, int64_t C, const float* h0,
                            float* h);

}  // namespace fff
