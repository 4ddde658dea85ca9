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

inline float hsum(f32x16 v) {
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
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

// y += alpha * x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace fff::cpu
