// A named trainable parameter with its gradient, as seen by optimizers and model files.
#pragma once

#include <string>
#include <vector>

#include "fff/core/common.h"

namespace fff {

struct Param {
  std::string name;
  Tensor value;
  Tensor grad;
  // Row-sparse gradients (neuron FFF): when sparse is true, only the rows listed in touched_rows
  // hold this step's gradient (other rows of grad are stale) and optimizers update only those
  // rows, so a step costs O(rows touched), not O(tree size).
  bool sparse = false;
  std::vector<int32_t> touched_rows;

  Param() = default;
  Param(std::string name_, std::vector<int64_t> shape, bool sparse_ = false)
      : name(std::move(name_)), value(shape), grad(shape), sparse(sparse_) {}
  int64_t row_size() const { return value.shape.empty() ? 1 : value.size() / value.shape[0]; }
};

}  // namespace fff
