// SIMD kernels of the CMM engine, written once with Highway and compiled for each target;
// the best one the CPU supports is chosen at run time.
#include "cpu/cmm_kernels.h"

#include <algorithm>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/cmm_kernels.cc"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include "cpu/vector_block-inl.h"

HWY_BEFORE_NAMESPACE();
namespace fff::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
using Half = hwy::float16_t;

// Vector registers of the target: x86 before AVX-512 has 16, the others 32 (emulated targets:
// counted as 16). The blocks below keep their accumulators and operands in registers: a spilled
// accumulator puts a store and a reload into its chain of FMAs (docs/performance.md, "AVX2, and
// the AMD Zen cores").
#if HWY_TARGET >= HWY_AVX2 && (HWY_ARCH_X86 || HWY_TARGET >= HWY_EMU128)
constexpr int kVectorRegisters = 16;
#else
constexpr int kVectorRegisters = 32;
#endif

// Weights are fp32 or IEEE half; halves are widened to fp32 as they are loaded (exactly), so the
// arithmetic is the same for both.
HWY_INLINE V LoadW(D d, const float* p) {
  return hn::LoadU(d, p);
}
HWY_INLINE V LoadW(D d, const Half* p) {
  return hn::PromoteTo(d, hn::LoadU(hn::Rebind<Half, D>(), p));
}
// a * b + c for the scalar tails, fused exactly where the vector MulAdd is, so that the
// compiler's choice to contract or not cannot make fp32 and half weights differ.
HWY_INLINE float MulAddScalar(float a, float b, float c) {
  const hn::CappedTag<float, 1> d1;
  return hn::GetLane(hn::MulAdd(hn::Set(d1, a), hn::Set(d1, b), hn::Set(d1, c)));
}
HWY_INLINE float Widen(float v) {
  return v;
}
HWY_INLINE float Widen(Half v) {
  uint16_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return half_to_float(bits);
}

// Requests the bytes [off, off + kVectors vectors) of each of next[0..next_rows) from memory:
// called as a kernel's loop reaches column `off` of its own rows, it fetches the rows the caller
// reads next a row ahead, a few lines at a time, so the requests never flood the core's outstanding
// misses. Into L2 rather than L1, where the rows in use are: on an AMD Zen 4 (32 KB L1) that made
// the batched engine 12% faster at batch 128 with AVX-512 and 1-2% at 16,384 (docs/performance.md).
template <int kVectors = 4, class W>
HWY_INLINE void PrefetchAhead(const W* const* next, int64_t next_rows, int64_t off, int64_t N) {
  for (int64_t p = 0; p < next_rows; ++p)
    for (int64_t b = 0; b < kVectors * N * int64_t{sizeof(W)}; b += 64)
      __builtin_prefetch(reinterpret_cast<const char*>(next[p] + off) + b, 0, 2);
}

// Does nothing alongside a dot product's column blocks (see DotRowsBlock's `side`).
struct NoSide {
  HWY_INLINE void operator()(int64_t) const {}
};

// NR rows against one weight vector (kShared: w[0]) or each against its own (w[r]). Chunk i of
// every dot goes to accumulator i % 4, whatever NR or kShared, so results do not depend on the
// blocking; four accumulators keep the FMA chains short when a node's group is a single row.
// side(off) is called as the loop reaches each block of 4 vectors at column off: other work
// whose loads then overlap the dot's.
template <int NR, bool kShared, class W, class Side = NoSide>
void DotRowsBlock(const float* const* x, const W* const* w, int64_t n, float* out,
                  const W* const* next, int64_t next_rows, Side side = {}) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  FFF_VECTOR_BLOCK(V, acc, NR, 4);
  for (int r = 0; r < NR; ++r)
    for (int k = 0; k < 4; ++k) acc[r][k] = hn::Zero(d);
  auto chunk = [&](int64_t off, int k) {
    if constexpr (kShared) {
      const V wv = LoadW(d, w[0] + off);
      for (int r = 0; r < NR; ++r) acc[r][k] = hn::MulAdd(hn::LoadU(d, x[r] + off), wv, acc[r][k]);
    } else {
      for (int r = 0; r < NR; ++r)
        acc[r][k] = hn::MulAdd(hn::LoadU(d, x[r] + off), LoadW(d, w[r] + off), acc[r][k]);
    }
  };
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    PrefetchAhead(next, next_rows, i, N);
    side(i);
    for (int k = 0; k < 4; ++k) chunk(i + k * N, k);
  }
  // Up to three whole chunks remain; constant accumulator indices keep acc in registers.
  for (int k = 0; k < 3; ++k) {
    if (i + N > n) break;
    chunk(i, k);
    i += N;
  }
  for (int r = 0; r < NR; ++r) {
    const V sum = hn::Add(hn::Add(acc[r][0], acc[r][1]), hn::Add(acc[r][2], acc[r][3]));
    float s = hn::GetLane(hn::SumOfLanes(d, sum));
    const W* wr = kShared ? w[0] : w[r];
    for (int64_t t = i; t < n; ++t) s = MulAddScalar(x[r][t], Widen(wr[t]), s);
    out[r] = s;
  }
}

// Blocks of 4 (3 with 16 registers: 4 x 4 accumulators and a weight vector do not fit), 2 and 1
// rows; the rows to prefetch are spread over the blocks in order.
template <bool kShared, class W>
void DotBlocks(const float* const* x, const W* const* w, int64_t rows, int64_t n, float* out,
               const W* const* next, int64_t next_rows) {
  int64_t r = 0, p = 0;
  auto block = [&](auto nr) {
    constexpr int NR = decltype(nr)::value;
    const int64_t np = r + NR < rows ? std::min<int64_t>(next_rows - p, NR) : next_rows - p;
    DotRowsBlock<NR, kShared>(x + r, kShared ? w : w + r, n, out + r, next + p, np);
    r += NR;
    p += np;
  };
  constexpr int kMaxRows = kVectorRegisters >= 32 ? 4 : 3;
  while (r + kMaxRows <= rows) block(std::integral_constant<int, kMaxRows>());
  while (r + 2 <= rows) block(std::integral_constant<int, 2>());
  if (r < rows) block(std::integral_constant<int, 1>());
}

void DotRowsF32(const float* const* x, int64_t rows, const float* w, int64_t n, float* out,
                const float* const* next, int64_t next_rows) {
  DotBlocks<true>(x, &w, rows, n, out, next, next_rows);
}

void DotRowsF16(const float* const* x, int64_t rows, const uint16_t* w, int64_t n, float* out,
                const uint16_t* const* next, int64_t next_rows) {
  const Half* wh = reinterpret_cast<const Half*>(w);
  DotBlocks<true>(x, &wh, rows, n, out, reinterpret_cast<const Half* const*>(next), next_rows);
}

void DotPairsF32(const float* const* x, const float* const* w, int64_t rows, int64_t n, float* out,
                 const float* const* next, int64_t next_rows) {
  DotBlocks<false>(x, w, rows, n, out, next, next_rows);
}

void DotPairsF16(const float* const* x, const uint16_t* const* w, int64_t rows, int64_t n,
                 float* out, const uint16_t* const* next, int64_t next_rows) {
  DotBlocks<false>(x, reinterpret_cast<const Half* const*>(w), rows, n, out,
                   reinterpret_cast<const Half* const*>(next), next_rows);
}

// y[c] = a * v[c] + y[c] for c in [begin, end), fused as CombineBlock fuses it, so that adding a
// path's output rows one at a time gives CombineRows' result bit for bit.
template <class W>
HWY_INLINE void AxpyColumns(float a, const W* v, float* y, int64_t begin, int64_t end) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const V av = hn::Set(d, a);
  int64_t c = begin;
  for (; c + N <= end; c += N)
    hn::StoreU(hn::MulAdd(av, LoadW(d, v + c), hn::LoadU(d, y + c)), d, y + c);
  for (; c < end; ++c) y[c] = MulAddScalar(a, Widen(v[c]), y[c]);
}

// One step of a single row's walk down a tree: returns dot(x, w) over n columns (bitwise as
// DotRows computes it) and, in the same pass over the columns, adds a * v to y[:m] (the previous
// level's output row: its loads overlap this level's chain of dependent ones). The first lines
// of next[0..next_rows) (the children's input rows) are requested as the pass starts, so the
// next level's first loads need not wait for the decision.
template <class W>
float DotAxpy(const float* x, const W* w, int64_t n, float a, const W* v, float* y, int64_t m,
              const W* const* next, int64_t next_rows, int64_t next_lines) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t p = 0; p < next_rows; ++p)
    for (int64_t b = 0; b < next_lines * 64; b += 64)
      hwy::Prefetch(reinterpret_cast<const char*>(next[p]) + b);
  float z = 0.0f;
  int64_t done = 0;  // columns of y already updated
  auto side = [&](int64_t off) {
    if (!v || off >= m) return;
    const int64_t end = std::min(m, off + 4 * N);
    AxpyColumns(a, v, y, off, end);
    done = end;
  };
  if (n > 0) DotRowsBlock<1, true, W>(&x, &w, n, &z, nullptr, 0, side);
  if (v) AxpyColumns(a, v, y, done, m);
  return z;
}

float DotAxpyF32(const float* x, const float* w, int64_t n, float a, const float* v, float* y,
                 int64_t m, const float* const* next, int64_t next_rows, int64_t next_lines) {
  return DotAxpy(x, w, n, a, v, y, m, next, next_rows, next_lines);
}

float DotAxpyF16(const float* x, const uint16_t* w, int64_t n, float a, const uint16_t* v, float* y,
                 int64_t m, const uint16_t* const* next, int64_t next_rows, int64_t next_lines) {
  return DotAxpy(x, reinterpret_cast<const Half*>(w), n, a, reinterpret_cast<const Half*>(v), y, m,
                 reinterpret_cast<const Half* const*>(next), next_rows, next_lines);
}

// NR rows by NW weight vectors, one accumulator each, chunks summed in order. With 16 registers
// and more rows than weights, the weights' vectors are the ones held (NR x NW + NW + 1 registers:
// 4 x 3 fits in 16, where holding the rows' would need 17).
template <int NR, int NW>
void DotBlock(const float* const* x, const float* w, int64_t ldw, int64_t n, float* out,
              int64_t ldo, const float* const* next = nullptr, int64_t next_rows = 0) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  FFF_VECTOR_BLOCK(V, acc, NR, NW);
  for (int r = 0; r < NR; ++r)
    for (int k = 0; k < NW; ++k) acc[r][k] = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    if (next_rows > 0 && (i * int64_t{sizeof(float)}) % 64 == 0)
      PrefetchAhead<1>(next, next_rows, i, N);  // a cache line of each, once
    if constexpr (kVectorRegisters < 32 && NR > NW) {
      FFF_VECTOR_ARRAY(V, wv, NW);
      for (int k = 0; k < NW; ++k) wv[k] = hn::LoadU(d, w + k * ldw + i);
      for (int r = 0; r < NR; ++r) {
        const V xv = hn::LoadU(d, x[r] + i);
        for (int k = 0; k < NW; ++k) acc[r][k] = hn::MulAdd(xv, wv[k], acc[r][k]);
      }
    } else {
      FFF_VECTOR_ARRAY(V, xv, NR);
      for (int r = 0; r < NR; ++r) xv[r] = hn::LoadU(d, x[r] + i);
      for (int k = 0; k < NW; ++k) {
        const V wv = hn::LoadU(d, w + k * ldw + i);
        for (int r = 0; r < NR; ++r) acc[r][k] = hn::MulAdd(xv[r], wv, acc[r][k]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int k = 0; k < NW; ++k) {
      float s = hn::GetLane(hn::SumOfLanes(d, acc[r][k]));
      for (int64_t t = i; t < n; ++t) s += x[r][t] * w[k * ldw + t];
      out[r * ldo + k] = s;
    }
}

template <int NR>
void DotBlockRows(const float* const* x, const float* w, int64_t ldw, int64_t n, int64_t nw,
                  float* out, int64_t ldo, const float* const* next, int64_t next_rows) {
  // NR x NW accumulators and the operands: 4 x 4 fills 21 of 32 registers; with 16, 4 x 3 and
  // its 3 weight vectors and one input vector fill all 16.
  constexpr int NW = kVectorRegisters >= 32 ? 4 : 3;
  int64_t k = 0;
  for (; k + NW <= nw; k += NW) {
    DotBlock<NR, NW>(x, w + k * ldw, ldw, n, out + k, ldo, next, next_rows);
    next_rows = 0;  // requested once, alongside the first weight block
  }
  switch (nw - k) {
    case 3:
      DotBlock<NR, 3>(x, w + k * ldw, ldw, n, out + k, ldo, next, next_rows);
      break;
    case 2:
      DotBlock<NR, 2>(x, w + k * ldw, ldw, n, out + k, ldo, next, next_rows);
      break;
    case 1:
      DotBlock<NR, 1>(x, w + k * ldw, ldw, n, out + k, ldo, next, next_rows);
      break;
    default:
      break;
  }
}

void DotMatrix(const float* const* x, int64_t rows, const float* w, int64_t ldw, int64_t n,
               int64_t nw, float* out, int64_t ldo, int64_t ahead) {
  // The rows `ahead` places further on are requested (into L2) as each block of 4 is computed.
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const int64_t next_rows = ahead > 0 ? std::clamp<int64_t>(rows - (r + ahead), 0, 4) : 0;
    DotBlockRows<4>(x + r, w, ldw, n, nw, out + r * ldo, ldo,
                    next_rows > 0 ? x + r + ahead : nullptr, next_rows);
  }
  switch (rows - r) {
    case 3:
      DotBlockRows<3>(x + r, w, ldw, n, nw, out + r * ldo, ldo, nullptr, 0);
      break;
    case 2:
      DotBlockRows<2>(x + r, w, ldw, n, nw, out + r * ldo, ldo, nullptr, 0);
      break;
    case 1:
      DotBlockRows<1>(x + r, w, ldw, n, nw, out + r * ldo, ldo, nullptr, 0);
      break;
    default:
      break;
  }
}

// R rows by C vectors of columns starting at col: accumulators stay in registers over all terms.
template <int R, int C, class W>
void CombineBlock(const float* a, int64_t lda, int64_t terms, const W* const* w, int64_t col,
                  const float* init, bool accumulate, bool stream, float* const* y) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  FFF_VECTOR_BLOCK(V, acc, R, C);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = accumulate ? hn::LoadU(d, y[r] + col + c * N)
                  : init     ? hn::LoadU(d, init + col + c * N)
                             : hn::Zero(d);
  for (int64_t j = 0; j < terms; ++j) {
    FFF_VECTOR_ARRAY(V, wv, C);
    for (int c = 0; c < C; ++c) wv[c] = LoadW(d, w[j] + col + c * N);
    for (int r = 0; r < R; ++r) {
      const V av = hn::Set(d, a[r * lda + j]);
      for (int c = 0; c < C; ++c) acc[r][c] = hn::MulAdd(av, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      if (stream)
        hn::Stream(acc[r][c], d, y[r] + col + c * N);
      else
        hn::StoreU(acc[r][c], d, y[r] + col + c * N);
    }
}

template <int R, class W>
void CombineRowBlock(const float* a, int64_t lda, int64_t terms, const W* const* w, int64_t n,
                     const float* init, bool accumulate, bool stream, float* const* y,
                     const W* const* next, int64_t next_rows) {
  const D d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  // Non-temporal stores need every row aligned to the vector size.
  for (int r = 0; r < R; ++r)
    stream = stream && reinterpret_cast<uintptr_t>(y[r]) % (N * sizeof(float)) == 0;
  // R x C accumulators, C weight vectors and a broadcast: 4 x 4 fills 21 of 32 registers; with
  // 16, 4 x 2 uses 11.
  constexpr int C = kVectorRegisters >= 32 ? 4 : 2;
  int64_t col = 0;
  for (; col + C * N <= n; col += C * N) {
    PrefetchAhead<C>(next, next_rows, col, N);
    CombineBlock<R, C>(a, lda, terms, w, col, init, accumulate, stream, y);
  }
  for (; col + N <= n; col += N)
    CombineBlock<R, 1>(a, lda, terms, w, col, init, accumulate, stream, y);
  for (int r = 0; r < R; ++r)
    for (int64_t t = col; t < n; ++t) {
      float s = accumulate ? y[r][t] : init ? init[t] : 0.0f;
      for (int64_t j = 0; j < terms; ++j) s = MulAddScalar(a[r * lda + j], Widen(w[j][t]), s);
      y[r][t] = s;
    }
}

template <class W>
void CombineRows(const float* a, int64_t lda, int64_t terms, const W* const* w, int64_t n,
                 const float* init, bool accumulate, bool stream, float* const* y, int64_t rows,
                 const W* const* next, int64_t next_rows) {
  stream = stream && !accumulate;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    CombineRowBlock<4, W>(a + r * lda, lda, terms, w, n, init, accumulate, stream, y + r, next,
                          r == 0 ? next_rows : 0);
  // The last 1 to 3 rows in one block, so that each weight vector is loaded once for them.
  const int64_t pf = r == 0 ? next_rows : 0;
  switch (rows - r) {
    case 3:
      CombineRowBlock<3, W>(a + r * lda, lda, terms, w, n, init, accumulate, stream, y + r, next,
                            pf);
      break;
    case 2:
      CombineRowBlock<2, W>(a + r * lda, lda, terms, w, n, init, accumulate, stream, y + r, next,
                            pf);
      break;
    case 1:
      CombineRowBlock<1, W>(a + r * lda, lda, terms, w, n, init, accumulate, stream, y + r, next,
                            pf);
      break;
    default:
      break;
  }
  if (stream) hwy::FlushStream();
}

void CombineRowsF32(const float* a, int64_t lda, int64_t terms, const float* const* w, int64_t n,
                    const float* init, bool accumulate, bool stream, float* const* y, int64_t rows,
                    const float* const* next, int64_t next_rows) {
  CombineRows(a, lda, terms, w, n, init, accumulate, stream, y, rows, next, next_rows);
}

void CombineRowsF16(const float* a, int64_t lda, int64_t terms, const uint16_t* const* w, int64_t n,
                    const float* init, bool accumulate, bool stream, float* const* y, int64_t rows,
                    const uint16_t* const* next, int64_t next_rows) {
  CombineRows(a, lda, terms, reinterpret_cast<const Half* const*>(w), n, init, accumulate, stream,
              y, rows, reinterpret_cast<const Half* const*>(next), next_rows);
}

// Rounds to nearest (even) with the CPU's conversion; the last partial vector goes through a
// zero-padded buffer.
void ToHalf(const float* src, int64_t n, uint16_t* dst) {
  const D d;
  const hn::Rebind<Half, D> dh;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  Half* out = reinterpret_cast<Half*>(dst);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(d, src + i)), dh, out + i);
  if (i < n) {
    HWY_ALIGN float in[hn::MaxLanes(d)] = {};
    HWY_ALIGN Half tail[hn::MaxLanes(d)];
    std::copy_n(src + i, n - i, in);
    hn::Store(hn::DemoteTo(dh, hn::Load(d, in)), dh, tail);
    std::copy_n(tail, n - i, out + i);
  }
}

const char* TargetName() {
  return hwy::TargetName(HWY_TARGET);
}

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace fff::cpu {

HWY_EXPORT(DotRowsF32);
HWY_EXPORT(DotRowsF16);
HWY_EXPORT(DotPairsF32);
HWY_EXPORT(DotPairsF16);
HWY_EXPORT(DotMatrix);
HWY_EXPORT(DotAxpyF32);
HWY_EXPORT(DotAxpyF16);
HWY_EXPORT(CombineRowsF32);
HWY_EXPORT(CombineRowsF16);
HWY_EXPORT(ToHalf);
HWY_EXPORT(TargetName);

void cmm_dot_rows(const float* const* x, int64_t rows, const float* w, int64_t n, float* out,
                  const float* const* next, int64_t next_rows) {
  HWY_DYNAMIC_DISPATCH(DotRowsF32)(x, rows, w, n, out, next, next_rows);
}

void cmm_dot_rows(const float* const* x, int64_t rows, const uint16_t* w, int64_t n, float* out,
                  const uint16_t* const* next, int64_t next_rows) {
  HWY_DYNAMIC_DISPATCH(DotRowsF16)(x, rows, w, n, out, next, next_rows);
}

void cmm_dot_pairs(const float* const* x, const float* const* w, int64_t rows, int64_t n,
                   float* out, const float* const* next, int64_t next_rows) {
  HWY_DYNAMIC_DISPATCH(DotPairsF32)(x, w, rows, n, out, next, next_rows);
}

void cmm_dot_pairs(const float* const* x, const uint16_t* const* w, int64_t rows, int64_t n,
                   float* out, const uint16_t* const* next, int64_t next_rows) {
  HWY_DYNAMIC_DISPATCH(DotPairsF16)(x, w, rows, n, out, next, next_rows);
}

void cmm_dot_matrix(const float* const* x, int64_t rows, const float* w, int64_t ldw, int64_t n,
                    int64_t nw, float* out, int64_t ldo, int64_t ahead) {
  HWY_DYNAMIC_DISPATCH(DotMatrix)(x, rows, w, ldw, n, nw, out, ldo, ahead);
}

float cmm_dot_axpy(const float* x, const float* w, int64_t n, float a, const float* v, float* y,
                   int64_t m, const float* const* next, int64_t next_rows, int64_t next_lines) {
  return HWY_DYNAMIC_DISPATCH(DotAxpyF32)(x, w, n, a, v, y, m, next, next_rows, next_lines);
}

float cmm_dot_axpy(const float* x, const uint16_t* w, int64_t n, float a, const uint16_t* v,
                   float* y, int64_t m, const uint16_t* const* next, int64_t next_rows,
                   int64_t next_lines) {
  return HWY_DYNAMIC_DISPATCH(DotAxpyF16)(x, w, n, a, v, y, m, next, next_rows, next_lines);
}

void cmm_combine_rows(const float* a, int64_t lda, int64_t terms, const float* const* w, int64_t n,
                      const float* init, bool accumulate, bool stream, float* const* y,
                      int64_t rows, const float* const* next, int64_t next_rows) {
  HWY_DYNAMIC_DISPATCH(CombineRowsF32)
  (a, lda, terms, w, n, init, accumulate, stream, y, rows, next, next_rows);
}

void cmm_combine_rows(const float* a, int64_t lda, int64_t terms, const uint16_t* const* w,
                      int64_t n, const float* init, bool accumulate, bool stream, float* const* y,
                      int64_t rows, const uint16_t* const* next, int64_t next_rows) {
  HWY_DYNAMIC_DISPATCH(CombineRowsF16)
  (a, lda, terms, w, n, init, accumulate, stream, y, rows, next, next_rows);
}

void to_half(const float* src, int64_t n, uint16_t* dst) {
  HWY_DYNAMIC_DISPATCH(ToHalf)(src, n, dst);
}

const char* cmm_simd_target() {
  return HWY_DYNAMIC_DISPATCH(TargetName)();
}

}  // namespace fff::cpu
#endif
