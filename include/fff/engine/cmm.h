// Conditional-matmul (CMM) inference engine for neuron FFF (UltraFastBERT's layer): each row
// computes only the K (D + 1) neurons on its paths, fast at batch 1 and at large batch.
//   x: (B, in)   y: (B, out)   same function as neuron_fff_forward, without training state
#pragma once

#include <cstdint>
#include <vector>

#include "fff/layers/ff/neuron_fff.h"

namespace fff {

struct CmmOptions {
  // Levels walked per pass over the inputs. After each pass the rows are regrouped by the node
  // they reached, so that deep nodes see every row of the batch that visits them.
  int64_t band_levels = 6;
  // Rows walked together within a group (0: as many as fill 3/4 of the L2 cache the system
  // reports with inputs, e.g. 256 rows of 768 floats on a 1 MB L2).
  int64_t tile_rows = 0;
  // At a band's start, buckets (rows at one node) of at most this many rows share tiles with
  // their neighbours, so that more subtrees walk, and miss, together; -1: 64 rows with
  // half-precision weights, none with fp32 (measured slower packed at 1024 tokens per call).
  int64_t pack_rows = -1;
};

// Inference copy of a neuron FFF's w1 and w2 in IEEE half precision (bits): a path reads half
// the weight bytes, which is what bounds the engine once the weights are beyond the cache. Each
// weight is rounded to nearest (relative error at most 2^-11); biases and all arithmetic stay
// fp32, so the result equals fp32 inference with the rounded weights.
struct NeuronFFFHalf {
  std::vector<uint16_t, AlignedAllocator<uint16_t>> w1, w2;  // (K n, in), (K n, out)
};
// Throws fff::Error if a weight is beyond half precision's range (|w| > 65504) or not finite.
NeuronFFFHalf make_half_weights(const NeuronFFF& m);

// Picks the path by batch size: row at a time below kCmmBatchedFrom rows, grouped above. With
// `half`, w1 and w2 are read from it (made from m by make_half_weights) instead of from m.
void neuron_fff_infer(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                      const NeuronFFFHalf* half = nullptr);

// Latency path: one row at a time, each thread its own rows. Each level's dot product (the chain
// of dependent loads) runs in one pass with the previous level's output row added to the output,
// so that those independent loads fill the chain's waits, and requests the first lines of both
// children's input rows. Nothing is allocated and no parallel region is entered for one row.
// y must not overlap x.
void neuron_fff_infer_rowwise(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                              const NeuronFFFHalf* half = nullptr);

// Throughput path: per tree, rows walk the levels in bands (the whole depth at once when a
// thread's rows fit one tile), level by level. At each level the rows of a tile are grouped by
// node (counting sort) so the node's weights serve the whole group, and at the last level each
// group shares its whole path, so its outputs are one small product with the path's output
// rows. Rows alone at their node (the deep levels) step 8 at a time in lockstep and combine
// their own paths after the last level. Every step requests the weight rows of the next group,
// lockstep chunk or path a few lines at a time while it reads its own, so that the misses of a
// level overlap instead of forming chains. Threads walk contiguous slices of the batch down to
// a few levels (16 nodes per thread), then take the rows of disjoint subtrees, so that each deep
// node's weights are read by one core. Each output depends only on its row (fixed summation
// order), so results are the same for any thread count, grouping or path. The routing state and
// each thread's scratch stay in ctx.workspace for the next call.
void neuron_fff_infer_batched(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                              const CmmOptions& opt = {}, const NeuronFFFHalf* half = nullptr);

inline constexpr int64_t kCmmBatchedFrom = 16;

// Name of the SIMD instruction set the engine dispatched to on this CPU.
const char* cmm_simd_target();

}  // namespace fff
