// Linear-recurrence scans: sequential, Hillis-Steele, Blelloch (Brent-Kung) and chunked, on
// sequences of rows of C channels; the backward runs the same scan on the reversed sequence.
#include "fff/scan.h"

#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

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
// Below this many channels a thread interleaves several chunks, so that their dependency chains
// (one multiply-add per step) overlap.
constexpr int64_t kNarrow = 16;
constexpr int kChunksPerThreadNarrow = 8;

int64_t part(int64_t n, int64_t parts, int64_t k) {
  return n * k / parts;
}

std::unique_ptr<float[]> uninitialized(int64_t n) {
  return std::unique_ptr<float[]>(new float[static_cast<size_t>(n)]);
}

// out[t] = a[t] out[t-1] + b[t], out[-1] = h0 (or 0, and then a[0] is never read).
void scan_sequential(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t nt = std::clamp<int64_t>(C / kChannelsPerThread, 1, num_threads());
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t k = 0; k < nt; ++k) {
    const int64_t c0 = part(C, nt, k), c1 = part(C, nt, k + 1);
    for (int64_t t = 0; t < T; ++t) {
      const float *at = a[t], *bt = b[t];
      float* ot = out[t];
      const float* prev = t > 0 ? out[t - 1] : h0;
      if (prev)
        for (int64_t c = c0; c < c1; ++c) ot[c] = at[c] * prev[c] + bt[c];
      else
        for (int64_t c = c0; c < c1; ++c) ot[c] = bt[c];
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

// Chunked: the steps are cut into chunks. (1) Each chunk scans from zero (the first from h0) and
// multiplies its gates; (2) the true state entering each chunk is carried across chunks in
// order; (3) each chunk adds carry * (product of its gates so far) to its steps. Threads take
// chunks; with few channels each thread interleaves several chunks so that their dependency
// chains overlap.
void scan_chunked(In a, In b, int64_t T, int64_t C, const float* h0, Out out) {
  const int64_t nt = num_threads();
  const int64_t per_thread = C < kNarrow ? kChunksPerThreadNarrow : 1;
  const int64_t chunks = std::clamp<int64_t>(nt * per_thread, 1, T);
  const int64_t threads = std::min<int64_t>(nt, chunks);
  std::vector<float> prod(static_cast<size_t>(chunks * C)), carry(static_cast<size_t>(chunks * C));
  auto start = [&](int64_t q) { return part(T, chunks, q); };

#pragma omp parallel num_threads(threads)
  {
    const int64_t k = omp_get_thread_num(), kt = omp_get_num_threads();
    const int64_t q0 = part(chunks, kt, k), q1 = part(chunks, kt, k + 1);
    int64_t longest = 0;
    for (int64_t q = q0; q < q1; ++q) longest = std::max(longest, start(q + 1) - start(q));
    // (1) local scans, the chunks of this thread in lockstep.
    for (int64_t q = q0; q < q1; ++q) std::fill_n(prod.data() + q * C, C, 1.0f);
    for (int64_t s = 0; s < longest; ++s)
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t t = start(q) + s;
        if (t >= start(q + 1)) continue;
        const float *at = a[t], *bt = b[t];
        float* ot = out[t];
        const float* prev = s > 0 ? out[t - 1] : (q == 0 ? h0 : nullptr);
        if (prev)
          for (int64_t c = 0; c < C; ++c) ot[c] = at[c] * prev[c] + bt[c];
        else
          for (int64_t c = 0; c < C; ++c) ot[c] = bt[c];
        if (q > 0) {
          float* pq = prod.data() + q * C;
          for (int64_t c = 0; c < C; ++c) pq[c] *= at[c];
        }
      }
#pragma omp barrier
      // (2) carry across chunks, in order.
#pragma omp single
    {
      for (int64_t q = 1; q < chunks; ++q) {
        const float* end_prev = out[start(q) - 1];  // chunk q-1's local end (no carry yet)
        float* cq = carry.data() + q * C;
        const float* cp = carry.data() + (q - 1) * C;
        const float* pp = prod.data() + (q - 1) * C;
        for (int64_t c = 0; c < C; ++c) cq[c] = q == 1 ? end_prev[c] : pp[c] * cp[c] + end_prev[c];
      }
    }
    // (3) add the carry, scaled by the running product of the chunk's gates.
    std::vector<float> run(static_cast<size_t>((q1 - q0) * C), 1.0f);
    for (int64_t s = 0; s < longest; ++s)
      for (int64_t q = std::max<int64_t>(q0, 1); q < q1; ++q) {
        const int64_t t = start(q) + s;
        if (t >= start(q + 1)) continue;
        const float* at = a[t];
        float* ot = out[t];
        float* r = run.data() + (q - q0) * C;
        const float* cq = carry.data() + q * C;
        for (int64_t c = 0; c < C; ++c) {
          r[c] *= at[c];
          ot[c] += r[c] * cq[c];
        }
      }
  }
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
