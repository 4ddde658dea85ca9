// Linear-recurrence scans: sequential, Hillis-Steele, Blelloch (Brent-Kung) and chunked, on
// sequences of rows of C channels; the backward runs the same scan on the reversed sequence.
#include "fff/scan.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/scan_kernels.h"
#include "fff/common.h"
#include "fff/gemm.h"

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

// Sequences at least this large (bytes of output) are written with non-temporal stores.
constexpr int64_t kStreamBytes = 8 << 20;

// out[t] = a[t] out[t-1] + b[t], out[-1] = h0 (or 0, and then a[0] is never read). Threads
// split the channels; each keeps its channels' state in a small buffer, so large outputs can be
// streamed to memory without being read back.
void scan_sequential(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t nt = std::clamp<int64_t>(C / kChannelsPerThread, 1, num_threads());
  const bool stream = T * C * int64_t{sizeof(float)} >= kStreamBytes;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t k = 0; k < nt; ++k) {
    const int64_t c0 = line_split(out[0], C, nt, k), c1 = line_split(out[0], C, nt, k + 1);
    const int64_t n = c1 - c0;
    std::vector<float> state(static_cast<size_t>(n), 0.0f);
    int64_t t = 0;
    if (!h0) {  // the first step is b alone: a[0] is not read
      std::copy_n(b[0] + c0, n, state.data());
      std::copy_n(state.data(), n, out[0] + c0);
      t = 1;
    } else {
      std::copy_n(h0 + c0, n, state.data());
    }
    if (n < kNarrow) {  // a few channels: a plain loop, the state in registers
      for (int64_t c = 0; c < n; ++c) {
        float st = state[c];
        for (int64_t u = t; u < T; ++u) out[u][c0 + c] = st = a[u][c0 + c] * st + b[u][c0 + c];
      }
    } else {
      cpu::scan_steps(a[t] + c0, b[t] + c0, a.stride, T - t, state.data(), out[t] + c0, n, stream);
    }
  }
}

// Contiguous working copies (A, B) of the pairs, with h0 folded into step 0: (0, a0 h0 + b0).
void load_pairs(In a, In b, int64_t T, int64_t C, const float* h0, float* A, float* B) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
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
  }
}

void store_rows(const float* B, int64_t T, int64_t C, Out out) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) std::copy_n(B + t * C, C, out[t]);
}

// Pair i absorbs pair j (an earlier step): (A_i, B_i) <- (A_i A_j, A_i B_j + B_i), C channels.
inline void absorb(float* Ai, float* Bi, const float* Aj, const float* Bj, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    Bi[c] = Ai[c] * Bj[c] + Bi[c];
    Ai[c] = Ai[c] * Aj[c];
  }
}

// Hillis-Steele: in round d every step absorbs the step d before it, from the previous round's
// values (double buffered), so after log2 T rounds each holds the composition of all steps up
// to it. n log n work, log n depth; each round is one flat loop over all T * C values.
void scan_hillis_steele(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t n = T * C;
  auto A0 = uninitialized(n), B0 = uninitialized(n), A1 = uninitialized(n), B1 = uninitialized(n);
  float *As = A0.get(), *Bs = B0.get(), *Ad = A1.get(), *Bd = B1.get();
  load_pairs(a, b, T, C, h0, As, Bs);
  for (int64_t d = 1; d < T; d *= 2) {
    const int64_t off = d * C;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      if (i >= off) {
        Bd[i] = As[i] * Bs[i - off] + Bs[i];
        Ad[i] = As[i] * As[i - off];
      } else {
        Bd[i] = Bs[i];
        Ad[i] = As[i];
      }
    }
    std::swap(As, Ad);
    std::swap(Bs, Bd);
  }
  store_rows(Bs, T, C, out);
}

// Blelloch's work-efficient scan in its inclusive (Brent-Kung) form, in place: an up-sweep
// builds the compositions of aligned blocks of 2, 4, 8... steps, a down-sweep hands each block's
// prefix to the block after it. About 2n compositions, 2 log n rounds; the updates of a round
// touch distinct steps, so threads split them.
void scan_blelloch(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t n = T * C;
  auto A = uninitialized(n), B = uninitialized(n);
  load_pairs(a, b, T, C, h0, A.get(), B.get());
  float *Ap = A.get(), *Bp = B.get();
  int64_t top = 1;
  for (int64_t d = 1; d < T; d *= 2) {
    top = d;
    const int64_t updates = (T - (2 * d - 1) + 2 * d - 1) / (2 * d);  // i = 2d-1, 4d-1, ... < T
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < updates; ++j) {
      const int64_t i = (j + 1) * 2 * d - 1;
      absorb(Ap + i * C, Bp + i * C, Ap + (i - d) * C, Bp + (i - d) * C, C);
    }
  }
  for (int64_t d = top / 2; d >= 1; d /= 2) {
    if (3 * d - 1 >= T) continue;
    const int64_t updates = (T - (3 * d - 1) + 2 * d - 1) / (2 * d);  // i = 3d-1, 5d-1, ... < T
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < updates; ++j) {
      const int64_t i = 3 * d - 1 + j * 2 * d;
      absorb(Ap + i * C, Bp + i * C, Ap + (i - d) * C, Bp + (i - d) * C, C);
    }
  }
  store_rows(Bp, T, C, out);
}

// Chunks each thread runs in lockstep when there is a single channel.
constexpr int kLanes = 4;

// One channel: runs the chunks [first[j], first[j] + len[j]) of one thread in lockstep, their
// states in registers. Summary (Write = false): e[j] = the chunk's scan from zero, p[j] = the
// product of its gates. Write: scans from the states e[j] and writes out.
template <bool Write>
void single_channel_lanes(In a, In b, Out out, const int64_t* first, const int64_t* len, int lanes,
                          float* e, float* p) {
  const float* pa[kLanes] = {};
  const float* pb[kLanes] = {};
  float* po[kLanes] = {};
  float es[kLanes] = {}, ps[kLanes] = {};
  for (int j = 0; j < lanes; ++j) {
    pa[j] = a[first[j]];
    pb[j] = b[first[j]];
    po[j] = out[first[j]];
    es[j] = Write ? e[j] : 0.0f;
    ps[j] = 1.0f;
  }
  const int64_t stride = a.stride;  // a, b and out share it (C = 1)
  auto advance = [&](int j, int64_t s) {
    const float at = pa[j][s * stride];
    es[j] = at * es[j] + pb[j][s * stride];
    if (Write)
      po[j][s * stride] = es[j];
    else
      ps[j] *= at;
  };
  int64_t common = 0;  // steps all kLanes lanes have, run in lockstep
  if (lanes == kLanes) {
    common = *std::min_element(len, len + kLanes);
    for (int64_t s = 0; s < common; ++s)
#pragma GCC unroll 8
      for (int j = 0; j < kLanes; ++j) advance(j, s);
  }
  for (int j = 0; j < lanes; ++j) {
    for (int64_t s = common; s < len[j]; ++s) advance(j, s);
    e[j] = es[j];
    p[j] = ps[j];
  }
}

// The chunked scan: (1) each chunk runs through its steps from a zero state, keeping only its
// final state and the product of its gates; (2) the state entering each chunk is carried
// across chunks in order; (3) each chunk scans again from its entering state, writing the
// output. Threads take contiguous chunks, so each streams its own part of memory; with one
// channel each thread runs kLanes chunks in lockstep so that their dependency chains overlap.
// Reads the inputs twice: 20 bytes per step and channel against 12 for sequential.
void scan_chunked_single(In a, In b, int64_t T, const float* h0, Out out) {
  const int64_t C = 1, nt = num_threads();
  const int64_t chunks = std::clamp<int64_t>(nt * kLanes, 1, T);
  const int64_t threads = std::min<int64_t>(nt, chunks);
  std::vector<int64_t> start(static_cast<size_t>(chunks + 1));
  for (int64_t q = 0; q <= chunks; ++q) start[q] = part(T, chunks, q);
  // Per chunk: product of its gates, its final state from zero, the state entering it; each
  // chunk's C floats padded to whole cache lines, so threads never share a line.
  const int64_t ld = (C + 15) / 16 * 16;
  std::vector<float> prod(static_cast<size_t>(chunks * ld), 1.0f),
      end(static_cast<size_t>(chunks * ld), 0.0f), carry(static_cast<size_t>(chunks * ld), 0.0f);
  if (h0) std::copy_n(h0, C, carry.data());
  // Chunk 0 without h0 starts with b alone, and its first gate is never read (in the backward
  // it lies past the end of the gates).
  const bool skip_first = !h0;

#pragma omp parallel num_threads(threads)
  {
    const int64_t k = omp_get_thread_num(), kt = omp_get_num_threads();
    const int64_t q0 = part(chunks, kt, k), q1 = part(chunks, kt, k + 1);
    {
      // (1) summaries of this thread's chunks, in lockstep; (2) carries; (3) rescans.
      int64_t first[kLanes] = {}, len[kLanes] = {};
      const int lanes = static_cast<int>(q1 - q0);
      for (int j = 0; j < lanes; ++j) {
        const int64_t q = q0 + j;
        first[j] = start[q];
        len[j] = start[q + 1] - start[q];
        if (q == 0 && skip_first) ++first[j], --len[j];  // its step 0 is b alone
      }
      float e[kLanes], p[kLanes];
      single_channel_lanes<false>(a, b, out, first, len, lanes, e, p);
      for (int j = 0; j < lanes; ++j) {
        const bool b_alone = q0 + j == 0 && skip_first;
        // A chunk whose step 0 is b alone: its summary starts from that state.
        end[(q0 + j) * ld] = b_alone ? e[j] + p[j] * b[0][0] : e[j];
        prod[(q0 + j) * ld] = p[j];
      }
#pragma omp barrier
#pragma omp single
      for (int64_t q = 1; q < chunks; ++q)
        carry[q * ld] = prod[(q - 1) * ld] * carry[(q - 1) * ld] + end[(q - 1) * ld];
      for (int j = 0; j < lanes; ++j) {
        e[j] = carry[(q0 + j) * ld];
        if (q0 + j == 0 && skip_first) out[0][0] = e[j] = b[0][0];
      }
      single_channel_lanes<true>(a, b, out, first, len, lanes, e, p);
    }
  }
}

// Several channels: chunk 0 is scanned for real by thread 0 while the other threads summarise
// chunks 1 .. nt-1 (gate product and final state from zero); then the entering states are
// carried across, and thread k scans chunk k + 1 for real. A summary reads 8 bytes per step and
// channel, a scan moves 12, so chunk 0 is 2/3 the size of the others and both phases end
// together. Each thread streams contiguous memory, which splitting the channels of every row
// between threads does not give.
void scan_chunked_wide(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t nt = num_threads();
  if (nt == 1 || T < 8 * nt) return scan_sequential(a, b, T, C, h0, out);
  const int64_t size = T / (nt + 1), first = T - nt * size;
  std::vector<int64_t> start(static_cast<size_t>(nt + 2));
  for (int64_t q = 0; q <= nt + 1; ++q) start[q] = q == 0 ? 0 : first + (q - 1) * size;
  const int64_t ld = (C + 15) / 16 * 16;  // per-chunk state padded to whole cache lines
  std::vector<float> prod(static_cast<size_t>((nt + 1) * ld), 1.0f),
      end(static_cast<size_t>((nt + 1) * ld), 0.0f), carry(static_cast<size_t>((nt + 1) * ld));
  const bool stream = T * C * int64_t{sizeof(float)} >= kStreamBytes;
  // Scans [t0, t1) for real from `state` (C floats, updated); t0 = 0 starts from h0 or b[0].
  auto scan_part = [&](int64_t t0, int64_t t1, float* state) {
    int64_t t = t0;
    if (t == 0) {
      if (h0) {
        std::copy_n(h0, C, state);
      } else {
        std::copy_n(b[0], C, state);
        std::copy_n(b[0], C, out[0]);
        ++t;
      }
    }
    if (t < t1) cpu::scan_steps(a[t], b[t], a.stride, t1 - t, state, out[t], C, stream);
  };
#pragma omp parallel num_threads(nt)
  {
    const int64_t k = omp_get_thread_num();
    if (k == 0) {
      scan_part(0, start[1], carry.data() + ld);  // chunk 0's final state enters chunk 1
    } else {
      float *e = end.data() + k * ld, *p = prod.data() + k * ld;
      cpu::scan_summary_steps(a[start[k]], b[start[k]], a.stride, start[k + 1] - start[k], e, p, C);
    }
#pragma omp barrier
#pragma omp single
    for (int64_t q = 2; q <= nt; ++q) {
      const float *pp = prod.data() + (q - 1) * ld, *ep = end.data() + (q - 1) * ld,
                  *cp = carry.data() + (q - 1) * ld;
      float* cq = carry.data() + q * ld;
      for (int64_t c = 0; c < C; ++c) cq[c] = pp[c] * cp[c] + ep[c];
    }
    scan_part(start[k + 1], start[k + 2], carry.data() + (k + 1) * ld);
  }
}

void scan_chunked(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  if (C == 1) return scan_chunked_single(a, b, T, h0, out);
  scan_chunked_wide(a, b, T, C, h0, out);
}

void scan_rows(ScanAlgo algo, In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  if (T <= 0 || C <= 0) return;
  switch (algo) {
    case ScanAlgo::sequential:
      return scan_sequential(a, b, T, C, h0, out);
    case ScanAlgo::hillis_steele:
      return scan_hillis_steele(a, b, T, C, h0, out);
    case ScanAlgo::blelloch:
      return scan_blelloch(a, b, T, C, h0, out);
    case ScanAlgo::chunked:
      return scan_chunked(a, b, T, C, h0, out);
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

void scan_forward(ScanAlgo algo, const float* f, const float* x, int64_t T, int64_t C,
                  const float* h0, float* h) {
  scan_rows(algo, {f, C}, {x, C}, T, C, h0, {h, C});
}

void scan_backward(ScanAlgo algo, const float* f, const float* h, const float* dh, int64_t T,
                   int64_t C, const float* h0, float* dx, float* df, float* dh0) {
  if (T <= 0 || C <= 0) return;
  // Reversed step s is forward step T-1-s; its gate is f[T-s]. Step 0 has no predecessor, so
  // its gate (f[T], past the end) is never read.
  scan_rows(algo, {f + T * C, -C}, {dh + (T - 1) * C, -C}, T, C, nullptr, {dx + (T - 1) * C, -C});
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* g = dx + t * C;
    float* d = df + t * C;
    const float* prev = t > 0 ? h + (t - 1) * C : h0;
    if (prev)
      for (int64_t c = 0; c < C; ++c) d[c] = g[c] * prev[c];
    else
      std::fill_n(d, C, 0.0f);
  }
  if (dh0)
    for (int64_t c = 0; c < C; ++c) dh0[c] = f[c] * dx[c];
}

void scan_forward_reference(const float* f, const float* x, int64_t T, int64_t C, const float* h0,
                            float* h) {
  for (int64_t c = 0; c < C; ++c) {
    double state = h0 ? h0[c] : 0.0;
    for (int64_t t = 0; t < T; ++t) {
      state = static_cast<double>(f[t * C + c]) * state + x[t * C + c];
      h[t * C + c] = static_cast<float>(state);
    }
  }
}

}  // namespace fff
