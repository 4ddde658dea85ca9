// Leaf FFF (Belcak & Wattenhofer 2023): a binary tree of node neurons routing each input to one
// of 2^depth small leaf feedforward blocks.
//   x: (B, in)   nodes_w: (n_nodes, in)   nodes_b: (n_nodes)        n_nodes = 2^depth - 1
//   w1: (in, L*leaf_width), column block j is leaf j's W1_j          L = 2^depth
//   b1: (L*leaf_width)   w2: (L*leaf_width, out), row block j is W2_j   b2: (L, out)
//   y: (B, out)
// Training forward (soft): y = sum_j m_j (phi(x W1_j + b1_j) W2_j + b2_j), with m_j the product
// of p_i (right turn) or 1 - p_i (left turn) along leaf j's path, p_i = sigmoid(N_i x + c_i),
// optionally with region leak (p_i -> 1 - p_i per sample and node) or hardened decisions
// (p_i = [N_i x + c_i >= 0], nodes then get no gradient). The hardening loss is
// h * mean over (sample, node) of the entropy of p_i (the mean, as in the reference notebook).
// The optional balance loss is b * (L * sum_j M_j^2 - 1), M_j the batch's mean mass of leaf j:
// 0 when the batch spreads evenly over the leaves, L - 1 when it all goes to one (soft mode).
// Hard inference: go right iff N_i x + c_i >= 0, y = phi(x W1_j + b1_j) W2_j + b2_j.
// Backward overwrites every gradient and, if non-null, dx.
// naive reference: fff/testing/ff.h
#pragma once

#include <cstdint>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/layers/activation.h"

namespace fff {

struct LeafFFFConfig {
  int64_t in = 0, out = 0, depth = 0, leaf_width = 0;
  Activation act = Activation::relu;

  int64_t n_nodes() const { return (int64_t{1} << depth) - 1; }
  int64_t n_leaves() const { return int64_t{1} << depth; }
  int64_t training_width() const { return n_leaves() * leaf_width; }
};

struct LeafFFF {
  LeafFFFConfig cfg;
  Param nodes_w, nodes_b, w1, b1, w2, b2;
  std::vector<Param*> params() { return {&nodes_w, &nodes_b, &w1, &b1, &w2, &b2}; }
};

// Reference initialisation: uniform +-1/sqrt(in), except W2, b2 uniform +-1/sqrt(leaf_width).
LeafFFF make_leaf_fff(const LeafFFFConfig& cfg, Rng& rng);

struct LeafTrainMode {
  bool hardened = false;                        // round decisions to {0, 1}
  const std::vector<uint8_t>* flips = nullptr;  // (B, n_nodes) region-leak flips, or none
  // Weight b of the balance loss; its gradient reaches the nodes in backward (soft mode only:
  // hardened decisions give the nodes no gradient).
  float balance = 0.0f;
};

// Region leak: each (sample, node) flips with probability rate. Returns B * n_nodes flags.
std::vector<uint8_t> sample_region_leak(int64_t B, int64_t n_nodes, float rate, Rng& rng);

struct LeafFFFContext {
  Tensor wc, bc;  // (in, W + n), (W + n): [W1 | nodes_w^T] and [b1 | nodes_b]
  Tensor zc;      // (B, W + n): leaf hidden pre-activations, then node logits
  Tensor q;       // (B, n_nodes) sigmoid of the node logits
  Tensor p;       // (B, n_nodes) decision probabilities used (after leak / hardening)
  Tensor mass;    // (B, 2L - 1) path probability of every tree position; leaves are the last L
  Tensor h;       // (B, W) leaf hidden activations, W = L * leaf_width
  Tensor g;       // (B, W) h scaled by its leaf's m_j
  Tensor dzc, dwc, dbc, dm;  // backward scratch, kept to avoid reallocating every step
  LeafTrainMode mode;
  std::vector<double> leaf_mass_mean;  // (L) M_j of the last soft forward
  double balance_loss = 0.0;           // L * sum_j M_j^2 - 1 of the last soft forward
  std::vector<uint8_t> flips;
  // Hardened training runs each row through its own leaf only (1/L of the soft mixture's work):
  // rows grouped by leaf, leaf j's rows order[leaf_begin[j] .. leaf_begin[j + 1]). Then zc
  // holds (B, leaf_width) grouped pre-activations, h their activations, q the node logits, p
  // their entropies and mass their sigmoids (B, n_nodes).
  std::vector<int64_t> order, leaf_begin;
  Tensor xg;  // (B, in) x's rows in that order
};

// The parameters by pointer, row-major in the shapes above: what the training and packing
// functions read and write, so that storage other than a Param (PyTorch's tensors, in the Python
// binding) is used in place.
struct LeafFFFWeights {
  const float *nodes_w, *nodes_b, *w1, *b1, *w2, *b2;
};
struct LeafFFFGrads {
  float *nodes_w, *nodes_b, *w1, *b1, *w2, *b2;
};
LeafFFFWeights weights_of(const LeafFFF& m);
LeafFFFGrads grads_of(LeafFFF& m);

// Returns the mean node entropy (the hardening loss before the weight h).
// cache keeps what backward needs. With mode.hardened each row computes only the leaf its
// decisions pick (the same function as the mixture with 0/1 masses, up to summation order).
double leaf_fff_forward_train(Context& ctx, const LeafFFFConfig& cfg, const LeafFFFWeights& w,
                              const float* x, int64_t B, float* y, const LeafTrainMode& mode,
                              LeafFFFContext& cache);
// hardening: the weight h of the mean entropy in the loss. Overwrites every gradient in g.
void leaf_fff_backward_train(Context& ctx, const LeafFFFConfig& cfg, const LeafFFFWeights& w,
                             const LeafFFFGrads& g, const float* x, int64_t B, const float* dy,
                             float hardening, LeafFFFContext& cache, float* dx);

inline double leaf_fff_forward_train(Context& ctx, const LeafFFF& m, const float* x, int64_t B,
                                     float* y, const LeafTrainMode& mode, LeafFFFContext& cache) {
  return leaf_fff_forward_train(ctx, m.cfg, weights_of(m), x, B, y, mode, cache);
}
inline void leaf_fff_backward_train(Context& ctx, LeafFFF& m, const float* x, int64_t B,
                                    const float* dy, float hardening, LeafFFFContext& cache,
                                    float* dx) {
  leaf_fff_backward_train(ctx, m.cfg, weights_of(m), grads_of(m), x, B, dy, hardening, cache, dx);
}

// Weights laid out for hard inference: W1 transposed so each leaf neuron's input weights are one
// contiguous row. Build once, run many batches.
// The tree is walked two levels per pass over the inputs: node_blocks holds, for every node k
// at an even level, the rows [N_k, N_2k+1, N_2k+2] (children left out on the last level), so one
// pass computes a node and both its children and decides two levels.
struct LeafFFFPacked {
  LeafFFFConfig cfg;
  Tensor node_blocks;              // (n_nodes, in), in the block order above
  std::vector<int64_t> block_row;  // node k at an even level -> its first row in node_blocks
  Tensor nodes_b;
  Tensor w1t;  // (L*leaf_width, in)
  Tensor b1, w2, b2;
};
LeafFFFPacked pack_leaf_fff(const LeafFFFConfig& cfg, const LeafFFFWeights& w);
inline LeafFFFPacked pack_leaf_fff(const LeafFFF& m) {
  return pack_leaf_fff(m.cfg, weights_of(m));
}

// Hard inference. leaves (optional, B entries) receives the leaf index reached by each row;
// path_logits (optional, (B, depth)) the logit N_i x + c_i of each node on the row's path, root
// first (the node at level l is 2^l - 1 + (leaf >> (depth - l))), as the decisions were taken.
// Rows are independent, so results do not depend on the thread count.
void leaf_fff_infer(Context& ctx, const LeafFFFPacked& m, const float* x, int64_t B, float* y,
                    int32_t* leaves, float* path_logits = nullptr);
void leaf_fff_infer(Context& ctx, const LeafFFF& m, const float* x, int64_t B, float* y,
                    int32_t* leaves, float* path_logits = nullptr);

// Forward FLOPs of one row at inference: depth node dot products plus one leaf block.
double leaf_fff_inference_flops_per_row(const LeafFFFConfig& cfg);

// Entropy of a decision probability, with p clamped to [1e-6, 1 - 1e-6].
double binary_entropy(double p);

}  // namespace fff
