// Side-by-side benchmark of neuron FFF inference (UltraFastBERT shapes) against the dense FF it
// replaces: warm-up, repeats, medians, FLOP and byte counts, and the error against the naive
// reference on the same inputs.
#pragma once

#include <cstdint>
#include <string>

#include "fff/core/context.h"

namespace fff {

struct CmmBenchConfig {
  int64_t dim = 768;           // d: input and output width
  int64_t trees = 1;           // K
  int64_t depth = 11;          // D (D + 1 levels)
  int64_t batch = 1;           // tokens per call
  int64_t dense_width = 3072;  // hidden width of the dense baseline
  int64_t layers = 1;          // independent layers applied in sequence (weights beyond cache)
  double min_seconds = 0.3;    // repeat each side until this much time (and >= 3 repeats)
  bool half_weights = false;   // FFF reads half-precision copies of its weights (make_half_weights)
  uint64_t seed = 1;
};

struct CmmBenchResult {
  CmmBenchConfig cfg;
  int threads = 1;                // the context's
  std::string dense_backend;      // e.g. "openblas-sgemm"
  std::string simd;               // instruction set the FFF kernels dispatched to
  std::string fff_path;           // "rowwise" (latency path) or "batched"
  double fff_us_per_token = 0.0;  // per layer and token, median over repeats
  double dense_us_per_token = 0.0;
  double speedup = 0.0;
  double fff_flops_per_token = 0.0, dense_flops_per_token = 0.0;  // per layer
  double fff_bytes_per_token = 0.0, dense_bytes_per_token = 0.0;  // weights read per layer
  double fff_gflops = 0.0, dense_gflops = 0.0;
  // FFF output vs the naive reference on the fp32 weights, max |diff| / max |ref| (with half
  // weights, mostly their rounding)
  double max_rel_err = 0.0;
  // The memory floor in the same run: copying the batch's inputs to its outputs (each token's
  // in + out floats, read once and written once), and the rate at which FFF and the copy move
  // those bytes.
  double copy_us_per_token = 0.0;
  double fff_io_gbps = 0.0, copy_io_gbps = 0.0;
  // The weights' floor in the same run: reading each call's visited w1 and w2 rows once, in
  // address order (rows_read_per_token: distinct rows per token and layer, w1 and w2 counted).
  double rows_floor_us_per_token = 0.0, rows_read_per_token = 0.0, fff_vs_rows_floor = 0.0;
  // The simplest correct code in the same run: per token, tree and level one cblas_sdot with the
  // node's input row, the exact activation, one cblas_saxpy with its output row; no threads.
  double loop_us_per_token = 0.0, fff_vs_loop = 0.0;  // fff_vs_loop: loop time / fff time
  double loop_max_rel_err = 0.0;                      // the loop's error, as max_rel_err
  int fff_repeats = 0, dense_repeats = 0;
};

// Each timed call takes the next of many distinct batches of random tokens (up to 1024 of them,
// 16384 rows in all), so paths vary between calls as they do in use.
// Runs the FFF side; the dense side is taken from `dense_us_per_token` if positive (one dense
// measurement serves every FFF shape of the same dim, batch and width), else measured here.
// Runs on ctx's threads.
CmmBenchResult run_cmm_bench(Context& ctx, const CmmBenchConfig& cfg,
                             double dense_us_per_token = 0.0, int dense_repeats = 0);

}  // namespace fff
