// Linear recurrences along time (the QRNN's f-pooling) and four ways to compute them:
// sequential, Hillis-Steele (log depth), Blelloch / Brent-Kung (work-efficient, log depth) and
// chunked (chunks scanned at once, then each fixed up with the state entering it). Forward and
// backward.
//   f, x, h: (T, C) time-major, channels contiguous; h0: (C) or null (zeros)
//   h[t] = f[t] * h[t-1] + x[t],  h[-1] = h0
// Each step is the affine map h -> a h + b; composing (a_i, b_i) then (a_j, b_j) gives
// (a_j a_i, a_j b_i + b_j), associative, which is what the parallel scans use.
// naive reference: fff/testing/cpu.h
#pragma once

#include <cstdint>
#include <string>

#include "fff/core/context.h"

namespace fff {

enum class ScanAlgo { sequential, hillis_steele, blelloch, chunked };

ScanAlgo parse_scan_algo(const std::string& name);  // throws fff::Error naming the choices
const char* scan_algo_name(ScanAlgo a);
inline constexpr ScanAlgo kScanAlgos[] = {ScanAlgo::sequential, ScanAlgo::hillis_steele,
                                          ScanAlgo::blelloch, ScanAlgo::chunked};

// h = scan(f, x). h must not alias f or x. The context's threads split the channels, or the
// time axis when there are few channels (Hillis-Steele, Blelloch and chunked).
void scan_forward(Context& ctx, ScanAlgo algo, const float* f, const float* x, int64_t T, int64_t C,
                  const float* h0, float* h);

// Backward of h = scan(f, x) given dh = dL/dh (T, C) and the forward's h:
//   g[T-1] = dh[T-1],  g[t] = dh[t] + f[t+1] g[t+1]      (the same scan, reversed, gates shifted)
//   dx[t] = g[t],  df[t] = g[t] h[t-1] (h[-1] = h0 or 0),  dh0 = f[0] g[0]
// Overwrites dx and df (T, C) and dh0 (C) if non-null. Memory stays linear in T.
void scan_backward(Context& ctx, ScanAlgo algo, const float* f, const float* h, const float* dh,
                   int64_t T, int64_t C, const float* h0, float* dx, float* df, float* dh0);

}  // namespace fff
