// Naive references of the feedforward layers in fff/layers/ff/ (dense FF, leaf FFF, neuron FFF):
// loops accumulating in double that the fast paths are tested against. Kept forever, and
// installed so that code built on fff can be tested against them too; slow, not for production
// use.
#pragma once

#include <cstdint>

#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"

namespace fff {

// dense_ff_forward, the products by loops in double (linear_forward_reference).
void dense_ff_forward_reference(const DenseFF& m, const float* x, int64_t B, float* y);

// The soft forward of leaf_fff_forward_train by per-row loops in double, every leaf evaluated:
// the reference.
void leaf_fff_forward_train_reference(const LeafFFF& m, const float* x, int64_t B, float* y,
                                      const LeafTrainMode& mode);

// Hard inference (leaf_fff_infer) by loops in double. leaves (optional, B entries) receives the
// leaf index reached by each row.
void leaf_fff_infer_reference(const LeafFFF& m, const float* x, int64_t B, float* y,
                              int32_t* leaves);

// neuron_fff_forward by loops in double. nodes (optional, (B, K*(D+1))) receives the global node
// index visited at every level of every tree, as NeuronFFFContext::node does.
void neuron_fff_forward_reference(const NeuronFFF& m, const float* x, int64_t B, float* y,
                                  int32_t* nodes);

}  // namespace fff
