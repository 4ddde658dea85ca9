// SIMD kernels of the conditional-matmul (CMM) engine (internal header). They are compiled for
// several instruction sets through Highway and dispatched at run time to the best the CPU has.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace fff::cpu {

// out[r] = dot(x[r], w) for r < rows, n floats each: the rows of one tree node's group.
// Every dot sums its 16-lane (or native-width) chunks into the same accumulators in the same
// order whatever `rows` is, so a row's result does not depend on how rows were grouped.
// next[0..next_rows): weight vectors the caller reads next, requested from memory a few lines at
// a time as this call reads its own, so that their misses overlap this call's work.
void cmm_dot_rows(const float* const* x, int64_t rows, const float* w, int64_t n, float* out,
                  const float* const* next = nullptr, int64_t next_rows = 0);
// The same with w in IEEE half precision (bits), widened exactly to fp32 as it is read.
void cmm_dot_rows(const float* const* x, int64_t rows, const uint16_t* w, int64_t n, float* out,
                  const uint16_t* const* next = nullptr, int64_t next_rows = 0);

// out[r] = dot(x[r], w[r]) for r < rows: rows that each meet their own weight vector (tokens
// alone at their tree nodes), computed together so that their weights' cache misses overlap.
// Each result is bitwise the one cmm_dot_rows gives for that row and vector.
void cmm_dot_pairs(const float* const* x, const float* const* w, int64_t rows, int64_t n,
                   float* out, const float* const* next = nullptr, int64_t next_rows = 0);
void cmm_dot_pairs(const float* const* x, const uint16_t* const* w, int64_t rows, int64_t n,
                   float* out, const uint16_t* const* next = nullptr, int64_t next_rows = 0);

// One step of a single row's walk down a tree: returns dot(x, w) over n columns, bitwise as
// cmm_dot_rows gives it, and in the same pass over the columns sets y[c] = a * v[c] + y[c] for
// c < m (nothing if v is null), fused as cmm_combine_rows fuses it: adding a path's output rows
// one per level gives cmm_combine_rows' result bit for bit, and their loads overlap the walk's
// chain of dependent ones. Before the pass, the first next_lines cache lines of
// next[0..next_rows) are requested. n = 0 only adds.
float cmm_dot_axpy(const float* x, const float* w, int64_t n, float a, const float* v, float* y,
                   int64_t m, const float* const* next = nullptr, int64_t next_rows = 0,
                   int64_t next_lines = 0);
float cmm_dot_axpy(const float* x, const uint16_t* w, int64_t n, float a, const uint16_t* v,
                   float* y, int64_t m, const uint16_t* const* next = nullptr,
                   int64_t next_rows = 0, int64_t next_lines = 0);

// out[r * ldo + k] = dot(x[r], w + k * ldw) for r < rows, k < nw: a small matrix product with
// rows given by pointer (gathered by tree node or leaf without copying them). ahead > 0: as each
// block of rows is computed, the rows `ahead` places further on in x are requested into L2 (for
// rows that stream from memory).
void cmm_dot_matrix(const float* const* x, int64_t rows, const float* w, int64_t ldw, int64_t n,
                    int64_t nw, float* out, int64_t ldo, int64_t ahead = 0);

// y[r][:n] = base + sum_j a[r * lda + j] * w[j][:n] for r < rows, j < terms, summed in order of j,
// where base is y[r] itself if accumulate, else init (n floats) if non-null, else zero. The
// terms' weight rows are shared by all rows: one tree path or one leaf's output rows.
// stream: write with non-temporal stores (where rows are vector-aligned and not accumulated),
// for outputs too large to stay in cache; it saves reading them in before writing.
// next[0..next_rows): weight rows the caller combines next, requested as in cmm_dot_rows.
void cmm_combine_rows(const float* a, int64_t lda, int64_t terms, const float* const* w, int64_t n,
                      const float* init, bool accumulate, bool stream, float* const* y,
                      int64_t rows, const float* const* next = nullptr, int64_t next_rows = 0);
// The same with the weight rows in IEEE half precision (bits).
void cmm_combine_rows(const float* a, int64_t lda, int64_t terms, const uint16_t* const* w,
                      int64_t n, const float* init, bool accumulate, bool stream, float* const* y,
                      int64_t rows, const uint16_t* const* next = nullptr, int64_t next_rows = 0);

// dst = src rounded to IEEE half precision (nearest, ties to even), as bits.
void to_half(const float* src, int64_t n, uint16_t* dst);

// The exact fp32 value of an IEEE half (bits).
inline float half_to_float(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0)  // zero or subnormal
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  else if (exponent == 31)
    magnitude =
        mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

// Name of the instruction set the kernels dispatch to on this CPU (e.g. "AVX3", "AVX2").
const char* cmm_simd_target();

}  // namespace fff::cpu
