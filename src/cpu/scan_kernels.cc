// SIMD kernels of the scans, written once with Highway and dispatched at run time.
#include "cpu/scan_kernels.h"

#include <cmath>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/scan_kernels.cc"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace fff::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ScanSteps(const float* a, const float* b, int64_t stride, int64_t steps, float* state,
               float* out, int64_t n, bool stream) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t s = 0; s < steps; ++s, a += stride, b += stride, out += stride) {
    int64_t i = 0;
    if (stream)  // scalar steps up to the first vector-aligned output
      for (; i < n && reinterpret_cast<uintptr_t>(out + i) % (N * sizeof(float)) != 0; ++i)
        out[i] = state[i] = a[i] * state[i] + b[i];
    for (; i + N <= n; i += N) {
      const auto v = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, state + i), hn::LoadU(d, b + i));
      hn::StoreU(v, d, state + i);
      if (stream)
        hn::Stream(v, d, out + i);
      else
        hn::StoreU(v, d, out + i);
    }
    for (; i < n; ++i) out[i] = state[i] = a[i] * state[i] + b[i];
  }
  if (stream) hwy::FlushStream();
}

int64_t ScanFixupSteps(const float* a, int64_t stride, int64_t steps, const float* carry,
                       float* prod, float* out, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto zero = hn::Zero(d);
  const auto tiny = hn::Set(d, std::numeric_limits<float>::min());
  // A carry that is NaN or infinite makes every later step NaN, even where the product is zero.
  bool can_stop = true;
  for (int64_t i = 0; i < n; ++i) can_stop = can_stop && std::isfinite(carry[i]);
  for (int64_t s = 0; s < steps; ++s, a += stride, out += stride) {
    auto live = zero;  // all-ones lanes where some product is normal (or NaN)
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      const auto p = hn::Mul(hn::LoadU(d, prod + i), hn::LoadU(d, a + i));
      hn::StoreU(p, d, prod + i);
      hn::StoreU(hn::MulAdd(p, hn::LoadU(d, carry + i), hn::LoadU(d, out + i)), d, out + i);
      live = hn::Or(live, hn::VecFromMask(d, hn::Not(hn::Lt(hn::Abs(p), tiny))));
    }
    bool any = !hn::AllFalse(d, hn::MaskFromVec(live));
    for (; i < n; ++i) {
      prod[i] *= a[i];
      out[i] += prod[i] * carry[i];
      any = any || !(std::fabs(prod[i]) < std::numeric_limits<float>::min());
    }
    if (!any && can_stop) return s + 1;
  }
  return steps;
}

void ScanCompose(const float* a, const float* b, const float* a_prev, const float* b_prev,
                 float* a_out, float* b_out, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto av = hn::LoadU(d, a + i);
    hn::StoreU(hn::MulAdd(av, hn::LoadU(d, b_prev + i), hn::LoadU(d, b + i)), d, b_out + i);
    hn::StoreU(hn::Mul(av, hn::LoadU(d, a_prev + i)), d, a_out + i);
  }
  for (; i < n; ++i) {
    const float ai = a[i];
    b_out[i] = ai * b_prev[i] + b[i];
    a_out[i] = ai * a_prev[i];
  }
}

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace fff::cpu {

HWY_EXPORT(ScanSteps);
HWY_EXPORT(ScanFixupSteps);
HWY_EXPORT(ScanCompose);

void scan_steps(const float* a, const float* b, int64_t stride, int64_t steps, float* state,
                float* out, int64_t n, bool stream) {
  HWY_DYNAMIC_DISPATCH(ScanSteps)(a, b, stride, steps, state, out, n, stream);
}

int64_t scan_fixup_steps(const float* a, int64_t stride, int64_t steps, const float* carry,
                         float* prod, float* out, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(ScanFixupSteps)(a, stride, steps, carry, prod, out, n);
}

void scan_compose(const float* a, const float* b, const float* a_prev, const float* b_prev,
                  float* a_out, float* b_out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ScanCompose)(a, b, a_prev, b_prev, a_out, b_out, n);
}

}  // namespace fff::cpu
#endif
