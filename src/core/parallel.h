// How fff runs a call on a Context (internal header): the call scope that every entry point
// opens, the floating-point mode guard of each thread that computes, and the parallel loops and
// regions, which run on the Context's own threads (core/thread_pool.h).
#pragma once

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "core/thread_pool.h"
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

using detail::Team;

namespace detail {
// The context's pool, with ctx.threads threads: made on first use, made again when ctx.threads
// has changed since.
struct PoolAccess {
  static ThreadPool& pool(Context& ctx);
};
}  // namespace detail

// fn(team) on `team` threads at once (at most ctx.threads), the calling thread being team.id()
// 0, each in the calling thread's floating-point mode; team.barrier() and team.single() within
// synchronise them. Inside another region (a nested call), or with one thread, fn runs once
// inline with a team of one: fn must take its share from team.id() and team.size(), never from
// the number it asked for. If fn throws on any thread, the others stop at their next barrier
// (or finish) and the first exception is rethrown on the calling thread.
template <class F>
void parallel_region(Context& ctx, int team, F&& fn) {
  team = std::min(team, ctx.threads);
  if (team <= 1 || detail::in_region()) {
    Team t = detail::inline_team();
    fn(t);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  auto call = [](void* arg, Team& t) { (*static_cast<Fn*>(arg))(t); };
  detail::PoolAccess::pool(ctx).run(
      team, call, const_cast<void*>(static_cast<const void*>(std::addressof(fn))), fp_mode());
}

// Thread `id`'s part [begin, end) of n iterations split statically over `team` threads:
// contiguous slices whose sizes differ by one at most.
struct Range {
  int64_t begin, end;
};
inline Range static_range(int64_t n, int id, int team) {
  const int64_t q = n / team, r = n % team;
  const int64_t begin = id * q + std::min<int64_t>(id, r);
  return {begin, begin + q + (id < r ? 1 : 0)};
}

// Thread `id`'s part of n items split over `team` threads in contiguous slices whose lengths are
// multiples of `align` (but the last's): as equal as whole groups of `align` allow.
inline Range aligned_range(int64_t n, int64_t align, int id, int team) {
  const int64_t per = (n + team - 1) / team;
  const int64_t step = (per + align - 1) / align * align;
  const int64_t begin = std::min(n, id * step);
  return {begin, std::min(n, begin + step)};
}

// fn(i) for i in [0, n), in a static schedule (contiguous slices) over min(ctx.threads, n)
// threads, each in the calling thread's floating-point mode. Runs inline with one thread, or
// inside another parallel region.
template <class F>
void parallel_for(Context& ctx, int64_t n, F&& fn) {
  if (n <= 0) return;
  const int team = static_cast<int>(std::min<int64_t>(ctx.threads, n));
  if (team <= 1 || detail::in_region()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  parallel_region(ctx, team, [&](Team& t) {
    const Range r = static_range(n, t.id(), t.size());
    for (int64_t i = r.begin; i < r.end; ++i) fn(i);
  });
}

// fn(i) for i in [0, n) over min(ctx.threads, n) threads that take `chunk` iterations at a time
// as they become free (for iterations of very uneven cost). fn must not depend on which thread
// runs an iteration.
template <class F>
void parallel_for_dynamic(Context& ctx, int64_t n, int64_t chunk, F&& fn) {
  if (n <= 0) return;
  const int team = static_cast<int>(std::min<int64_t>(ctx.threads, n));
  if (team <= 1 || detail::in_region()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  parallel_region(ctx, team, [&](Team&) {
    for (int64_t lo; (lo = next.fetch_add(chunk, std::memory_order_relaxed)) < n;)
      for (int64_t i = lo, hi = std::min(n, lo + chunk); i < hi; ++i) fn(i);
  });
}

}  // namespace fff
