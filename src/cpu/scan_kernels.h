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

// `steps` steps of a chunk summary for n channels: end = a * end + b, prod = prod * a.
void scan_summary_steps(const float* a, const float* b, int64_t stride, int64_t steps, float* end,
                        float* prod, int64_t n);

}  // namespace fff::cpu
