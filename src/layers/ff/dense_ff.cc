// Dense FF baseline on the linear layer and activations.
#include "fff/layers/ff/dense_ff.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "fff/layers/linear.h"

namespace fff {

DenseFF make_dense_ff(const DenseFFConfig& cfg, Rng& rng) {
  if (cfg.in <= 0 || cfg.width <= 0 || cfg.out <= 0)
    throw Error("dense FF needs positive in, width and out");
  const int64_t nb = cfg.bias ? 1 : 0;
  DenseFF m{cfg, Param("w1", {cfg.in, cfg.width}), Param("b1", {nb * cfg.width}),
            Param("w2", {cfg.width, cfg.out}), Param("b2", {nb * cfg.out})};
  const float k1 = 1.0f / std::sqrt(static_cast<float>(cfg.in));
  const float k2 = 1.0f / std::sqrt(static_cast<float>(cfg.width));
  fill_uniform(m.w1.value, k1, rng);
  fill_uniform(m.b1.value, k1, rng);
  fill_uniform(m.w2.value, k2, rng);
  fill_uniform(m.b2.value, k2, rng);
  return m;
}

DenseFFWeights weights_of(const DenseFF& m) {
  const bool b = m.cfg.bias;
  return {m.w1.value.ptr(), b ? m.b1.value.ptr() : nullptr, m.w2.value.ptr(),
          b ? m.b2.value.ptr() : nullptr};
}

DenseFFGrads grads_of(DenseFF& m) {
  const bool b = m.cfg.bias;
  return {m.w1.grad.ptr(), b ? m.b1.grad.ptr() : nullptr, m.w2.grad.ptr(),
          b ? m.b2.grad.ptr() : nullptr};
}

void dense_ff_forward(Context& ctx, const DenseFFConfig& c, const DenseFFWeights& w, const float* x,
                      int64_t B, float* y, DenseFFContext* cache) {
  CallScope scope(ctx);
  DenseFFContext local;
  DenseFFContext& k = cache ? *cache : local;
  k.z1.reshape({B, c.width});
  k.a1.reshape({B, c.width});
  linear_forward(ctx, x, B, c.in, c.width, w.w1, w.b1, k.z1.ptr());
  activation_forward(ctx, c.act, k.z1.ptr(), k.a1.ptr(), k.z1.size());
  linear_forward(ctx, k.a1.ptr(), B, c.width, c.out, w.w2, w.b2, y);
}

void dense_ff_infer(Context& ctx, const DenseFFConfig& c, const DenseFFWeights& w, const float* x,
                    int64_t B, float* y, Tensor& hidden) {
  CallScope scope(ctx);
  hidden.reshape({B, c.width});
  linear_infer(ctx, x, B, c.in, c.width, w.w1, w.b1, hidden.ptr());
  activation_forward(ctx, c.act, hidden.ptr(), hidden.ptr(), hidden.size());
  linear_infer(ctx, hidden.ptr(), B, c.width, c.out, w.w2, w.b2, y);
}

void dense_ff_backward(Context& ctx, const DenseFFConfig& c, const DenseFFWeights& w,
                       const DenseFFGrads& g, const float* x, int64_t B, const float* dy,
                       const DenseFFContext& cache, float* dx) {
  CallScope scope(ctx);
  Tensor dh({B, c.width});
  linear_backward(ctx, cache.a1.ptr(), dy, B, c.width, c.out, w.w2, dh.ptr(), g.w2, g.b2);
  activation_backward(c.act, cache.z1.ptr(), dh.ptr(), dh.ptr(), dh.size());
  linear_backward(ctx, x, dh.ptr(), B, c.in, c.width, w.w1, dx, g.w1, g.b1);
}

DenseFFPacked pack_dense_ff(const DenseFFConfig& c, const DenseFFWeights& w) {
  DenseFFPacked p{c, pack_matrix(w.w1, c.width, false, c.in, c.width),
                  pack_matrix(w.w2, c.out, false, c.width, c.out), Tensor(), Tensor()};
  if (c.bias) {
    p.b1 = Tensor({c.width});
    std::copy_n(w.b1, c.width, p.b1.ptr());
    p.b2 = Tensor({c.out});
    std::copy_n(w.b2, c.out, p.b2.ptr());
  }
  return p;
}

void dense_ff_infer(Context& ctx, const DenseFFPacked& p, const float* x, int64_t B, float* y,
                    Tensor& hidden) {
  CallScope scope(ctx);
  const DenseFFConfig& c = p.cfg;
  hidden.reshape({B, c.width});
  const bool bias = c.bias;
  gemm_packed(ctx, B, x, c.in, p.w1, bias ? p.b1.ptr() : nullptr, false, hidden.ptr(), c.width);
  activation_forward(ctx, c.act, hidden.ptr(), hidden.ptr(), hidden.size());
  gemm_packed(ctx, B, hidden.ptr(), c.width, p.w2, bias ? p.b2.ptr() : nullptr, false, y, c.out);
}

double dense_ff_flops_per_row(const DenseFFConfig& cfg) {
  return 2.0 * static_cast<double>(cfg.width) * static_cast<double>(cfg.in + cfg.out);
}

}  // namespace fff
