// Naive references of the layers in fff/layers/ (linear, attention, QRNN): loops accumulating in
// double that the fast paths are tested against. Kept forever, and installed so that code built
// on fff can be tested against them too; slow, not for production use.
#pragma once

#include <cstdint>

#include "fff/layers/attention.h"
#include "fff/layers/qrnn.h"

namespace fff {

// linear_forward and linear_backward (fff/layers/linear.h) by loops in double.
void linear_forward_reference(const float* x, int64_t B, int64_t in, int64_t out, const float* W,
                              const float* b, float* y);
void linear_backward_reference(const float* x, const float* dy, int64_t B, int64_t in, int64_t out,
                               const float* W, float* dx, float* dW, float* db);

// self_attention (fff/layers/attention.h) by loops in double; kept as the reference.
void self_attention_reference(const AttentionShape& s, const float* qkv, const float* key_bias,
                              float* out);

// Double-precision reference of qrnn_forward (fff/layers/qrnn.h), step by step.
void qrnn_forward_reference(const Qrnn& m, const float* x, int64_t T, int64_t B,
                            const float* history, const float* h0, float* y);

}  // namespace fff
