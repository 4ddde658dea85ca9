// Softmax cross-entropy over class logits.
#pragma once

#include <cstdint>

namespace fff {

// logits: (B, C), labels: (B). Returns the mean loss over rows; if dlogits is non-null writes
// d(mean loss)/d logits = (softmax - target) / B into it (overwrites). If correct is non-null,
// adds the number of rows whose arg-max (first on ties) equals the label. The target is the
// one-hot label, or with label_smoothing eps in [0, 1) (PyTorch's CrossEntropyLoss
// label_smoothing) 1 - eps on the label plus eps / C on every class.
double softmax_cross_entropy(const float* logits, const int32_t* labels, int64_t B, int64_t C,
                             float* dlogits, int64_t* correct, float label_smoothing = 0.0f);

// Knowledge distillation (Hinton, Vinyals and Dean 2015): the mean over rows of
// T^2 KL(softmax(teacher / T) || softmax(logits / T)), teacher: (B, C) logits of a teacher model
// for the same rows, T > 0 the temperature (the T^2 keeps the gradient's scale that of
// cross-entropy as T changes). Zero iff the two rows' softmaxes at T agree. If dlogits is
// non-null writes d(mean loss)/d logits = T (softmax(logits / T) - softmax(teacher / T)) / B into
// it (overwrites).
double distillation_loss(const float* logits, const float* teacher, int64_t B, int64_t C, float T,
                         float* dlogits);

// Index of the largest value (first one on ties).
int64_t argmax(const float* v, int64_t n);

}  // namespace fff
