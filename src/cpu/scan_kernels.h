// SIMD kernels of the scans (internal header), compiled per instruction set with Highway and
// dispatched at run time.
#pragma once

#include <cstdint>

namespace fff::cpu {

// `steps` steps of the recurrence for n channels: state = a * state + b, then out = state, where
// step s reads a + s * stride, b + s * stride and writes out + s * stride (stride may be
// negative). With `stream`, out is written with non-temporal stores where it is vector-aligned:
// the scan keeps its state in cache and never reads its output back, so fetching the output's
// lines before writing them would only waste memory bandwidth.
void scan_steps(const float* a, const float* b, int64_t stride, int64_t steps, float* state,
                float* out, int64_t n, bool stream);

// Fixes up a chunk that was scanned from a zero state, given the state `carry` that really
// enters it: out[s] += prod_s * carry, where prod_s = prod * a[0] * ... * a[s] (prod is updated).
// Stops after the first step at which every channel's product is below the smallest normal
// float (2^-126): from there on the carry's term is below 2^-126 |carry|, which is what
// flush-to-zero arithmetic makes of it anyway (and without flush-to-zero, gates of 0.75 or more
// hold a subnormal product from ever reaching zero). A carry that is not finite is applied to
// the whole chunk, so NaN spreads as in the sequential scan. Returns the number of steps fixed.
int64_t scan_fixup_steps(const float* a, int64_t stride, int64_t steps, const float* carry,
                         float* prod, float* out, int64_t n);

// Composes n channels of step pairs with the pairs of an earlier step:
// (a_out, b_out) = (a a_prev, a b_prev + b). a_out may alias a and b_out may alias b.
void scan_compose(const float* a, const float* b, const float* a_prev, const float* b_prev,
                  float* a_out, float* b_out, int64_t n);

}  // namespace fff::cpu
