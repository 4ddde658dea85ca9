// Elementwise SIMD kernels (internal header): GELU for every layer and the masked softmax of
// attention rows, compiled for several instruction sets through Highway and dispatched at run time.
#pragma once

#include <cstdint>

namespace fff::cpu {

// x[i] = GELU(x[i]) = x/2 (1 + erf(x / sqrt 2)) for i < n, with a vectorised erf whose absolute
// error is below 2e-7 (Abramowitz & Stegun 7.1.26 on |x|, sign restored).
void gelu_inplace(float* x, int64_t n);

// x = softmax(x + add) over n entries (add may be null): max, exp and sum in one pass each.
void softmax_inplace(float* x, const float* add, int64_t n);

}  // namespace fff::cpu
