// SIMD kernels of the conditional-matmul (CMM) engine (internal header). They are compiled for
// several instruction sets through Highway and dispatched at run time to the best the CPU has.
#pragma once

#include <cstdint>

namespace fff::cpu {

// out[r] = dot(x[r], w) for r < rows, n floats each: the rows of one tree node's group.
// Every dot sums its 16-lane (or native-width) chunks into the same accumulators in the same
// order whatever `rows` is, so a row's result does not depend on how rows were grouped.
void cmm_dot_rows(const float* const* x, int64_t rows, const float* w, int64_t n, float* out);

// out[r * ldo + k] = dot(x[r], w + k * ldw) for r < rows, k < nw: a small matrix product with
// rows given by pointer (gathered by tree node or leaf without copying them).
void cmm_dot_matrix(const float* const* x, int64_t rows, const float* w, int64_t ldw, int64_t n,
                    int64_t nw, float* out, int64_t ldo);

// y[r][:n] = base + sum_j a[r * lda + j] * w[j][:n] for r < rows, j < terms, summed in order of j,
// where base is y[r] itself if accumulate, else init (n floats) if non-null, else zero. The
// terms' weight rows are shared by all rows: one tree path or one leaf's output rows.
// stream: write with non-temporal stores (where rows are vector-aligned and not accumulated),
// for outputs too large to stay in cache; it saves reading them in before writing.
void cmm_combine_rows(const float* a, int64_t lda, int64_t terms, const float* const* w, int64_t n,
                      const float* init, bool accumulate, bool stream, float* const* y,
                      int64_t rows);

// Name of the instruction set the kernels dispatch to on this CPU (e.g. "AVX3", "AVX2").
const char* cmm_simd_target();

}  // namespace fff::cpu
