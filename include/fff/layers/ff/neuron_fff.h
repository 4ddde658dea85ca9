// Neuron FFF (UltraFastBERT): K parallel trees of depth D whose nodes are single neurons; each
// input visits one root-to-leaf path (D + 1 nodes) per tree and sums their outputs.
//   x: (B, in)   w1: (K*n, in)   b1: (K*n)   w2: (K*n, out)   b: (out), optional
//   y: (B, out)                                   n = 2^(D+1) - 1 nodes per tree, heap order
// Per tree: node = 0; for each level: z = w1[node] x + b1[node]; y += phi(z) w2[node];
// node = 2 node + 1 + [z > 0]. Training uses the same hard path: only path neurons get
// gradients and the branch choice is not differentiated, so forward and backward cost
// O(K (D + 1) (in + out)) per row whatever the tree width.
// Backward writes gradients only for the rows of w1/b1/w2 on some path of the batch, lists them
// in each Param's touched_rows (the other rows are stale), overwrites the bias gradient, and
// overwrites dx if non-null.
// naive reference: fff/testing/ff.h
#pragma once

#include <cstdint>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/layers/activation.h"

namespace fff {

struct NeuronFFFConfig {
  int64_t in = 0, out = 0, trees = 1, depth = 0;
  Activation act = Activation::gelu;
  bool output_bias = true;

  int64_t nodes_per_tree() const { return (int64_t{2} << depth) - 1; }
  int64_t n_nodes() const { return trees * nodes_per_tree(); }
  int64_t path_length() const { return trees * (depth + 1); }
};

struct NeuronFFF {
  NeuronFFFConfig cfg;
  Param w1, b1, w2, b;  // b has shape (out) and stays zero-sized when !output_bias
  std::vector<Param*> params();
};

// w1, b1 uniform +-1/sqrt(in); w2, b uniform +-1/sqrt(K (D + 1)), the number of neurons one
// input actually uses.
NeuronFFF make_neuron_fff(const NeuronFFFConfig& cfg, Rng& rng);

struct NeuronFFFContext {
  std::vector<int32_t> node;  // (B, K*(D+1)) global node index visited
  std::vector<float> z;       // (B, K*(D+1)) its pre-activation
};

// The parameters by pointer, row-major in the shapes above (b null without an output bias), so
// that storage other than a Param (PyTorch's tensors, in the Python binding) is used in place.
struct NeuronFFFWeights {
  const float *w1, *b1, *w2, *b;
};
struct NeuronFFFGrads {
  float *w1, *b1, *w2, *b;
};
NeuronFFFWeights weights_of(const NeuronFFF& m);
NeuronFFFGrads grads_of(NeuronFFF& m);

// cache (what backward needs) may be null at inference.
void neuron_fff_forward(Context& ctx, const NeuronFFFConfig& cfg, const NeuronFFFWeights& w,
                        const float* x, int64_t B, float* y, NeuronFFFContext* cache);
// touched receives the rows of w1, b1 and w2 whose gradients were written (sorted); the other
// rows of g are left as they were.
void neuron_fff_backward(Context& ctx, const NeuronFFFConfig& cfg, const NeuronFFFWeights& w,
                         const NeuronFFFGrads& g, const float* x, int64_t B, const float* dy,
                         const NeuronFFFContext& cache, float* dx, std::vector<int32_t>& touched);

inline void neuron_fff_forward(Context& ctx, const NeuronFFF& m, const float* x, int64_t B,
                               float* y, NeuronFFFContext* cache) {
  neuron_fff_forward(ctx, m.cfg, weights_of(m), x, B, y, cache);
}
// Sets touched_rows of w1, b1 and w2.
void neuron_fff_backward(Context& ctx, NeuronFFF& m, const float* x, int64_t B, const float* dy,
                         const NeuronFFFContext& cache, float* dx);

double neuron_fff_flops_per_row(const NeuronFFFConfig& cfg);

}  // namespace fff
