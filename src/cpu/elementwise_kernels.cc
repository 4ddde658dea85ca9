// Elementwise SIMD kernels (GELU, masked softmax), written once with Highway and compiled for
// each x86 target; the best one the CPU supports is chosen at run time.
#include "cpu/elementwise_kernels.h"

#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/elementwise_kernels.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

// Per-target math (Exp) must come after highway.h.
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace fff::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;

// erf(|x|) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2), t = 1 / (1 + p |x|).
V GeluVec(D d, V x) {
  const V half = hn::Set(d, 0.5f), one = hn::Set(d, 1.0f);
  const V u = hn::Mul(x, hn::Set(d, 0.70710678118654752f));  // x / sqrt 2
  const V a = hn::Abs(u);
  const V t = hn::Div(one, hn::MulAdd(hn::Set(d, 0.3275911f), a, one));
  V poly = hn::Set(d, 1.061405429f);
  poly = hn::MulAdd(poly, t, hn::Set(d, -1.453152027f));
  poly = hn::MulAdd(poly, t, hn::Set(d, 1.421413741f));
  poly = hn::MulAdd(poly, t, hn::Set(d, -0.284496736f));
  poly = hn::MulAdd(poly, t, hn::Set(d, 0.254829592f));
  poly = hn::Mul(poly, t);
  const V e = hn::CallExp(d, hn::Neg(hn::Mul(a, a)));
  const V erf_abs = hn::NegMulAdd(poly, e, one);
  const V erf = hn::CopySign(erf_abs, u);
  return hn::Mul(hn::Mul(half, x), hn::Add(one, erf));
}

// Scalar tails use the same formula, so a value's result does not depend on its position.
float GeluScalar(float x) {
  const D d;
  return hn::GetLane(GeluVec(d, hn::Set(d, x)));
}

void Gelu(const float* x, float* y, int64_t n) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(GeluVec(d, hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) y[i] = GeluScalar(x[i]);
}

void Softmax(float* x, const float* add, int64_t n) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  if (n <= 0) return;
  if (add)
    for (int64_t i = 0; i < n; ++i) x[i] += add[i];
  V vmax = hn::Set(d, x[0]);
  int64_t i = 0;
  for (; i + N <= n; i += N) vmax = hn::Max(vmax, hn::LoadU(d, x + i));
  float m = hn::GetLane(hn::MaxOfLanes(d, vmax));
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  const V vm = hn::Set(d, m);
  V vsum = hn::Zero(d);
  for (i = 0; i + N <= n; i += N) {
    const V e = hn::CallExp(d, hn::Sub(hn::LoadU(d, x + i), vm));
    hn::StoreU(e, d, x + i);
    vsum = hn::Add(vsum, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, vsum));
  for (; i < n; ++i) {
    x[i] = hn::GetLane(hn::CallExp(d, hn::Set(d, x[i] - m)));
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (i = 0; i < n; ++i) x[i] *= inv;
}

// Sum of f(x[i]) over a row, 16-lane chunks into two accumulators, then the scalar tail.
template <class F>
float RowSum(const float* x, int64_t n, F f) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  V acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::Add(acc0, f(hn::LoadU(d, x + i)));
    acc1 = hn::Add(acc1, f(hn::LoadU(d, x + i + N)));
  }
  if (i + N <= n) {
    acc0 = hn::Add(acc0, f(hn::LoadU(d, x + i)));
    i += N;
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
  for (; i < n; ++i) sum += hn::GetLane(f(hn::Set(d, x[i])));
  return sum;
}

void LayerNormRow(const float* x, int64_t n, const float* gain, const float* bias, float eps,
                  float* y) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const float mean = RowSum(x, n, [](V v) { return v; }) / static_cast<float>(n);
  const V vmean = hn::Set(d, mean);
  const float var = RowSum(x, n,
                           [&](V v) {
                             const V c = hn::Sub(v, vmean);
                             return hn::Mul(c, c);
                           }) /
                    static_cast<float>(n);
  const float rstd = 1.0f / std::sqrt(var + eps);
  const V vrstd = hn::Set(d, rstd);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const V c = hn::Mul(hn::Sub(hn::LoadU(d, x + i), vmean), vrstd);
    hn::StoreU(hn::MulAdd(c, hn::LoadU(d, gain + i), hn::LoadU(d, bias + i)), d, y + i);
  }
  for (; i < n; ++i) y[i] = (x[i] - mean) * rstd * gain[i] + bias[i];
}

// e = exp(-|z|), p = 1 / (1 + e) for z >= 0 and e / (1 + e) below; H = log1p(e) +
// p max(-z, 0) + (1 - p) max(z, 0), or `clamped` where |z| >= clamp_logit.
void SigmoidEntropyVec(D d, V z, float clamp_logit, float clamped, V* p, V* h) {
  const V one = hn::Set(d, 1.0f), zero = hn::Zero(d);
  const V a = hn::Abs(z);
  const V e = hn::CallExp(d, hn::Neg(a));
  const V inv = hn::Div(one, hn::Add(one, e));
  *p = hn::IfThenElse(hn::Ge(z, zero), inv, hn::Mul(e, inv));
  const V soft = hn::Add(
      hn::CallLog1p(d, e),
      hn::MulAdd(*p, hn::Max(hn::Neg(z), zero), hn::Mul(hn::Sub(one, *p), hn::Max(z, zero))));
  *h = hn::IfThenElse(hn::Ge(a, hn::Set(d, clamp_logit)), hn::Set(d, clamped), soft);
}

void SigmoidEntropy(const float* z, float* p, float* h, int64_t n, float clamp_logit,
                    float clamped) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  V vp, vh;
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    SigmoidEntropyVec(d, hn::LoadU(d, z + i), clamp_logit, clamped, &vp, &vh);
    hn::StoreU(vp, d, p + i);
    hn::StoreU(vh, d, h + i);
  }
  // The tail through the same vector code, so a value's result does not depend on its position.
  for (; i < n; ++i) {
    SigmoidEntropyVec(d, hn::Set(d, z[i]), clamp_logit, clamped, &vp, &vh);
    p[i] = hn::GetLane(vp);
    h[i] = hn::GetLane(vh);
  }
}

// ReLU forward (mask = x) and backward (mask = z, value = da), with scalar tails.
void ReluSelect(const float* mask, const float* value, float* out, int64_t n) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const V zero = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::IfThenElseZero(hn::Gt(hn::LoadU(d, mask + i), zero), hn::LoadU(d, value + i)), d,
               out + i);
  for (; i < n; ++i) out[i] = mask[i] > 0.0f ? value[i] : 0.0f;
}

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace fff::cpu {

HWY_EXPORT(Gelu);
HWY_EXPORT(Softmax);
HWY_EXPORT(LayerNormRow);
HWY_EXPORT(ReluSelect);
HWY_EXPORT(SigmoidEntropy);

void sigmoid_entropy(const float* z, float* p, float* h, int64_t n, float clamp_logit,
                     float clamped) {
  HWY_DYNAMIC_DISPATCH(SigmoidEntropy)(z, p, h, n, clamp_logit, clamped);
}

void relu(const float* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ReluSelect)(x, x, y, n);
}

void relu_backward(const float* z, const float* da, float* dz, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ReluSelect)(z, da, dz, n);
}

void gelu(const float* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Gelu)(x, y, n);
}

void softmax_inplace(float* x, const float* add, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Softmax)(x, add, n);
}

void layer_norm_row(const float* x, int64_t n, const float* gain, const float* bias, float eps,
                    float* y) {
  HWY_DYNAMIC_DISPATCH(LayerNormRow)(x, n, gain, bias, eps, y);
}

}  // namespace fff::cpu
#endif
