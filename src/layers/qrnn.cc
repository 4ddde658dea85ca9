// QRNN layer: causal convolution as one matrix product over unfolded inputs, gate activations,
// the f-pooling recurrence by a scan, and the backward through all of it.
#include "fff/layers/qrnn.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "fff/layers/linear.h"

namespace fff {

namespace {

float sigmoid(float v) {
  return 1.0f / (1.0f + std::exp(-v));
}
float hard_sigmoid(float v) {
  return std::clamp(v / 6.0f + 0.5f, 0.0f, 1.0f);
}

// Row (t, b) of the unfolded input: x[t], x[t-1], ..., x[t-k+1] for batch item b, with the
// history (k - 1 rows, oldest first) or zeros before t = 0.
void unfold(Context& ctx, const float* x, int64_t T, int64_t B, int64_t in, int64_t k,
            const float* history, float* xu) {
  parallel_for(ctx, T, [&](int64_t t) {
    for (int64_t b = 0; b < B; ++b) {
      float* row = xu + (t * B + b) * k * in;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = t - j;
        const float* src = s >= 0    ? x + (s * B + b) * in
                           : history ? history + ((k - 1 + s) * B + b) * in
                                     : nullptr;
        if (src)
          std::copy_n(src, in, row + j * in);
        else
          std::fill_n(row + j * in, in, 0.0f);
      }
    }
  });
}

}  // namespace

Qrnn make_qrnn(const QrnnConfig& cfg, Rng& rng) {
  if (cfg.in <= 0 || cfg.channels <= 0 || cfg.window <= 0)
    throw Error("QRNN needs positive input width, channels and window");
  const int64_t rows = cfg.window * cfg.in, cols = cfg.gates() * cfg.channels;
  Qrnn m{cfg, Param("w", {rows, cols}), Param("b", {cols})};
  fill_uniform(m.w.value, 1.0f / std::sqrt(static_cast<float>(rows)), rng);
  for (int64_t c = 0; c < cfg.channels; ++c) m.b.value.data[cfg.channels + c] = 1.0f;
  return m;
}

void qrnn_forward(Context& ctx, const Qrnn& m, const float* x, int64_t T, int64_t B,
                  const float* history, const float* h0, float* y, QrnnContext& cache) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t C = c.channels, G = c.gates(), N = T * B, K = c.window * c.in;
  cache.xu.ensure_shape({N, K});
  cache.z.ensure_shape({T, B, C});
  cache.f.ensure_shape({T, B, C});
  cache.h.ensure_shape({T, B, C});
  cache.fpre.ensure_shape({T, B, C});
  if (c.output_gate) cache.o.ensure_shape({T, B, C});
  unfold(ctx, x, T, B, c.in, c.window, history, cache.xu.ptr());
  Tensor pre({N, G * C});
  linear_forward(ctx, cache.xu.ptr(), N, K, G * C, m.w.value.ptr(), m.b.value.ptr(), pre.ptr());
  Tensor xs({T, B, C});  // the recurrence's input (1 - f) z
  parallel_for(ctx, N, [&](int64_t r) {
    const float* p = pre.row(r);
    for (int64_t j = 0; j < C; ++j) {
      const int64_t i = r * C + j;
      const float z = std::tanh(p[j]), fp = p[C + j];
      const float f = c.hard_sigmoid ? hard_sigmoid(fp) : sigmoid(fp);
      cache.z.data[i] = z;
      cache.f.data[i] = f;
      cache.fpre.data[i] = fp;
      xs.data[i] = (1.0f - f) * z;
      if (c.output_gate) cache.o.data[i] = sigmoid(p[2 * C + j]);
    }
  });
  scan_forward(ctx, c.scan, cache.f.ptr(), xs.ptr(), T, B * C, h0, cache.h.ptr());
  if (c.output_gate) {
    parallel_for(ctx, N * C, [&](int64_t i) { y[i] = cache.o.data[i] * cache.h.data[i]; });
  } else {
    std::copy(cache.h.data.begin(), cache.h.data.end(), y);
  }
}

void qrnn_backward(Context& ctx, Qrnn& m, const float* dy, int64_t T, int64_t B, const float* h0,
                   const QrnnContext& cache, float* dx, float* dh0) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t C = c.channels, G = c.gates(), N = T * B, K = c.window * c.in;
  Tensor dh({T, B, C}), g({T, B, C}), dfs({T, B, C}), dpre({N, G * C});
  // Through the output gate: y = o h.
  parallel_for(ctx, N * C,
               [&](int64_t i) { dh.data[i] = c.output_gate ? dy[i] * cache.o.data[i] : dy[i]; });
  // Through the recurrence: g = dL/d(input of step t), dfs = dL/df from the recurrence.
  scan_backward(ctx, c.scan, cache.f.ptr(), cache.h.ptr(), dh.ptr(), T, B * C, h0, g.ptr(),
                dfs.ptr(), dh0);
  // Through x_t = (1 - f) z and the activations.
  parallel_for(ctx, N, [&](int64_t r) {
    float* dp = dpre.row(r);
    for (int64_t j = 0; j < C; ++j) {
      const int64_t i = r * C + j;
      const float z = cache.z.data[i], f = cache.f.data[i], gi = g.data[i];
      const float dz = gi * (1.0f - f), df = dfs.data[i] - gi * z;
      dp[j] = dz * (1.0f - z * z);
      const float fp = cache.fpre.data[i];
      const float dfdpre =
          c.hard_sigmoid ? (fp > -3.0f && fp < 3.0f ? 1.0f / 6.0f : 0.0f) : f * (1.0f - f);
      dp[C + j] = df * dfdpre;
      if (c.output_gate) {
        const float o = cache.o.data[i];
        dp[2 * C + j] = dy[i] * cache.h.data[i] * o * (1.0f - o);
      }
    }
  });
  Tensor dxu;
  if (dx) dxu = Tensor({N, K});
  linear_backward(ctx, cache.xu.ptr(), dpre.ptr(), N, K, G * C, m.w.value.ptr(),
                  dx ? dxu.ptr() : nullptr, m.w.grad.ptr(), m.b.grad.ptr());
  if (!dx) return;
  // Fold the unfolded gradient back: x[s] fed step s + j through slot j.
  const int64_t in = c.in;
  parallel_for(ctx, T, [&](int64_t s) {
    for (int64_t b = 0; b < B; ++b) {
      float* d = dx + (s * B + b) * in;
      std::fill_n(d, in, 0.0f);
      for (int64_t j = 0; j < c.window && s + j < T; ++j) {
        const float* src = dxu.row((s + j) * B + b) + j * in;
        for (int64_t e = 0; e < in; ++e) d[e] += src[e];
      }
    }
  });
}

}  // namespace fff
