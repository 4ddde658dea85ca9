// Side-by-side timing of a model's hard inference against a dense FF of the same training width,
// in one process: warm-up, repeats, median.
#pragma once

#include "fff/models/classifier.h"

namespace fff {

struct InferenceComparison {
  int64_t rows = 0;
  int64_t dense_width = 0;
  int repeats = 0;
  double model_us_per_row = 0.0;  // median over repeats
  double dense_us_per_row = 0.0;  // median over repeats
  double speedup = 0.0;           // dense / model
  double model_flops_per_row = 0.0;
  double dense_flops_per_row = 0.0;
};

// Times model.predict and a randomly initialised dense FF (hidden width = the model's training
// width, same activation) on the same rows x (rows, in), alternating the two in each repeat;
// each timed run starts right after a read of x, so both meet the inputs equally warm.
InferenceComparison compare_with_dense(Context& ctx, Model& model, const Tensor& x, int repeats);

}  // namespace fff
