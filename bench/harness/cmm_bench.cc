// Neuron FFF inference against dense FF, timed side by side in one process.
#include "harness/cmm_bench.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "core/parallel.h"
#include "cpu/cmm_kernels.h"
#include "fff/engine/cmm.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/neuron_fff.h"
#include "fff/testing/ff.h"
#include "harness/timing.h"

namespace fff {

namespace {

// Each side: one warm-up run, then timed runs until min_seconds have passed and at least 3 ran.
bench::Stats time_side(const std::function<void()>& fn, double min_seconds) {
  return bench::time_repeated(fn, {.warmup = 1, .repeats = 3, .min_seconds = min_seconds});
}

// Rows checked against the naive reference (it is slow; the kernel treats rows alike).
constexpr int64_t kCheckedRows = 64;
// Input pool: up to 16384 rows, in up to 1024 distinct batches.
constexpr int64_t kPoolRows = 16384, kMaxDistinctBatches = 1024;

// The simplest correct neuron FFF inference, the baseline the engine must beat at small batch:
// per row, tree and level one sdot with the node's input row, the exact activation, one saxpy
// with its output row.
void plain_loop_infer(const NeuronFFF& m, const float* x, int64_t B, float* y) {
  const auto& c = m.cfg;
  const int in = static_cast<int>(c.in), out = static_cast<int>(c.out);
  for (int64_t r = 0; r < B; ++r) {
    const float* xr = x + r * c.in;
    float* yr = y + r * c.out;
    if (c.output_bias)
      std::copy_n(m.b.value.ptr(), c.out, yr);
    else
      std::fill_n(yr, c.out, 0.0f);
    for (int64_t tree = 0; tree < c.trees; ++tree) {
      int64_t node = 0;
      for (int64_t level = 0; level <= c.depth; ++level) {
        const int64_t k = tree * c.nodes_per_tree() + node;
        const float z = cblas_sdot(in, xr, 1, m.w1.value.ptr() + k * c.in, 1) + m.b1.value.data[k];
        cblas_saxpy(out, activate(c.act, z), m.w2.value.ptr() + k * c.out, 1, yr, 1);
        node = 2 * node + 1 + (z > 0.0f ? 1 : 0);
      }
    }
  }
}

// max |y - ref| / max |ref| (infinite where y holds a NaN).
double max_rel_err(const Tensor& y, const Tensor& ref) {
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < y.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(y.data[i]) - ref.data[i]);
    max_diff = std::isnan(diff) ? INFINITY : std::max(max_diff, diff);
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref.data[i])));
  }
  return max_ref > 0.0 ? max_diff / max_ref : max_diff;
}

}  // namespace

CmmBenchResult run_cmm_bench(Context& ctx, const CmmBenchConfig& cfg, double dense_us_per_token,
                             int dense_repeats) {
  if (cfg.dim <= 0 || cfg.trees <= 0 || cfg.depth < 0 || cfg.depth > 24 || cfg.batch <= 0 ||
      cfg.dense_width <= 0 || cfg.layers <= 0)
    throw Error(
        "bench: dim, trees, batch, dense width and layers must be positive, depth in [0, 24]");
  CallScope scope(ctx);
  CmmBenchResult r;
  r.cfg = cfg;
  r.threads = ctx.threads;
  r.dense_backend = "openblas-sgemm";
  r.simd = cmm_simd_target();
  r.fff_path = cfg.batch < kCmmBatchedFrom ? "rowwise" : "batched";
  Rng rng(cfg.seed);
  const int64_t d = cfg.dim, B = cfg.batch, L = cfg.layers;
  const NeuronFFFConfig fc{d, d, cfg.trees, cfg.depth, Activation::gelu, false};
  std::vector<NeuronFFF> fff_layers;
  std::vector<NeuronFFFHalf> halves;
  for (int64_t l = 0; l < L; ++l) {
    fff_layers.push_back(make_neuron_fff(fc, rng));
    if (cfg.half_weights) halves.push_back(make_half_weights(fff_layers.back()));
  }
  auto half_of = [&](int64_t l) { return cfg.half_weights ? &halves[l] : nullptr; };
  // Every call takes the next of `distinct` different batches of tokens: repeating one token
  // would keep its path (72 KB for 1x11) in cache and flatter batch-1 latency.
  const int64_t distinct = std::clamp<int64_t>(kPoolRows / B, 1, kMaxDistinctBatches);
  Tensor x({distinct * B, d}), a({B, d});
  for (float& v : x.data) v = rng.normal();
  int64_t call = 0;
  auto next_input = [&] { return x.row((call++ % distinct) * B); };

  // Every layer reads the call's input rows (hot in cache, as a layer's input is in a network).
  // Feeding each layer the previous one's output instead would collapse the batch: random layers
  // without residuals or norms shrink their outputs until the biases alone decide, and by the
  // fourth layer every token takes the same path, whose weights then stay cached (measured:
  // 795, 639, 250, 10, 3, 2, 1, ... distinct leaves of 1024 tokens in layers 0, 1, 2, ...).
  auto run_fff = [&] {
    const float* in = next_input();
    for (int64_t l = 0; l < L; ++l)
      neuron_fff_infer(ctx, fff_layers[l], in, B, a.ptr(), half_of(l));
  };
  const bench::Stats fff_t = time_side(run_fff, cfg.min_seconds);
  r.fff_repeats = fff_t.runs;
  r.fff_us_per_token = fff_t.median * 1e6 / static_cast<double>(B * L);

  // The plain loop on the same layers and inputs.
  const bench::Stats loop_t = time_side(
      [&] {
        const float* in = next_input();
        for (int64_t l = 0; l < L; ++l) plain_loop_infer(fff_layers[l], in, B, a.ptr());
      },
      cfg.min_seconds);
  r.loop_us_per_token = loop_t.median * 1e6 / static_cast<double>(B * L);
  r.fff_vs_loop = r.loop_us_per_token / r.fff_us_per_token;

  // The memory floor: the same inputs copied to the outputs, per layer as FFF runs them.
  const bench::Stats copy_t = time_side(
      [&] {
        const float* in = next_input();
        for (int64_t l = 0; l < L; ++l) std::memcpy(a.ptr(), in, sizeof(float) * B * d);
      },
      cfg.min_seconds / 3);
  r.copy_us_per_token = copy_t.median * 1e6 / static_cast<double>(B * L);
  const double io_bytes = 2.0 * sizeof(float) * static_cast<double>(d);
  r.fff_io_gbps = io_bytes / r.fff_us_per_token * 1e-3;
  r.copy_io_gbps = io_bytes / r.copy_us_per_token * 1e-3;

  // The weights' floor in the same run: each call reads, once and in address order, the w1 and
  // w2 rows its batch visits in each layer (a dot product per row, no chains of dependent
  // misses). FFF cannot read its weights faster than this.
  {
    std::vector<std::vector<int32_t>> visited(distinct * L);  // per batch and layer: nodes
    NeuronFFFContext cache;
    Tensor y_route({B, d});
    int64_t total = 0;
    for (int64_t b = 0; b < distinct; ++b)
      for (int64_t l = 0; l < L; ++l) {
        neuron_fff_forward(ctx, fff_layers[l], x.row(b * B), B, y_route.ptr(), &cache);
        auto& v = visited[b * L + l];
        v.assign(cache.node.begin(), cache.node.end());
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
        total += static_cast<int64_t>(v.size());
      }
    const std::vector<float> ones(static_cast<size_t>(d), 1.0f);
    const float* one = ones.data();
    int64_t floor_call = 0;
    const bench::Stats rows_t = time_side(
        [&] {
          const int64_t b = floor_call++ % distinct;
          auto read_rows = [&](auto w1, auto w2, int64_t l) {
            for (const int32_t k : visited[b * L + l]) {
              float z;  // the kernels are called through a dispatch table: not elided
              cpu::cmm_dot_rows(&one, 1, w1 + k * d, d, &z);
              cpu::cmm_dot_rows(&one, 1, w2 + k * d, d, &z);
            }
          };
          for (int64_t l = 0; l < L; ++l) {
            if (cfg.half_weights)
              read_rows(halves[l].w1.data(), halves[l].w2.data(), l);
            else
              read_rows(fff_layers[l].w1.value.ptr(), fff_layers[l].w2.value.ptr(), l);
          }
        },
        cfg.min_seconds / 3);
    r.rows_floor_us_per_token = rows_t.median * 1e6 / static_cast<double>(B * L);
    r.rows_read_per_token =
        2.0 * static_cast<double>(total) / static_cast<double>(distinct * B * L);
    r.fff_vs_rows_floor = r.fff_us_per_token / r.rows_floor_us_per_token;
  }

  // Error of the first layer (engine and plain loop) against its reference on the first rows.
  const int64_t checked = std::min(B, kCheckedRows);
  Tensor y({checked, d}), y_loop({checked, d}), y_ref({checked, d});
  neuron_fff_infer(ctx, fff_layers[0], x.ptr(), checked, y.ptr(), half_of(0));
  plain_loop_infer(fff_layers[0], x.ptr(), checked, y_loop.ptr());
  neuron_fff_forward_reference(fff_layers[0], x.ptr(), checked, y_ref.ptr(), nullptr);
  r.max_rel_err = max_rel_err(y, y_ref);
  r.loop_max_rel_err = max_rel_err(y_loop, y_ref);

  if (dense_us_per_token > 0.0) {
    r.dense_us_per_token = dense_us_per_token;
    r.dense_repeats = dense_repeats;
  } else {
    fff_layers.clear();
    halves.clear();
    const DenseFFConfig dc{d, cfg.dense_width, d, Activation::gelu};
    std::vector<DenseFF> dense_layers;
    for (int64_t l = 0; l < L; ++l) dense_layers.push_back(make_dense_ff(dc, rng));
    Tensor hidden;
    auto run_dense = [&] {
      const float* in = next_input();
      for (int64_t l = 0; l < L; ++l) dense_ff_infer(ctx, dense_layers[l], in, B, a.ptr(), hidden);
    };
    const bench::Stats dense_t = time_side(run_dense, cfg.min_seconds);
    r.dense_repeats = dense_t.runs;
    r.dense_us_per_token = dense_t.median * 1e6 / static_cast<double>(B * L);
  }
  r.speedup = r.dense_us_per_token / r.fff_us_per_token;
  r.fff_flops_per_token = neuron_fff_flops_per_row(fc);
  r.dense_flops_per_token = dense_ff_flops_per_row({d, cfg.dense_width, d, Activation::gelu});
  // Weights a token reads: in + out weights and a bias per path node; the dense FF reads them all.
  r.fff_bytes_per_token = static_cast<double>(fc.path_length()) *
                          ((cfg.half_weights ? 2.0 : 4.0) * static_cast<double>(2 * d) + 4.0);
  r.dense_bytes_per_token = 4.0 * static_cast<double>(cfg.dense_width * (2 * d + 1) + d);
  r.fff_gflops = r.fff_flops_per_token / r.fff_us_per_token * 1e-3;
  r.dense_gflops = r.dense_flops_per_token / r.dense_us_per_token * 1e-3;
  return r;
}

}  // namespace fff
