// Softmax cross-entropy with a numerically stable log-sum-exp.
#include "fff/layers/loss.h"

#include <cmath>

namespace fff {

int64_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

double softmax_cross_entropy(const float* logits, const int32_t* labels, int64_t B, int64_t C,
                             float* dlogits, int64_t* correct) {
  double total = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    const float* z = logits + r * C;
    const int64_t top = argmax(z, C);
    if (correct && top == labels[r]) ++*correct;
    double sum = 0.0;
    for (int64_t j = 0; j < C; ++j) sum += std::exp(static_cast<double>(z[j] - z[top]));
    const double log_sum = std::log(sum) + z[top];
    total += log_sum - z[labels[r]];
    if (dlogits) {
      float* d = dlogits + r * C;
      for (int64_t j = 0; j < C; ++j)
        d[j] = static_cast<float>((std::exp(z[j] - log_sum) - (j == labels[r] ? 1.0 : 0.0)) / B);
    }
  }
  return B > 0 ? total / B : 0.0;
}

}  // namespace fff
