// The call scope: OpenBLAS's thread count and the calling thread's FP mode for one call.
#include <cblas.h>

#include "core/parallel.h"

namespace fff {

CallScope::CallScope(Context& ctx) : ctx_(ctx) {
  if (ctx_.depth_ > 0) {
    // Within a parallel region of the call every thread only reads the count.
    role_ = detail::in_region() ? kInRegion : kNested;
    if (role_ == kNested) ++ctx_.depth_;
    return;
  }
  role_ = kOuter;
  ctx_.validate();  // before anything changes: a throw here leaves nothing to restore
  saved_blas_threads_ = openblas_get_num_threads();
  if (saved_blas_threads_ != 1) openblas_set_num_threads(1);
#if defined(__SSE__)
  saved_csr_ = _mm_getcsr();
  if (ctx_.flush_subnormals && (saved_csr_ & kFlushBits) != kFlushBits)
    _mm_setcsr(saved_csr_ | kFlushBits);
#endif
  ctx_.depth_ = 1;
}

CallScope::~CallScope() {
  if (role_ == kInRegion) return;
  if (--ctx_.depth_ > 0) return;
#if defined(__SSE__)
  if (_mm_getcsr() != saved_csr_) _mm_setcsr(saved_csr_);
#endif
  if (saved_blas_threads_ != 1) openblas_set_num_threads(saved_blas_threads_);
}

}  // namespace fff
