// Softmax cross-entropy over class logits.
#pragma once

#include <cstdint>

namespace fff {

// logits: (B, C), labels: (B). Returns the mean loss over rows; if dlogits is non-null writes
// d(mean loss)/d logits = (softmax - onehot) / B into it (overwrites). If correct is non-null,
// adds the number of rows whose arg-max (first on ties) equals the label.
double softmax_cross_entropy(const float* logits, const int32_t* labels, int64_t B, int64_t C,
                             float* dlogits, int64_t* correct);

// Index of the largest value (first one on ties).
int64_t argmax(const float* v, int64_t n);

}  // namespace fff
