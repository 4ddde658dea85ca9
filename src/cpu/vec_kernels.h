// Small vector kernels of the training paths (internal header): dot products, axpy, the
// optimizer updates and an elementwise product, compiled for several instruction sets through
// Highway and dispatched at run time, so a portable build runs them with the CPU's widest SIMD.
// Inference kernels are in cmm_kernels, activations in elementwise_kernels.
#pragma once

#include <cstdint>

namespace fff::cpu {

// Dot product of two float vectors of n entries. Chunks of the target's vector width go to four
// independent accumulators in turn (short FMA chains), summed pairwise and across lanes in a
// fixed order, then the scalar tail in order: the result depends only on the inputs and the
// dispatched target, never on threads or call site.
float dot(const float* a, const float* b, int64_t n);

// y += alpha * x over n entries.
void axpy(float alpha, const float* x, float* y, int64_t n);

// Optimizer updates over n parameters (w weights, g gradients, m and v moments), elementwise:
// plain SGD w -= lr g; momentum m = mu m + g, w -= lr m; Adam m = b1 m + (1 - b1) g,
// v = b2 v + (1 - b2) g^2, w -= lr (m c1) / (sqrt(v c2) + eps), with c1, c2 the bias corrections.
void sgd_update(float lr, const float* g, float* w, int64_t n);
void sgd_momentum_update(float lr, float mu, const float* g, float* m, float* w, int64_t n);
void adam_update(float lr, float b1, float b2, float c1, float c2, float eps, const float* g,
                 float* m, float* v, float* w, int64_t n);

// out = a * b elementwise over n entries (out may alias a or b).
void mul(const float* a, const float* b, float* out, int64_t n);

// Name of the instruction set these kernels dispatch to on this CPU (e.g. "AVX3", "AVX2").
const char* vec_simd_target();

// Asks for the cache lines of a row of n values ahead of its use (a hint: no instruction-set
// dependence, so it stays inline).
template <class T>
inline void prefetch_row(const T* row, int64_t n) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(p + b);
}

}  // namespace fff::cpu
