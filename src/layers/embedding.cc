// Token embedding table, forward and backward.
#include "fff/layers/embedding.h"

#include <algorithm>
#include <string>

namespace fff {

Embedding make_embedding(int64_t vocab, int64_t dim, Rng& rng) {
  if (vocab <= 0 || dim <= 0) throw Error("embedding needs a positive vocabulary and width");
  Embedding m{vocab, dim, Param("embedding", {vocab, dim})};
  for (float& v : m.table.value.data) v = rng.normal();
  return m;
}

void embedding_forward(const Embedding& m, const int32_t* tokens, int64_t N, float* y) {
  for (int64_t r = 0; r < N; ++r) {
    if (tokens[r] < 0 || tokens[r] >= m.vocab)
      throw Error("embedding: token " + std::to_string(tokens[r]) + " outside [0, " +
                  std::to_string(m.vocab) + ")");
    std::copy_n(m.table.value.row(tokens[r]), m.dim, y + r * m.dim);
  }
}

void embedding_backward(Embedding& m, const int32_t* tokens, int64_t N, const float* dy) {
  m.table.grad.zero();
  for (int64_t r = 0; r < N; ++r) {
    float* g = m.table.grad.row(tokens[r]);
    for (int64_t j = 0; j < m.dim; ++j) g[j] += dy[r * m.dim + j];
  }
}

}  // namespace fff
