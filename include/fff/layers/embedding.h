// Token embedding table.
//   tokens: (N) in [0, vocab)   table: (vocab, d)   y: (N, d),  y[r] = table[tokens[r]]
// Backward overwrites the table's gradient (rows of tokens not in the batch become zero).
#pragma once

#include <cstdint>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/param.h"

namespace fff {

// Embedding: a table of vocab rows of d floats, initialised normal(0, 1).
struct Embedding {
  int64_t vocab = 0, dim = 0;
  Param table;
  std::vector<Param*> params() { return {&table}; }
};

Embedding make_embedding(int64_t vocab, int64_t dim, Rng& rng);
// Throws fff::Error on a token outside [0, vocab).
void embedding_forward(const Embedding& m, const int32_t* tokens, int64_t N, float* y);
void embedding_backward(Embedding& m, const int32_t* tokens, int64_t N, const float* dy);

}  // namespace fff
