// Vector kernels of the training paths, written once with Highway and compiled for each target;
// the best one the CPU supports is chosen at run time.
#include "cpu/vec_kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/vec_kernels.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace fff::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;

float Dot(const float* a, const float* b, int64_t n) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  if (n < N) {  // short rows: no vector setup at all
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  V acc0 = hn::Zero(d), acc1 = hn::Zero(d), acc2 = hn::Zero(d), acc3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    acc0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), acc1);
    acc2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), hn::LoadU(d, b + i + 2 * N), acc2);
    acc3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), hn::LoadU(d, b + i + 3 * N), acc3);
  }
  for (; i + N <= n; i += N) acc0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc0);
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(acc0, acc1), hn::Add(acc2, acc3))));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void Axpy(float alpha, const float* x, float* y, int64_t n) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const V va = hn::Set(d, alpha);
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// The optimizer loops: vectors, then the same arithmetic on single lanes for the tail, so that a
// parameter's update does not depend on where it falls in the row.
template <class Step>
HWY_INLINE void Elementwise(int64_t n, Step step) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) step(d, i);
  const hn::CappedTag<float, 1> d1;
  for (; i < n; ++i) step(d1, i);
}

void SgdUpdate(float lr, const float* g, float* w, int64_t n) {
  Elementwise(n, [&](auto d, int64_t i) {
    hn::StoreU(hn::NegMulAdd(hn::Set(d, lr), hn::LoadU(d, g + i), hn::LoadU(d, w + i)), d, w + i);
  });
}

void SgdMomentumUpdate(float lr, float mu, const float* g, float* m, float* w, int64_t n) {
  Elementwise(n, [&](auto d, int64_t i) {
    const auto mv = hn::MulAdd(hn::Set(d, mu), hn::LoadU(d, m + i), hn::LoadU(d, g + i));
    hn::StoreU(mv, d, m + i);
    hn::StoreU(hn::NegMulAdd(hn::Set(d, lr), mv, hn::LoadU(d, w + i)), d, w + i);
  });
}

void AdamUpdate(float lr, float b1, float b2, float c1, float c2, float eps, const float* g,
                float* m, float* v, float* w, int64_t n) {
  Elementwise(n, [&](auto d, int64_t i) {
    const auto gv = hn::LoadU(d, g + i);
    const auto mv =
        hn::MulAdd(hn::Set(d, b1), hn::LoadU(d, m + i), hn::Mul(hn::Set(d, 1.0f - b1), gv));
    const auto vv = hn::MulAdd(hn::Set(d, b2), hn::LoadU(d, v + i),
                               hn::Mul(hn::Mul(hn::Set(d, 1.0f - b2), gv), gv));
    hn::StoreU(mv, d, m + i);
    hn::StoreU(vv, d, v + i);
    const auto den = hn::Add(hn::Sqrt(hn::Mul(vv, hn::Set(d, c2))), hn::Set(d, eps));
    const auto step = hn::Div(hn::Mul(hn::Set(d, lr), hn::Mul(mv, hn::Set(d, c1))), den);
    hn::StoreU(hn::Sub(hn::LoadU(d, w + i), step), d, w + i);
  });
}

void Mul(const float* a, const float* b, float* out, int64_t n) {
  Elementwise(n, [&](auto d, int64_t i) {
    hn::StoreU(hn::Mul(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, out + i);
  });
}

const char* VecTargetName() {
  return hwy::TargetName(HWY_TARGET);
}

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace fff::cpu {

HWY_EXPORT(Dot);
HWY_EXPORT(Axpy);
HWY_EXPORT(SgdUpdate);
HWY_EXPORT(SgdMomentumUpdate);
HWY_EXPORT(AdamUpdate);
HWY_EXPORT(Mul);
HWY_EXPORT(VecTargetName);

float dot(const float* a, const float* b, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(Dot)(a, b, n);
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Axpy)(alpha, x, y, n);
}

void sgd_update(float lr, const float* g, float* w, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SgdUpdate)(lr, g, w, n);
}

void sgd_momentum_update(float lr, float mu, const float* g, float* m, float* w, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SgdMomentumUpdate)(lr, mu, g, m, w, n);
}

void adam_update(float lr, float b1, float b2, float c1, float c2, float eps, const float* g,
                 float* m, float* v, float* w, int64_t n) {
  HWY_DYNAMIC_DISPATCH(AdamUpdate)(lr, b1, b2, c1, c2, eps, g, m, v, w, n);
}

void mul(const float* a, const float* b, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Mul)(a, b, out, n);
}

const char* vec_simd_target() {
  return HWY_DYNAMIC_DISPATCH(VecTargetName)();
}

}  // namespace fff::cpu
#endif  // HWY_ONCE
