// Small vector kernels shared by the CPU layers (internal header). GCC/Clang vector extensions
// with several independent accumulators, so the compiler emits the widest SIMD of the target
// (FFF_NATIVE) and the FMA chains do not serialise; scalar tails.
#pragma once

#include <cstdint>
#include <cstring>

namespace fff::cpu {

typedef float f32x16 __attribute__((vector_size(64)));

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));

// Horizontal sum by halving (a fixed order, so results are reproducible).
inline float hsum(f32x16 v) {
  const f32x8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const f32x4 b =
      __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// Dot product of two float vectors.
inline float dot(const float* a, const float* b, int64_t n) {
  f32x16 acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 += load16(a + i) * load16(b + i);
    acc1 += load16(a + i + 16) * load16(b + i + 16);
    acc2 += load16(a + i + 32) * load16(b + i + 32);
    acc3 += load16(a + i + 48) * load16(b + i + 48);
  }
  for (; i + 16 <= n; i += 16) acc0 += load16(a + i) * load16(b + i);
  float s = hsum((acc0 + acc1) + (acc2 + acc3));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out[k] = dot(x, w + k * ldw) for k < R: one pass over x serves R weight rows.
template <int R>
inline void dots(const float* x, const float* w, int64_t ldw, int64_t n, float* out) {
  f32x16 acc[R] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const f32x16 xv = load16(x + i);
    for (int k = 0; k < R; ++k) acc[k] += xv * load16(w + k * ldw + i);
  }
  for (int k = 0; k < R; ++k) {
    float s = hsum(acc[k]);
    for (int64_t t = i; t < n; ++t) s += x[t] * w[k * ldw + t];
    out[k] = s;
  }
}

// out[k] = dot(x, w + k * ldw) for k < rows, in blocks of 8, 4 and 1.
inline void dots_any(const float* x, const float* w, int64_t ldw, int64_t n, int64_t rows,
                     float* out) {
  int64_t k = 0;
  for (; k + 8 <= rows; k += 8) dots<8>(x, w + k * ldw, ldw, n, out + k);
  for (; k + 4 <= rows; k += 4) dots<4>(x, w + k * ldw, ldw, n, out + k);
  for (; k < rows; ++k) out[k] = dot(x, w + k * ldw, n);
}

// out[r * NW + k] = dot(x[r], w + k * ldw) for r < NR, k < NW: a register block of NR rows by
// NW weight vectors, so each load feeds several FMAs. Every (r, k) sums its 16-lane chunks in
// the same order whatever NR and NW, so results do not depend on the blocking.
template <int NR, int NW>
inline void dot_block(const float* const* x, const float* w, int64_t ldw, int64_t n, float* out) {
  f32x16 acc[NR][NW] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x16 xv[NR];
    for (int r = 0; r < NR; ++r) xv[r] = load16(x[r] + i);
    for (int k = 0; k < NW; ++k) {
      const f32x16 wv = load16(w + k * ldw + i);
      for (int r = 0; r < NR; ++r) acc[r][k] += xv[r] * wv;
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int k = 0; k < NW; ++k) {
      float s = hsum(acc[r][k]);
      for (int64_t t = i; t < n; ++t) s += x[r][t] * w[k * ldw + t];
      out[r * NW + k] = s;
    }
}

template <int NR>
inline void dot_rows(const float* const* x, const float* w, int64_t ldw, int64_t n, int64_t nw,
                     float* out, int64_t ldo) {
  float o[NR * 4];
  int64_t k = 0;
  for (; k + 4 <= nw; k += 4) {
    dot_block<NR, 4>(x, w + k * ldw, ldw, n, o);
    for (int r = 0; r < NR; ++r)
      for (int j = 0; j < 4; ++j) out[r * ldo + k + j] = o[r * 4 + j];
  }
  const int rest = static_cast<int>(nw - k);
  auto tail = [&]<int NW>() {
    dot_block<NR, NW>(x, w + k * ldw, ldw, n, o);
    for (int r = 0; r < NR; ++r)
      for (int j = 0; j < NW; ++j) out[r * ldo + k + j] = o[r * NW + j];
  };
  if (rest == 3) tail.template operator()<3>();
  if (rest == 2) tail.template operator()<2>();
  if (rest == 1) tail.template operator()<1>();
}

// out[r * ldo + k] = dot(x[r], w + k * ldw) for r < rows, k < nw: a small matrix product whose
// rows are given by pointer (rows gathered by tree node without copying them).
inline void dot_matrix(const float* const* x, int64_t rows, const float* w, int64_t ldw, int64_t n,
                       int64_t nw, float* out, int64_t ldo) {
  int64_t r = 0;
  if (nw == 1)  // one weight vector (a tree node): more rows per block keep more FMAs in flight
    for (; r + 8 <= rows; r += 8) dot_rows<8>(x + r, w, ldw, n, nw, out + r * ldo, ldo);
  for (; r + 4 <= rows; r += 4) dot_rows<4>(x + r, w, ldw, n, nw, out + r * ldo, ldo);
  switch (rows - r) {
    case 3:
      dot_rows<3>(x + r, w, ldw, n, nw, out + r * ldo, ldo);
      break;
    case 2:
      dot_rows<2>(x + r, w, ldw, n, nw, out + r * ldo, ldo);
      break;
    case 1:
      dot_rows<1>(x + r, w, ldw, n, nw, out + r * ldo, ldo);
      break;
    default:
      break;
  }
}

// Asks for the cache lines of a row of n floats ahead of its use.
inline void prefetch_row(const float* row, int64_t n) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(float)); b += 64)
    __builtin_prefetch(p + b);
}

// y += alpha * x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace fff::cpu
