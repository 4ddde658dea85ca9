// How fff runs a call on a Context (internal header): the call scope that every entry point
// opens, the floating-point mode guard of each thread that computes, and parallel_for.
#pragma once

#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdint>

#include "fff/core/context.h"

namespace fff {

#if defined(__SSE__)
inline constexpr unsigned kFlushBits = 0x8040;  // MXCSR: FTZ (bit 15) and DAZ (bit 6)
inline unsigned fp_mode() {
  return _mm_getcsr() & kFlushBits;
}
#else
inline unsigned fp_mode() {
  return 0;
}
#endif

// Sets the calling thread's FTZ/DAZ bits to `mode` (as fp_mode() returns them) and restores the
// thread's previous MXCSR at exit. Worker threads open one at the start of every parallel region
// with the calling thread's mode, so that every thread of a call computes alike (results are
// bitwise identical across thread counts) and a worker leaves as it came. Nothing on non-x86.
class FpModeGuard {
 public:
#if defined(__SSE__)
  explicit FpModeGuard(unsigned mode) : saved_(_mm_getcsr()) {
    changed_ = (saved_ & kFlushBits) != mode;
    if (changed_) _mm_setcsr((saved_ & ~kFlushBits) | mode);
  }
  ~FpModeGuard() {
    if (changed_) _mm_setcsr(saved_);
  }

 private:
  unsigned saved_;
  bool changed_;
#else
  explicit FpModeGuard(unsigned) {}
#endif
 public:
  FpModeGuard(const FpModeGuard&) = delete;
  FpModeGuard& operator=(const FpModeGuard&) = delete;
};

// Opened by every public function that takes a Context, for its duration. The outermost scope
// on a context checks it, sets OpenBLAS to one thread (if it is not) and the calling thread's
// FTZ/DAZ per ctx.flush_subnormals, and restores both at exit, also when the call throws. Nested
// scopes (a layer calling gemm, a model calling its layers) only count, so the entry cost is paid
// once per call, which matters at batch 1. A nested call made inside one of the call's parallel
// regions (gemm per attention head, an activation per row) touches nothing: its thread already
// runs in the call's mode, and the count is the outer thread's.
class CallScope {
 public:
  explicit CallScope(Context& ctx);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  Context& ctx_;
  enum { kOuter, kNested, kInRegion } role_;
  int saved_blas_threads_ = 1;
  unsigned saved_csr_ = 0;
};

// fn(i) for i in [0, n), in a static schedule over at most `threads` threads, each in the calling
// thread's floating-point mode. Runs inline with one thread, or inside another parallel region
// (where OpenMP would give a nested region one thread anyway).
template <class F>
void parallel_for(int threads, int64_t n, F&& fn) {
  if (n <= 0) return;
  const int team = static_cast<int>(std::min<int64_t>(threads, n));
  if (team <= 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  const unsigned mode = fp_mode();
#pragma omp parallel num_threads(team)
  {
    FpModeGuard guard(mode);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) fn(i);
  }
}

template <class F>
void parallel_for(const Context& ctx, int64_t n, F&& fn) {
  parallel_for(ctx.threads, n, static_cast<F&&>(fn));
}

}  // namespace fff
