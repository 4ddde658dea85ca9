// SIMD kernels of the scans, written once with Highway and dispatched at run time.
#include "cpu/scan_kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/cpu/scan_kernels.cc"
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

// Rows are taken in blocks; within a block, each group of 4 vectors of channels keeps its end
// and product in registers over the block's rows (which stay in L1), so the loop-carried values
// never go through memory.
void ScanSummarySteps(const float* a, const float* b, int64_t stride, int64_t steps, float* end,
                      float* prod, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kBlock = 16;
  for (int64_t s0 = 0; s0 < steps; s0 += kBlock) {
    const int64_t rows = steps - s0 < kBlock ? steps - s0 : kBlock;
    const float* ab = a + s0 * stride;
    const float* bb = b + s0 * stride;
    int64_t i = 0;
    for (; i + 4 * N <= n; i += 4 * N) {
      auto e0 = hn::LoadU(d, end + i), e1 = hn::LoadU(d, end + i + N),
           e2 = hn::LoadU(d, end + i + 2 * N), e3 = hn::LoadU(d, end + i + 3 * N);
      auto p0 = hn::LoadU(d, prod + i), p1 = hn::LoadU(d, prod + i + N),
           p2 = hn::LoadU(d, prod + i + 2 * N), p3 = hn::LoadU(d, prod + i + 3 * N);
      for (int64_t r = 0; r < rows; ++r) {
        const float* ar = ab + r * stride + i;
        const float* br = bb + r * stride + i;
        const auto a0 = hn::LoadU(d, ar), a1 = hn::LoadU(d, ar + N), a2 = hn::LoadU(d, ar + 2 * N),
                   a3 = hn::LoadU(d, ar + 3 * N);
        e0 = hn::MulAdd(a0, e0, hn::LoadU(d, br));
        e1 = hn::MulAdd(a1, e1, hn::LoadU(d, br + N));
        e2 = hn::MulAdd(a2, e2, hn::LoadU(d, br + 2 * N));
        e3 = hn::MulAdd(a3, e3, hn::LoadU(d, br + 3 * N));
        p0 = hn::Mul(p0, a0);
        p1 = hn::Mul(p1, a1);
        p2 = hn::Mul(p2, a2);
        p3 = hn::Mul(p3, a3);
      }
      hn::StoreU(e0, d, end + i);
      hn::StoreU(e1, d, end + i + N);
      hn::StoreU(e2, d, end + i + 2 * N);
      hn::StoreU(e3, d, end + i + 3 * N);
      hn::StoreU(p0, d, prod + i);
      hn::StoreU(p1, d, prod + i + N);
      hn::StoreU(p2, d, prod + i + 2 * N);
      hn::StoreU(p3, d, prod + i + 3 * N);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float* ar = ab + r * stride;
      const float* br = bb + r * stride;
      for (int64_t c = i; c < n; ++c) {
        end[c] = ar[c] * end[c] + br[c];
        prod[c] *= ar[c];
      }
    }
  }
}

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace fff::cpu {

HWY_EXPORT(ScanSteps);
HWY_EXPORT(ScanSummarySteps);

void scan_steps(const float* a, const float* b, int64_t stride, int64_t steps, float* state,
                float* out, int64_t n, bool stream) {
  HWY_DYNAMIC_DISPATCH(ScanSteps)(a, b, stride, steps, state, out, n, stream);
}

void scan_summary_steps(const float* a, const float* b, int64_t stride, int64_t steps, float* end,
                        float* prod, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ScanSummarySteps)(a, b, stride, steps, end, prod, n);
}

}  // namespace fff::cpu
#endif
