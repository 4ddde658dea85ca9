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

NeuronFFFWeights weights_of(const NeuronFFF& m) {
  return {m.w1.value.ptr(), m.b1.value.ptr(), m.w2.value.ptr(),
          m.cfg.output_bias ? m.b.value.ptr() : nullptr};
}

NeuronFFFGrads grads_of(NeuronFFF& m) {
  return {m.w1.grad.ptr(), m.b1.grad.ptr(), m.w2.grad.ptr(),
          m.cfg.output_bias ? m.b.grad.ptr() : nullptr};
}

void neuron_fff_forward(Context& ctx, const NeuronFFFConfig& c, const NeuronFFFWeights& w,
                        const float* x, int64_t B, float* y, NeuronFFFContext* cache) {
  CallScope scope(ctx);
  const int64_t per_tree = c.nodes_per_tree(), P = c.path_length();
  if (cache) {
    cache->node.resize(static_cast<size_t>(B * P));
    cache->z.resize(static_cast<size_t>(B * P));
  }
  parallel_for(ctx, B, [&](int64_t r) {
    const float* xr = x + r * c.in;
    float* yr = y + r * c.out;
    if (c.output_bias)
      std::copy_n(w.b, c.out, yr);
    else
      std::fill_n(yr, c.out, 0.0f);
    for (int64_t t = 0; t < c.trees; ++t) {
      int64_t node = 0;
      for (int64_t level = 0; level <= c.depth; ++level) {
        const int64_t idx = t * per_tree + node;
        const float z = cpu::dot(w.w1 + idx * c.in, xr, c.in) + w.b1[idx];
        const float a = activate(c.act, z);
        if (a != 0.0f) cpu::axpy(a, w.w2 + idx * c.out, yr, c.out);
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

void neuron_fff_backward(Context& ctx, const NeuronFFFConfig& c, const NeuronFFFWeights& w,
                         const NeuronFFFGrads& g, const float* x, int64_t B, const float* dy,
                         const NeuronFFFContext& cache, float* dx, std::vector<int32_t>& touched) {
  CallScope scope(ctx);
  const int64_t P = c.path_length(), slots = B * P;
  // dz for every visited (row, node) slot.
  std::vector<float> dz(static_cast<size_t>(slots));
  parallel_for(ctx, slots, [&](int64_t s) {
    const int64_t r = s / P;
    const float da = cpu::dot(w.w2 + cache.node[s] * c.out, dy + r * c.out, c.out);
    dz[s] = da * activate_grad(c.act, cache.z[s]);
  });
  if (dx) {
    parallel_for(ctx, B, [&](int64_t r) {
      float* dxr = dx + r * c.in;
      std::fill_n(dxr, c.in, 0.0f);
      for (int64_t s = r * P; s < (r + 1) * P; ++s)
        if (dz[s] != 0.0f) cpu::axpy(dz[s], w.w1 + cache.node[s] * c.in, dxr, c.in);
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
  touched.resize(static_cast<size_t>(groups));
  // Groups differ much in size: threads take 16 at a time as they become free.
  parallel_for_dynamic(ctx, groups, 16, [&](int64_t k) {
    const int32_t node = cache.node[order[group_start[k]]];
    touched[k] = node;
    float* gw1 = g.w1 + node * c.in;
    float* gw2 = g.w2 + node * c.out;
    float gb1 = 0.0f;
    std::fill_n(gw1, c.in, 0.0f);
    std::fill_n(gw2, c.out, 0.0f);
    for (int64_t i = group_start[k]; i < group_start[k + 1]; ++i) {
      const int32_t s = order[i];
      const int64_t r = s / P;
      const float a = activate(c.act, cache.z[s]);
      if (a != 0.0f) cpu::axpy(a, dy + r * c.out, gw2, c.out);
      if (dz[s] != 0.0f) cpu::axpy(dz[s], x + r * c.in, gw1, c.in);
      gb1 += dz[s];
    }
    g.b1[node] = gb1;
  });
  if (c.output_bias) column_sums(dy, B, c.out, g.b);
}

void neuron_fff_backward(Context& ctx, NeuronFFF& m, const float* x, int64_t B, const float* dy,
                         const NeuronFFFContext& cache, float* dx) {
  std::vector<int32_t> touched;
  neuron_fff_backward(ctx, m.cfg, weights_of(m), grads_of(m), x, B, dy, cache, dx, touched);
  m.w1.touched_rows = touched;
  m.b1.touched_rows = touched;
  m.w2.touched_rows = std::move(touched);
}

double neuron_fff_flops_per_row(const NeuronFFFConfig& cfg) {
  return 2.0 * static_cast<double>(cfg.path_length() * (cfg.in + cfg.out));
}

}  // namespace fff
