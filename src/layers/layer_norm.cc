// Layer normalisation, forward and backward.
#include "fff/layers/layer_norm.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "cpu/elementwise_kernels.h"

namespace fff {

LayerNorm make_layer_norm(int64_t dim, const std::string& name) {
  if (dim <= 0) throw Error("layer norm needs a positive width");
  LayerNorm m{dim, 1e-5f, Param(name + ".gain", {dim}), Param(name + ".bias", {dim})};
  for (float& v : m.gain.value.data) v = 1.0f;
  return m;
}

void layer_norm_forward(Context& ctx, const LayerNorm& m, const float* x, int64_t N, float* y,
                        LayerNormContext& cache) {
  CallScope scope(ctx);
  const int64_t d = m.dim;
  if (cache.xhat.shape != std::vector<int64_t>{N, d}) cache.xhat = Tensor({N, d});
  cache.rstd.resize(static_cast<size_t>(N));
  parallel_for(ctx, N, [&](int64_t r) {
    const float* xr = x + r * d;
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < d; ++j) mean += xr[j];
    mean /= static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= static_cast<double>(d);
    const float rstd = static_cast<float>(1.0 / std::sqrt(var + m.eps));
    cache.rstd[r] = rstd;
    float* xh = cache.xhat.row(r);
    float* yr = y + r * d;
    for (int64_t j = 0; j < d; ++j) {
      xh[j] = static_cast<float>(xr[j] - mean) * rstd;
      yr[j] = xh[j] * m.gain.value.data[j] + m.bias.value.data[j];
    }
  });
}

void layer_norm_infer(Context& ctx, const LayerNorm& m, const float* x, int64_t N, float* y) {
  CallScope scope(ctx);
  const int64_t d = m.dim;
  parallel_for(ctx, N, [&](int64_t r) {
    cpu::layer_norm_row(x + r * d, d, m.gain.value.ptr(), m.bias.value.ptr(), m.eps, y + r * d);
  });
}

void layer_norm_backward(Context& ctx, LayerNorm& m, const float* dy, int64_t N,
                         const LayerNormContext& cache, float* dx) {
  CallScope scope(ctx);
  const int64_t d = m.dim;
  float* dg = m.gain.grad.ptr();
  float* db = m.bias.grad.ptr();
  std::fill_n(dg, d, 0.0f);
  std::fill_n(db, d, 0.0f);
  for (int64_t r = 0; r < N; ++r) {  // in row order: the same sums for any thread count
    const float *dyr = dy + r * d, *xh = cache.xhat.row(r);
    for (int64_t j = 0; j < d; ++j) {
      dg[j] += dyr[j] * xh[j];
      db[j] += dyr[j];
    }
  }
  if (!dx) return;
  parallel_for(ctx, N, [&](int64_t r) {
    const float *dyr = dy + r * d, *xh = cache.xhat.row(r);
    // dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * gain
    double mean_g = 0.0, mean_gx = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const double g = static_cast<double>(dyr[j]) * m.gain.value.data[j];
      mean_g += g;
      mean_gx += g * xh[j];
    }
    mean_g /= static_cast<double>(d);
    mean_gx /= static_cast<double>(d);
    float* dxr = dx + r * d;
    for (int64_t j = 0; j < d; ++j) {
      const double g = static_cast<double>(dyr[j]) * m.gain.value.data[j];
      dxr[j] = static_cast<float>(cache.rstd[r] * (g - mean_g - xh[j] * mean_gx));
    }
  });
}

}  // namespace fff
