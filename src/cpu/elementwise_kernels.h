// Elementwise SIMD kernels (internal header): GELU for every layer, the masked softmax of
// attention rows and layer normalisation of a row, compiled for several instruction sets through
// Highway and dispatched at run time.
#pragma once

#include <cstdint>

namespace fff::cpu {

// y[i] = GELU(x[i]) = x/2 (1 + erf(x / sqrt 2)) for i < n, with a vectorised erf whose absolute
// error is below 2e-7 (Abramowitz & Stegun 7.1.26 on |x|, sign restored). y may alias x.
void gelu(const float* x, float* y, int64_t n);

// ReLU and its backward: y[i] = x[i] > 0 ? x[i] : 0; dz[i] = z[i] > 0 ? da[i] : 0 (NaN gives 0,
// as the comparison is false). y may alias x, dz may alias da.
void relu(const float* x, float* y, int64_t n);
void relu_backward(const float* z, const float* da, float* dz, int64_t n);

// p[i] = sigmoid(z[i]) and h[i] = the binary entropy (natural log) of p[i], from one exp and one
// log1p each; where |z[i]| >= clamp_logit, h[i] = clamped (the entropy of the clamped p).
void sigmoid_entropy(const float* z, float* p, float* h, int64_t n, float clamp_logit,
                     float clamped);

// x = softmax(x + add) over n entries (add may be null): max, exp and sum in one pass each.
void softmax_inplace(float* x, const float* add, int64_t n);

// y = (x - mean) / sqrt(var + eps) * gain + bias over one row of n floats (biased variance, two
// passes, float lanes summed in a fixed order).
void layer_norm_row(const float* x, int64_t n, const float* gain, const float* bias, float eps,
                    float* y);

}  // namespace fff::cpu
