// Naive references of the feedforward layers (fff/testing/ff.h): dense FF, leaf FFF and neuron
// FFF by loops in double.
#include "fff/testing/ff.h"

#include <cmath>
#include <vector>

#include "fff/layers/activation.h"
#include "fff/testing/layers.h"

namespace fff {

void dense_ff_forward_reference(const DenseFF& m, const float* x, int64_t B, float* y) {
  const auto& c = m.cfg;
  Tensor h({B, c.width});
  const float* b1 = c.bias ? m.b1.value.ptr() : nullptr;
  const float* b2 = c.bias ? m.b2.value.ptr() : nullptr;
  linear_forward_reference(x, B, c.in, c.width, m.w1.value.ptr(), b1, h.ptr());
  for (float& v : h.data) v = activate(c.act, v);
  linear_forward_reference(h.ptr(), B, c.width, c.out, m.w2.value.ptr(), b2, y);
}

namespace {

// N_i x + c_i in double.
double node_logit_reference(const LeafFFF& m, const float* xr, int64_t i) {
  double z = m.nodes_b.value.data[i];
  for (int64_t k = 0; k < m.cfg.in; ++k)
    z += static_cast<double>(m.nodes_w.value.row(i)[k]) * xr[k];
  return z;
}

// phi(x W1_j + b1_j) W2_j + b2_j for one row, in double.
std::vector<double> leaf_output_reference(const LeafFFF& m, const float* xr, int64_t j) {
  const auto& c = m.cfg;
  const int64_t W = c.training_width(), lw = c.leaf_width;
  std::vector<double> y(m.b2.value.row(j), m.b2.value.row(j) + c.out);
  for (int64_t k = 0; k < lw; ++k) {
    const int64_t col = j * lw + k;
    double zh = m.b1.value.data[col];
    for (int64_t t = 0; t < c.in; ++t)
      zh += static_cast<double>(xr[t]) * m.w1.value.data[t * W + col];
    const double a = activate(c.act, static_cast<float>(zh));
    for (int64_t o = 0; o < c.out; ++o) y[o] += a * m.w2.value.row(col)[o];
  }
  return y;
}

}  // namespace

void leaf_fff_forward_train_reference(const LeafFFF& m, const float* x, int64_t B, float* y,
                                      const LeafTrainMode& mode) {
  const auto& c = m.cfg;
  const int64_t n = c.n_nodes(), L = c.n_leaves();
  for (int64_t r = 0; r < B; ++r) {
    const float* xr = x + r * c.in;
    std::vector<double> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double z = node_logit_reference(m, xr, i);
      double q = mode.hardened ? (z >= 0.0 ? 1.0 : 0.0) : 1.0 / (1.0 + std::exp(-z));
      if (mode.flips && (*mode.flips)[r * n + i]) q = 1.0 - q;
      p[i] = q;
    }
    std::vector<double> out(static_cast<size_t>(c.out), 0.0);
    for (int64_t j = 0; j < L; ++j) {
      // Leaf j sits at heap position n + j; walk up to the root multiplying the turns.
      double mix = 1.0;
      for (int64_t pos = n + j; pos > 0; pos = (pos - 1) / 2) {
        const int64_t parent = (pos - 1) / 2;
        mix *= (pos == 2 * parent + 2) ? p[parent] : 1.0 - p[parent];
      }
      const std::vector<double> leaf_y = leaf_output_reference(m, xr, j);
      for (int64_t o = 0; o < c.out; ++o) out[o] += mix * leaf_y[o];
    }
    for (int64_t o = 0; o < c.out; ++o) y[r * c.out + o] = static_cast<float>(out[o]);
  }
}

void leaf_fff_infer_reference(const LeafFFF& m, const float* x, int64_t B, float* y,
                              int32_t* leaves) {
  const auto& c = m.cfg;
  const int64_t n = c.n_nodes();
  for (int64_t r = 0; r < B; ++r) {
    const float* xr = x + r * c.in;
    int64_t node = 0;
    while (node < n) {
      node = 2 * node + 1 + (node_logit_reference(m, xr, node) >= 0.0 ? 1 : 0);
    }
    const int64_t j = node - n;
    if (leaves) leaves[r] = static_cast<int32_t>(j);
    const std::vector<double> leaf_y = leaf_output_reference(m, xr, j);
    for (int64_t o = 0; o < c.out; ++o) y[r * c.out + o] = static_cast<float>(leaf_y[o]);
  }
}

void neuron_fff_forward_reference(const NeuronFFF& m, const float* x, int64_t B, float* y,
                                  int32_t* nodes) {
  const auto& c = m.cfg;
  const int64_t per_tree = c.nodes_per_tree();
  for (int64_t r = 0; r < B; ++r) {
    const float* xr = x + r * c.in;
    std::vector<double> acc(static_cast<size_t>(c.out), 0.0);
    if (c.output_bias)
      for (int64_t o = 0; o < c.out; ++o) acc[o] = m.b.value.data[o];
    for (int64_t t = 0; t < c.trees; ++t) {
      int64_t node = 0;
      for (int64_t level = 0; level <= c.depth; ++level) {
        const int64_t idx = t * per_tree + node;
        double z = m.b1.value.data[idx];
        for (int64_t k = 0; k < c.in; ++k) z += static_cast<double>(m.w1.value.row(idx)[k]) * xr[k];
        const double a = activate(c.act, static_cast<float>(z));
        for (int64_t o = 0; o < c.out; ++o) acc[o] += a * m.w2.value.row(idx)[o];
        if (nodes)
          nodes[r * c.path_length() + t * (c.depth + 1) + level] = static_cast<int32_t>(idx);
        node = 2 * node + 1 + (z > 0.0 ? 1 : 0);
      }
    }
    for (int64_t o = 0; o < c.out; ++o) y[r * c.out + o] = static_cast<float>(acc[o]);
  }
}

}  // namespace fff
