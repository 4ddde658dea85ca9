// Products with a pre-packed right operand (fff/cpu/packed_gemm.h): the 6 x 2-vector kernel,
// written once with Highway and compiled for each target; the best one the CPU supports is
// chosen at run time.
#include "fff/cpu/packed_gemm.h"

#include <algorithm>
#include <iterator>

#include "core/parallel.h"

#ifndef FFF_PACKED_GEMM_ONCE  // this file is read once per SIMD target
#define FFF_PACKED_GEMM_ONCE
namespace fff::cpu {
// Rows of A per kernel call: shares of rows that start at multiples of it keep every tile but
// the last whole.
inline constexpr int64_t kTileRows = 6;
}  // namespace fff::cpu
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/packed_gemm.cc"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include "cpu/vector_block-inl.h"

HWY_BEFORE_NAMESPACE();
namespace fff::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;

int64_t PanelWidth() {
  return 2 * static_cast<int64_t>(hn::Lanes(D()));
}

// R rows of A (R <= 6) against one panel P (K, 2 vectors): acc = sum over k of A[r][k] P[k],
// then the epilogue adds bias and C as asked and stores the first `cols` columns. The first
// pf_lines steps also request one cache line each of pf: this tile's share of the next panel,
// so that weights coming from L3 or DRAM (an encoder's are tens of MB) arrive while this panel
// computes. They are requested into L2, not L1: a panel (48 KB on AVX-512) is larger than a
// 32 KB L1, and pulling the next one into L1 evicted the one in use (docs/embeddings.md,
// "Speed"). The prefetching steps are a loop of their own: a test inside the one loop
// halved the kernel's speed.
template <int R>
void Tile(const float* A, int64_t lda, const float* P, int64_t K, const float* bias,
          bool accumulate, float* C, int64_t ldc, int64_t cols, const float* pf, int64_t pf_lines) {
  const D d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  FFF_VECTOR_BLOCK(V, acc, R, 2);
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = hn::Zero(d);
  auto step = [&](int64_t k) HWY_ATTR {
    const V b0 = hn::LoadU(d, P + k * 2 * L);
    const V b1 = hn::LoadU(d, P + k * 2 * L + L);
    for (int r = 0; r < R; ++r) {
      const V a = hn::Set(d, A[r * lda + k]);
      acc[r][0] = hn::MulAdd(a, b0, acc[r][0]);
      acc[r][1] = hn::MulAdd(a, b1, acc[r][1]);
    }
  };
  const int64_t pk = std::min(K, pf_lines);
  for (int64_t k = 0; k < pk; ++k) {
    __builtin_prefetch(pf + 16 * k, /*rw=*/0, /*locality: L2=*/2);
    step(k);
  }
  for (int64_t k = pk; k < K; ++k) step(k);
  if (cols == 2 * L) {
    for (int r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) {
        V v = acc[r][h];
        if (bias) v = hn::Add(v, hn::LoadU(d, bias + h * L));
        float* out = C + r * ldc + h * L;
        if (accumulate) v = hn::Add(v, hn::LoadU(d, out));
        hn::StoreU(v, d, out);
      }
    return;
  }
  HWY_ALIGN float tmp[2 * hn::MaxLanes(D())];
  for (int r = 0; r < R; ++r) {
    hn::Store(acc[r][0], d, tmp);
    hn::Store(acc[r][1], d, tmp + L);
    float* out = C + r * ldc;
    for (int64_t j = 0; j < cols; ++j) {
      float v = tmp[j];
      if (bias) v += bias[j];
      out[j] = accumulate ? out[j] + v : v;
    }
  }
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, const float*, bool, float*,
                        int64_t, int64_t, const float*, int64_t);
constexpr TileFn kTiles[] = {nullptr, Tile<1>, Tile<2>, Tile<3>, Tile<4>, Tile<5>, Tile<6>};
static_assert(std::size(kTiles) == kTileRows + 1);

// Rows [r0, r1) of A against panels [p0, p1) of B, 6 rows at a time; rows in blocks of
// kRowBlock so that a block of A stays in L2 while every panel streams past it.
constexpr int64_t kRowBlock = 96;

void Block(const float* A, int64_t lda, const float* packed, int64_t K, int64_t N,
           const float* bias, bool accumulate, float* C, int64_t ldc, int64_t r0, int64_t r1,
           int64_t p0, int64_t p1) {
  const int64_t W = PanelWidth();
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = std::min(r1, rb + kRowBlock);
    for (int64_t p = p0; p < p1; ++p) {
      const float* P = packed + p * K * W;
      const int64_t col = p * W, cols = std::min(W, N - col);
      const float* b = bias ? bias + col : nullptr;
      // The next panel's cache lines (16 floats each), split between this panel's tiles so the
      // requests spread over the whole panel's time.
      const int64_t tiles = (re - rb + kTileRows - 1) / kTileRows;
      const int64_t lines = p + 1 < p1 ? K * W / 16 : 0;
      const int64_t share = std::min(K, (lines + tiles - 1) / tiles);
      for (int64_t r = rb, t = 0; r < re; r += kTileRows, ++t)
        kTiles[std::min(kTileRows, re - r)](
            A + r * lda, lda, P, K, b, accumulate, C + r * ldc + col, ldc, cols,
            P + K * W + 16 * t * share, std::clamp<int64_t>(lines - t * share, 0, share));
    }
  }
}

int64_t RowBlock() {
  return kRowBlock;
}

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace fff {
namespace cpu {
HWY_EXPORT(PanelWidth);
HWY_EXPORT(Block);
HWY_EXPORT(RowBlock);
}  // namespace cpu

PackedMatrix pack_matrix(const float* B, int64_t ldb, bool trans, int64_t K, int64_t N) {
  if (K < 0 || N < 0) throw Error("pack_matrix: negative shape");
  PackedMatrix p;
  p.K = K;
  p.N = N;
  p.panel = HWY_DYNAMIC_DISPATCH(cpu::PanelWidth)();
  const int64_t panels = (N + p.panel - 1) / p.panel;
  p.data = Tensor({panels, K, p.panel});
  for (int64_t q = 0; q < panels; ++q)
    for (int64_t k = 0; k < K; ++k) {
      float* dst = p.data.ptr() + (q * K + k) * p.panel;
      for (int64_t j = 0; j < p.panel && q * p.panel + j < N; ++j) {
        const int64_t n = q * p.panel + j;
        dst[j] = trans ? B[n * ldb + k] : B[k * ldb + n];
      }
    }
  return p;
}

void gemm_packed(Context& ctx, int64_t M, const float* A, int64_t lda, const PackedMatrix& B,
                 const float* bias, bool accumulate, float* C, int64_t ldc) {
  if (M < 0) throw Error("gemm_packed: negative row count");
  if (M == 0 || B.N == 0) return;
  if (B.panel != HWY_DYNAMIC_DISPATCH(cpu::PanelWidth)())
    throw Error("gemm_packed: the matrix was packed for another SIMD target");
  CallScope scope(ctx);
  const int64_t panels = (B.N + B.panel - 1) / B.panel;
  const int64_t row_block = HWY_DYNAMIC_DISPATCH(cpu::RowBlock)();
  auto block = [&](int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
    HWY_DYNAMIC_DISPATCH(cpu::Block)
    (A, lda, B.data.ptr(), B.K, B.N, bias, accumulate, C, ldc, r0, r1, p0, p1);
  };
  // Threads take equal shares of the rows (in whole tiles) when there are a few row blocks per
  // thread, else whole panels; below about 2^18 multiply-adds the threads' start costs more than
  // they save. Shares of whole row blocks were uneven: 288 and 224 of 512 rows on two threads
  // ran at 199 GFLOP/s, equal shares at 222 (bench_packed_gemm). Either way each
  // element is one kernel call's dot product, so the split does not change the bits.
  const int64_t row_blocks = (M + row_block - 1) / row_block;
  const int64_t madds = M * B.K * panels * B.panel;
  const int64_t threads = madds < (int64_t{1} << 18) ? 1 : ctx.threads;
  if (row_blocks >= 2 * threads) {
    parallel_region(ctx, static_cast<int>(threads), [&](Team& team) {
      const Range r = aligned_range(M, cpu::kTileRows, team.id(), team.size());
      block(r.begin, r.end, 0, panels);
    });
  } else {
    const int64_t parts = std::min(threads, panels);
    parallel_for(ctx, parts, [&](int64_t t) {
      const Range p = static_range(panels, static_cast<int>(t), static_cast<int>(parts));
      block(0, M, p.begin, p.end);
    });
  }
}

}  // namespace fff
#endif
