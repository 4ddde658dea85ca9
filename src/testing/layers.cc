// Naive references of the layers (fff/testing/layers.h): linear, attention and QRNN by loops in
// double.
#include "fff/testing/layers.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "layers/attention_shape.h"

namespace fff {

void linear_forward_reference(const float* x, int64_t B, int64_t in, int64_t out, const float* W,
                              const float* b, float* y) {
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < out; ++j) {
      double acc = b ? b[j] : 0.0;
      for (int64_t k = 0; k < in; ++k) acc += static_cast<double>(x[r * in + k]) * W[k * out + j];
      y[r * out + j] = static_cast<float>(acc);
    }
}

void linear_backward_reference(const float* x, const float* dy, int64_t B, int64_t in, int64_t out,
                               const float* W, float* dx, float* dW, float* db) {
  for (int64_t k = 0; k < in; ++k)
    for (int64_t j = 0; j < out; ++j) {
      double acc = 0.0;
      for (int64_t r = 0; r < B; ++r) acc += static_cast<double>(x[r * in + k]) * dy[r * out + j];
      dW[k * out + j] = static_cast<float>(acc);
    }
  for (int64_t j = 0; db && j < out; ++j) {
    double acc = 0.0;
    for (int64_t r = 0; r < B; ++r) acc += dy[r * out + j];
    db[j] = static_cast<float>(acc);
  }
  if (dx)
    for (int64_t r = 0; r < B; ++r)
      for (int64_t k = 0; k < in; ++k) {
        double acc = 0.0;
        for (int64_t j = 0; j < out; ++j)
          acc += static_cast<double>(dy[r * out + j]) * W[k * out + j];
        dx[r * in + k] = static_cast<float>(acc);
      }
}

void self_attention_reference(const AttentionShape& s, const float* qkv, const float* key_bias,
                              float* out) {
  check_shape(s);
  const int64_t S = s.seq, hd = s.head_dim, H = s.width(), ld_qkv = 3 * H;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> p(static_cast<size_t>(S));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t i = 0; i < S; ++i) {
        const float* q = qkv + (b * S + i) * ld_qkv + h * 3 * hd;
        double m = -INFINITY;
        for (int64_t j = 0; j < S; ++j) {
          const float* k = qkv + (b * S + j) * ld_qkv + h * 3 * hd + hd;
          double dot = 0.0;
          for (int64_t c = 0; c < hd; ++c) dot += static_cast<double>(q[c]) * k[c];
          p[j] = dot * scale + (key_bias ? key_bias[b * S + j] : 0.0);
          m = std::max(m, p[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < S; ++j) sum += (p[j] = std::exp(p[j] - m));
        for (int64_t c = 0; c < hd; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j < S; ++j)
            acc += p[j] / sum * qkv[(b * S + j) * ld_qkv + h * 3 * hd + 2 * hd + c];
          out[(b * S + i) * H + h * hd + c] = static_cast<float>(acc);
        }
      }
}

void qrnn_forward_reference(const Qrnn& m, const float* x, int64_t T, int64_t B,
                            const float* history, const float* h0, float* y) {
  const auto& c = m.cfg;
  const int64_t C = c.channels, in = c.in, k = c.window, cols = c.gates() * C;
  std::vector<double> h(static_cast<size_t>(B * C), 0.0);
  if (h0)
    for (int64_t i = 0; i < B * C; ++i) h[i] = h0[i];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < C; ++j) {
        double pre[3] = {m.b.value.data[j], m.b.value.data[C + j],
                         c.output_gate ? m.b.value.data[2 * C + j] : 0.0};
        for (int64_t s = 0; s < k; ++s) {
          const int64_t ts = t - s;
          const float* src = ts >= 0   ? x + (ts * B + b) * in
                             : history ? history + ((k - 1 + ts) * B + b) * in
                                       : nullptr;
          if (!src) continue;
          for (int64_t e = 0; e < in; ++e)
            for (int64_t gidx = 0; gidx < c.gates(); ++gidx)
              pre[gidx] +=
                  static_cast<double>(src[e]) * m.w.value.data[(s * in + e) * cols + gidx * C + j];
        }
        const double z = std::tanh(pre[0]);
        const double f = c.hard_sigmoid ? std::clamp(pre[1] / 6.0 + 0.5, 0.0, 1.0)
                                        : 1.0 / (1.0 + std::exp(-pre[1]));
        double& state = h[b * C + j];
        state = f * state + (1.0 - f) * z;
        const double o = c.output_gate ? 1.0 / (1.0 + std::exp(-pre[2])) : 1.0;
        y[(t * B + b) * C + j] = static_cast<float>(o * state);
      }
}

}  // namespace fff
