// Linear-recurrence scans: sequential, Hillis-Steele, Blelloch (Brent-Kung) and chunked, on
// sequences of rows of C channels; the backward runs the same scan on the reversed sequence.
#include "fff/cpu/scan.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/parallel.h"
#include "cpu/scan_kernels.h"
#include "cpu/streaming.h"
#include "cpu/vec_kernels.h"
#include "fff/core/common.h"

namespace fff {

namespace {

// T rows of C floats: row t starts at p + t * stride (stride is negative for a reversed view).
template <class F>
struct Rows {
  F* p;
  int64_t stride;
  F* operator[](int64_t t) const { return p + t * stride; }
};
using In = Rows<const float>;
using Out = Rows<float>;

// Channels a thread needs before threads split channels rather than time.
constexpr int64_t kChannelsPerThread = 64;
// Below this many channels per thread, loops run per channel rather than per row.
constexpr int64_t kNarrow = 16;

int64_t part(int64_t n, int64_t parts, int64_t k) {
  return n * k / parts;
}

std::unique_ptr<float[]> uninitialized(int64_t n) {
  return std::unique_ptr<float[]>(new float[static_cast<size_t>(n)]);
}

// Start of part k of nt of the channels [0, C) of rows like `row`, moved to a cache-line
// boundary so that threads writing neighbouring parts of a row do not share its lines.
int64_t line_split(const float* row, int64_t C, int64_t nt, int64_t k) {
  if (k == 0) return 0;
  if (k == nt) return C;
  const int64_t lead = static_cast<int64_t>((64 - reinterpret_cast<uintptr_t>(row) % 64) % 64) / 4;
  return std::min(C, lead + part(std::max<int64_t>(C - lead, 0) / 16, nt, k) * 16);
}

// The state of channels [c0, c0 + n) before the scan's first step to run, which it returns: h0,
// or without h0 the first step's b alone (written to out[0]; a[0] is never read), then step 1.
int64_t start_state(In b, const float* h0, int64_t c0, int64_t n, float* state, Out out) {
  if (h0) {
    std::copy_n(h0 + c0, n, state);
    return 0;
  }
  std::copy_n(b[0] + c0, n, state);
  std::copy_n(state, n, out[0] + c0);
  return 1;
}

// out[t] = a[t] out[t-1] + b[t], out[-1] = h0 (or 0, and then a[0] is never read). Threads
// split the channels; each keeps its channels' state in a small buffer, so large outputs can be
// streamed to memory without being read back.
void scan_sequential(Context& ctx, In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t nt = std::clamp<int64_t>(C / kChannelsPerThread, 1, ctx.threads);
  const bool stream = T * C * int64_t{sizeof(float)} >= cpu::kStreamingStoreBytes;
  parallel_for(ctx, nt, [&](int64_t k) {
    const int64_t c0 = line_split(out[0], C, nt, k), c1 = line_split(out[0], C, nt, k + 1);
    const int64_t n = c1 - c0;
    std::vector<float> state(static_cast<size_t>(n));
    const int64_t t = start_state(b, h0, c0, n, state.data(), out);
    if (n < kNarrow) {  // a few channels: a plain loop, the state in registers
      for (int64_t c = 0; c < n; ++c) {
        float st = state[c];
        for (int64_t u = t; u < T; ++u) out[u][c0 + c] = st = a[u][c0 + c] * st + b[u][c0 + c];
      }
    } else {
      cpu::scan_steps(a[t] + c0, b[t] + c0, a.stride, T - t, state.data(), out[t] + c0, n, stream);
    }
  });
}

// Contiguous working copies (A, B) of the pairs, with h0 folded into step 0: (0, a0 h0 + b0).
void load_pairs(Context& ctx, In a, In b, int64_t T, int64_t C, const float* h0, float* A,
                float* B) {
  parallel_for(ctx, T, [&](int64_t t) {
    const float *at = a[t], *bt = b[t];
    float *At = A + t * C, *Bt = B + t * C;
    if (t == 0) {
      for (int64_t c = 0; c < C; ++c) {
        At[c] = 0.0f;
        Bt[c] = h0 ? at[c] * h0[c] + bt[c] : bt[c];
      }
    } else {
      std::copy_n(at, C, At);
      std::copy_n(bt, C, Bt);
    }
  });
}

void store_rows(Context& ctx, const float* B, int64_t T, int64_t C, Out out) {
  parallel_for(ctx, T, [&](int64_t t) { std::copy_n(B + t * C, C, out[t]); });
}

// Pair i absorbs pair j (an earlier step): (A_i, B_i) <- (A_i A_j, A_i B_j + B_i), C channels.
// Narrow rows stay inline: a dispatched call per step would cost more than its few channels.
inline void absorb(float* Ai, float* Bi, const float* Aj, const float* Bj, int64_t C) {
  if (C >= kNarrow) {
    cpu::scan_compose(Ai, Bi, Aj, Bj, Ai, Bi, C);
    return;
  }
  for (int64_t c = 0; c < C; ++c) {
    Bi[c] = Ai[c] * Bj[c] + Bi[c];
    Ai[c] = Ai[c] * Aj[c];
  }
}

// Values per block of a flat elementwise loop over a whole sequence (a thread's unit of work).
constexpr int64_t kComposeBlock = 4096;

// Hillis-Steele: in round d every step absorbs the step d before it, from the previous round's
// values (double buffered), so after log2 T rounds each holds the composition of all steps up
// to it. n log n work, log n depth; each round is one flat loop over all T * C values.
void scan_hillis_steele(Context& ctx, In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t n = T * C;
  auto A0 = uninitialized(n), B0 = uninitialized(n), A1 = uninitialized(n), B1 = uninitialized(n);
  float *As = A0.get(), *Bs = B0.get(), *Ad = A1.get(), *Bd = B1.get();
  load_pairs(ctx, a, b, T, C, h0, As, Bs);
  for (int64_t d = 1; d < T; d *= 2) {
    const int64_t off = d * C;
    // Blocks of the flat loop per thread: below `off` a copy, above it one SIMD composition.
    const int64_t blocks = (n + kComposeBlock - 1) / kComposeBlock;
    parallel_for(ctx, blocks, [&](int64_t k) {
      const int64_t lo = k * kComposeBlock, hi = std::min(n, lo + kComposeBlock);
      const int64_t mid = std::clamp(off, lo, hi);
      std::copy(Bs + lo, Bs + mid, Bd + lo);
      std::copy(As + lo, As + mid, Ad + lo);
      cpu::scan_compose(As + mid, Bs + mid, As + mid - off, Bs + mid - off, Ad + mid, Bd + mid,
                        hi - mid);
    });
    std::swap(As, Ad);
    std::swap(Bs, Bd);
  }
  store_rows(ctx, Bs, T, C, out);
}

// Blelloch's work-efficient scan in its inclusive (Brent-Kung) form, in place: an up-sweep
// builds the compositions of aligned blocks of 2, 4, 8... steps, a down-sweep hands each block's
// prefix to the block after it. About 2n compositions, 2 log n rounds; the updates of a round
// touch distinct steps, so threads split them.
void scan_blelloch(Context& ctx, In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t n = T * C;
  auto A = uninitialized(n), B = uninitialized(n);
  load_pairs(ctx, a, b, T, C, h0, A.get(), B.get());
  float *Ap = A.get(), *Bp = B.get();
  int64_t top = 1;
  for (int64_t d = 1; d < T; d *= 2) {
    top = d;
    const int64_t updates = (T - (2 * d - 1) + 2 * d - 1) / (2 * d);  // i = 2d-1, 4d-1, ... < T
    parallel_for(ctx, updates, [&](int64_t j) {
      const int64_t i = (j + 1) * 2 * d - 1;
      absorb(Ap + i * C, Bp + i * C, Ap + (i - d) * C, Bp + (i - d) * C, C);
    });
  }
  for (int64_t d = top / 2; d >= 1; d /= 2) {
    if (3 * d - 1 >= T) continue;
    const int64_t updates = (T - (3 * d - 1) + 2 * d - 1) / (2 * d);  // i = 3d-1, 5d-1, ... < T
    parallel_for(ctx, updates, [&](int64_t j) {
      const int64_t i = 3 * d - 1 + j * 2 * d;
      absorb(Ap + i * C, Bp + i * C, Ap + (i - d) * C, Bp + (i - d) * C, C);
    });
  }
  store_rows(ctx, Bp, T, C, out);
}

// Chunks each thread runs in lockstep when there is a single channel.
constexpr int kLanes = 4;

// One channel: scans the chunks [first[j], first[j] + len[j]) of one thread in lockstep from the
// states e[j], their states in registers so that their dependency chains overlap.
void single_channel_lanes(In a, In b, Out out, const int64_t* first, const int64_t* len, int lanes,
                          const float* e) {
  const float* pa[kLanes] = {};
  const float* pb[kLanes] = {};
  float* po[kLanes] = {};
  float es[kLanes] = {};
  for (int j = 0; j < lanes; ++j) {
    pa[j] = a[first[j]];
    pb[j] = b[first[j]];
    po[j] = out[first[j]];
    es[j] = e[j];
  }
  const int64_t stride = a.stride;  // a, b and out share it (C = 1)
  auto advance = [&](int j, int64_t s) {
    es[j] = pa[j][s * stride] * es[j] + pb[j][s * stride];
    po[j][s * stride] = es[j];
  };
  int64_t common = 0;  // steps all kLanes lanes have, run in lockstep
  if (lanes == kLanes) {
    common = *std::min_element(len, len + kLanes);
    for (int64_t s = 0; s < common; ++s)
#pragma GCC unroll 8
      for (int j = 0; j < kLanes; ++j) advance(j, s);
  }
  for (int j = 0; j < lanes; ++j)
    for (int64_t s = common; s < len[j]; ++s) advance(j, s);
}

// The chunked scan: (1) threads scan contiguous chunks of time at once, chunk 0 from the real
// initial state and the others from zero; (2) in order, each later chunk is fixed up with the
// state that really enters it (the last row of the chunk before): step s gains
// (a[0] ... a[s]) * carry. Gates below one make that product fall below the smallest normal
// float within a few hundred steps, and the fix-up stops there (see scan_fixup_steps), so the
// scan moves about the 12 bytes per step and channel of the sequential scan while each thread
// streams its own part of memory. Gates that stay at one make the fix-up run through every chunk
// after the first (24 bytes per step and channel there). With one channel each thread runs
// kLanes chunks in lockstep.
void scan_chunked(Context& ctx, In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t nt = ctx.threads;
  if (C > 1 && (nt == 1 || T < 8 * nt)) return scan_sequential(ctx, a, b, T, C, h0, out);
  const int64_t chunks = std::min<int64_t>(C == 1 ? nt * kLanes : nt, T);
  const int64_t threads = std::min<int64_t>(nt, chunks);
  std::vector<int64_t> start(static_cast<size_t>(chunks + 1));
  for (int64_t q = 0; q <= chunks; ++q) start[q] = part(T, chunks, q);
  const bool stream = T * C * int64_t{sizeof(float)} >= cpu::kStreamingStoreBytes;
  parallel_region(ctx, static_cast<int>(threads), [&](Team& team) {
    const int64_t k = team.id(), kt = team.size();
    const int64_t q0 = part(chunks, kt, k), q1 = part(chunks, kt, k + 1);
    if (C == 1) {
      int64_t first[kLanes] = {}, len[kLanes] = {};
      float e[kLanes] = {};
      const int lanes = static_cast<int>(q1 - q0);
      for (int j = 0; j < lanes; ++j) {
        first[j] = start[q0 + j];
        len[j] = start[q0 + j + 1] - first[j];
      }
      if (q0 == 0) {  // chunk 0 starts from the real initial state
        const int64_t t = start_state(b, h0, 0, 1, e, out);
        first[0] += t, len[0] -= t;
      }
      single_channel_lanes(a, b, out, first, len, lanes, e);
    } else {
      std::vector<float> state(static_cast<size_t>(C), 0.0f);  // later chunks start from zero
      const int64_t t = start[q0] == 0 ? start_state(b, h0, 0, C, state.data(), out) : start[q0];
      if (t < start[q1])
        cpu::scan_steps(a[t], b[t], a.stride, start[q1] - t, state.data(), out[t], C, stream);
    }
  });
  // Fix-ups, chunk after chunk; threads split the channels (each fixes its own channels of every
  // chunk, so they never wait for each other) and stop as soon as their products vanish.
  const int64_t fix_threads = std::clamp<int64_t>(C / kChannelsPerThread, 1, threads);
  parallel_region(ctx, static_cast<int>(fix_threads), [&](Team& team) {
    const int64_t k = team.id(), kt = team.size();
    const int64_t c0 = line_split(out[0], C, kt, k), c1 = line_split(out[0], C, kt, k + 1);
    std::vector<float> prod(static_cast<size_t>(c1 - c0));
    for (int64_t q = 1; q < chunks && c0 < c1; ++q) {
      std::fill(prod.begin(), prod.end(), 1.0f);
      cpu::scan_fixup_steps(a[start[q]] + c0, a.stride, start[q + 1] - start[q],
                            out[start[q] - 1] + c0, prod.data(), out[start[q]] + c0, c1 - c0);
    }
  });
}

void scan_rows(Context& ctx, ScanAlgo algo, In a, In b, int64_t T, int64_t C, const float* h0,
               Out out) {
  if (T <= 0 || C <= 0) return;
  switch (algo) {
    case ScanAlgo::sequential:
      return scan_sequential(ctx, a, b, T, C, h0, out);
    case ScanAlgo::hillis_steele:
      return scan_hillis_steele(ctx, a, b, T, C, h0, out);
    case ScanAlgo::blelloch:
      return scan_blelloch(ctx, a, b, T, C, h0, out);
    case ScanAlgo::chunked:
      return scan_chunked(ctx, a, b, T, C, h0, out);
  }
}

}  // namespace

ScanAlgo parse_scan_algo(const std::string& name) {
  for (ScanAlgo a : kScanAlgos)
    if (name == scan_algo_name(a)) return a;
  throw Error("unknown scan '" + name +
              "' (expected sequential, hillis-steele, blelloch or chunked)");
}

const char* scan_algo_name(ScanAlgo a) {
  switch (a) {
    case ScanAlgo::sequential:
      return "sequential";
    case ScanAlgo::hillis_steele:
      return "hillis-steele";
    case ScanAlgo::blelloch:
      return "blelloch";
    case ScanAlgo::chunked:
      return "chunked";
  }
  return "?";
}

void scan_forward(Context& ctx, ScanAlgo algo, const float* f, const float* x, int64_t T, int64_t C,
                  const float* h0, float* h) {
  CallScope scope(ctx);
  scan_rows(ctx, algo, {f, C}, {x, C}, T, C, h0, {h, C});
}

void scan_backward(Context& ctx, ScanAlgo algo, const float* f, const float* h, const float* dh,
                   int64_t T, int64_t C, const float* h0, float* dx, float* df, float* dh0) {
  if (T <= 0 || C <= 0) return;
  CallScope scope(ctx);
  // Reversed step s is forward step T-1-s; its gate is f[T-s]. Step 0 has no predecessor, so
  // its gate (f[T], past the end) is never read.
  scan_rows(ctx, algo, {f + T * C, -C}, {dh + (T - 1) * C, -C}, T, C, nullptr,
            {dx + (T - 1) * C, -C});
  // df[t] = dx[t] h[t-1]: for t >= 1 one flat product of contiguous rows, in blocks per thread.
  if (h0)
    cpu::mul(dx, h0, df, C);
  else
    std::fill_n(df, C, 0.0f);
  const int64_t n = (T - 1) * C, blocks = (n + kComposeBlock - 1) / kComposeBlock;
  parallel_for(ctx, blocks, [&](int64_t k) {
    const int64_t lo = k * kComposeBlock;
    cpu::mul(dx + C + lo, h + lo, df + C + lo, std::min(kComposeBlock, n - lo));
  });
  if (dh0)
    for (int64_t c = 0; c < C; ++c) dh0[c] = f[c] * dx[c];
}

}  // namespace fff
