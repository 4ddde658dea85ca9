// Neuron FFF: hard-path forward/backward touching only path neurons (the naive reference is in
// src/testing/ff.cc).
#include "fff/layers/ff/neuron_fff.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/parallel.h"
#include "cpu/vec_kernels.h"
#include "fff/layers/linear.h"

namespace fff {

std::vector<Param*> NeuronFFF::params() {
  std::vector<Param*> ps = {&w1, &b1, &w2};
  if (cfg.output_bias) ps.push_back(&b);
  return ps;
}

NeuronFFF make_neuron_fff(const NeuronFFFConfig& cfg, Rng& rng) {
  if (cfg.in <= 0 || cfg.out <= 0 || cfg.trees <= 0)
    throw Error("neuron FFF needs positive in, out and trees");
  if (cfg.depth < 0 || cfg.depth > 24) throw Error("neuron FFF depth must be in [0, 24]");
  const int64_t n = cfg.n_nodes();
  NeuronFFF m{cfg, Param("w1", {n, cfg.in}, true), Param("b1", {n}, true),
              Param("w2", {n, cfg.out}, true), Param("b", {cfg.output_bias ? cfg.out : 0})};
  const float k_in = 1.0f / std::sqrt(static_cast<float>(cfg.in));
  const float k_out = 1.0f / std::sqrt(static_cast<float>(cfg.path_length()));
  fill_uniform(m.w1.value, k_in, rng);
  fill_uniform(m.b1.value, k_in, rng);
  fill_uniform(m.w2.value, k_out, rng);
  fill_uniform(m.b.value, k_out, rng);
  return m;
}

void neuron_fff_forward(Context& ctx, const NeuronFFF& m, const float* x, int64_t B, float* y,
                        NeuronFFFContext* cache) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t per_tree = c.nodes_per_tree(), P = c.path_length();
  if (cache) {
    cache->node.resize(static_cast<size_t>(B * P));
    cache->z.resize(static_cast<size_t>(B * P));
  }
  parallel_for(ctx, B, [&](int64_t r) {
    const float* xr = x + r * c.in;
    float* yr = y + r * c.out;
    if (c.output_bias)
      std::copy_n(m.b.value.ptr(), c.out, yr);
    else
      std::fill_n(yr, c.out, 0.0f);
    for (int64_t t = 0; t < c.trees; ++t) {
      int64_t node = 0;
      for (int64_t level = 0; level <= c.depth; ++level) {
        const int64_t idx = t * per_tree + node;
        const float z = cpu::dot(m.w1.value.row(idx), xr, c.in) + m.b1.value.data[idx];
        const float a = activate(c.act, z);
        if (a != 0.0f) cpu::axpy(a, m.w2.value.row(idx), yr, c.out);
        if (cache) {
          const int64_t slot = r * P + t * (c.depth + 1) + level;
          cache->node[slot] = static_cast<int32_t>(idx);
          cache->z[slot] = z;
        }
        node = 2 * node + 1 + (z > 0.0f ? 1 : 0);
      }
    }
  });
}

void neuron_fff_backward(Context& ctx, NeuronFFF& m, const float* x, int64_t B, const float* dy,
                         const NeuronFFFContext& cache, float* dx) {
  CallScope scope(ctx);
  const auto& c = m.cfg;
  const int64_t P = c.path_length(), slots = B * P;
  // dz for every visited (row, node) slot.
  std::vector<float> dz(static_cast<size_t>(slots));
  parallel_for(ctx, slots, [&](int64_t s) {
    const int64_t r = s / P;
    const float da = cpu::dot(m.w2.value.row(cache.node[s]), dy + r * c.out, c.out);
    dz[s] = da * activate_grad(c.act, cache.z[s]);
  });
  if (dx) {
    parallel_for(ctx, B, [&](int64_t r) {
      float* dxr = dx + r * c.in;
      std::fill_n(dxr, c.in, 0.0f);
      for (int64_t s = r * P; s < (r + 1) * P; ++s)
        if (dz[s] != 0.0f) cpu::axpy(dz[s], m.w1.value.row(cache.node[s]), dxr, c.in);
    });
  }
  // Group slots by node (stable: row order kept) so each node's gradient row is summed by one
  // thread in a fixed order: results do not depend on the thread count.
  std::vector<int32_t> order(static_cast<size_t>(slots));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return cache.node[a] < cache.node[b]; });
  std::vector<int64_t> group_start;
  for (int64_t i = 0; i < slots; ++i)
    if (i == 0 || cache.node[order[i]] != cache.node[order[i - 1]]) group_start.push_back(i);
  const int64_t groups = static_cast<int64_t>(group_start.size());
  group_start.push_back(slots);
  std::vector<int32_t> touched(static_cast<size_t>(groups));
  const unsigned mode = fp_mode();
#pragma omp parallel num_threads(ctx.threads) if (ctx.threads > 1 && groups > 1)
  {
    FpModeGuard guard(mode);
#pragma omp for schedule(dynamic, 16)
    for (int64_t g = 0; g < groups; ++g) {
      const int32_t node = cache.node[order[group_start[g]]];
      touched[g] = node;
      float* gw1 = m.w1.grad.row(node);
      float* gw2 = m.w2.grad.row(node);
      float gb1 = 0.0f;
      std::fill_n(gw1, c.in, 0.0f);
      std::fill_n(gw2, c.out, 0.0f);
      for (int64_t i = group_start[g]; i < group_start[g + 1]; ++i) {
        const int32_t s = order[i];
        const int64_t r = s / P;
        const float a = activate(c.act, cache.z[s]);
        if (a != 0.0f) cpu::axpy(a, dy + r * c.out, gw2, c.out);
        if (dz[s] != 0.0f) cpu::axpy(dz[s], x + r * c.in, gw1, c.in);
        gb1 += dz[s];
      }
      m.b1.grad.data[node] = gb1;
    }
  }
  m.w1.touched_rows = touched;
  m.b1.touched_rows = touched;
  m.w2.touched_rows = std::move(touched);
  if (c.output_bias) column_sums(dy, B, c.out, m.b.grad.ptr());
}

double neuron_fff_flops_per_row(const NeuronFFFConfig& cfg) {
  return 2.0 * static_cast<double>(cfg.path_length() * (cfg.in + cfg.out));
}

}  // namespace fff
