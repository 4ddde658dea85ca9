// Matrix products whose right operand is an inference weight packed once, ahead of time:
//   C (M, N) = A (M, K) B (K, N) [+ bias (N)] [+ C]
// OpenBLAS packs both operands on every call; at the few rows of a short sentence packing the
// weight costs more than the product (perf on `fff bench bert`, all-MiniLM-L6-v2, 1 x 16 tokens:
// sgemm's packing 69% of the time, its kernel 22%; docs/performance.md). Here B is stored in
// column panels of 2 SIMD vectors, each panel K rows of contiguous floats, and a kernel of 6 rows
// x 2 vectors (12 accumulators: fits AVX2's 16 registers and AVX-512's 32) streams it.
// Each element of C is one dot product over k = 0..K-1 in order, computed by one kernel call:
// results do not depend on M, on the rows around, or on the thread count.
// naive reference: fff/testing/cpu.h (gemm_reference)
#pragma once

#include <cstdint>

#include "fff/core/common.h"
#include "fff/core/context.h"

namespace fff {

struct PackedMatrix {
  int64_t K = 0, N = 0;
  int64_t panel = 0;  // columns per panel (2 vectors of the CPU's widest target)
  Tensor data;        // (ceil(N / panel), K, panel); columns past N are zero
  bool empty() const { return N == 0; }
};

// Packs B (K, N), stored row-major with leading dimension ldb, or with `trans` stored (N, K) (a
// PyTorch Linear weight (out, in) gives x W^T). The panel width follows the SIMD target the CPU
// runs, so a packed matrix belongs to the process that made it (never write it to a file).
PackedMatrix pack_matrix(const float* B, int64_t ldb, bool trans, int64_t K, int64_t N);

// C = A B (+ bias if non-null) (+ C if accumulate); A (M, K) with leading dimension lda, C
// (M, N) with ldc. Spreads equal shares of the rows, or of the column panels, over ctx.threads.
void gemm_packed(Context& ctx, int64_t M, const float* A, int64_t lda, const PackedMatrix& B,
                 const float* bias, bool accumulate, float* C, int64_t ldc);

}  // namespace fff
