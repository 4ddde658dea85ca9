// Softmax cross-entropy and the distillation loss, with numerically stable log-sum-exps.
#include "fff/layers/loss.h"

#include <cmath>

namespace fff {

int64_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

namespace {

// log sum_j exp(z[j] * scale), in double, shifted by the largest term.
double log_sum_exp(const float* z, int64_t C, double scale) {
  const double top = z[argmax(z, C)] * scale;
  double sum = 0.0;
  for (int64_t j = 0; j < C; ++j) sum += std::exp(z[j] * scale - top);
  return std::log(sum) + top;
}

}  // namespace

double softmax_cross_entropy(const float* logits, const int32_t* labels, int64_t B, int64_t C,
                             float* dlogits, int64_t* correct, float label_smoothing) {
  // The target puts 1 - eps on the label and eps / C on every class (the label included).
  const double eps = label_smoothing, off = eps / static_cast<double>(C), on = 1.0 - eps + off;
  double total = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    const float* z = logits + r * C;
    const int64_t top = argmax(z, C);
    if (correct && top == labels[r]) ++*correct;
    double sum = 0.0, z_sum = 0.0;
    for (int64_t j = 0; j < C; ++j) {
      sum += std::exp(static_cast<double>(z[j] - z[top]));
      z_sum += z[j];
    }
    const double log_sum = std::log(sum) + z[top];
    // -sum_j target_j log softmax_j = log_sum - (1 - eps) z_label - (eps / C) sum_j z_j.
    total += log_sum - (1.0 - eps) * z[labels[r]] - (eps > 0.0 ? off * z_sum : 0.0);
    if (dlogits) {
      float* d = dlogits + r * C;
      for (int64_t j = 0; j < C; ++j)
        d[j] = static_cast<float>((std::exp(z[j] - log_sum) - (j == labels[r] ? on : off)) / B);
    }
  }
  return B > 0 ? total / B : 0.0;
}

double distillation_loss(const float* logits, const float* teacher, int64_t B, int64_t C, float T,
                         float* dlogits) {
  const double inv_t = 1.0 / T;
  double total = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    const float* s = logits + r * C;
    const float* t = teacher + r * C;
    const double ls = log_sum_exp(s, C, inv_t), lt = log_sum_exp(t, C, inv_t);
    double kl = 0.0;  // sum_j p_j (log p_j - log q_j), p the teacher's softmax, q the student's
    for (int64_t j = 0; j < C; ++j) {
      const double log_p = t[j] * inv_t - lt, log_q = s[j] * inv_t - ls;
      const double p = std::exp(log_p);
      kl += p * (log_p - log_q);
      if (dlogits) dlogits[r * C + j] = static_cast<float>(T * (std::exp(log_q) - p) / B);
    }
    total += static_cast<double>(T) * T * kl;
  }
  return B > 0 ? total / B : 0.0;
}

}  // namespace fff
