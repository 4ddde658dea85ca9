// Multi-head self-attention at inference: per (sequence, head), scores by sgemm, fused masked
// softmax per row, then the weighted sum of values by sgemm.
#include "fff/layers/attention.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "cpu/elementwise_kernels.h"
#include "fff/core/common.h"
#include "fff/cpu/gemm.h"
#include "layers/attention_shape.h"

namespace fff {

void check_shape(const AttentionShape& s) {
  if (s.batch < 0 || s.seq < 0 || s.heads <= 0 || s.head_dim <= 0)
    throw Error("self_attention: bad shape (batch " + std::to_string(s.batch) + ", seq " +
                std::to_string(s.seq) + ", heads " + std::to_string(s.heads) + ", head_dim " +
                std::to_string(s.head_dim) + ")");
}

void attention_key_bias(const uint8_t* mask, int64_t n, float* bias) {
  for (int64_t i = 0; i < n; ++i) bias[i] = mask[i] ? 0.0f : -10000.0f;
}

void self_attention(Context& ctx, const AttentionShape& s, const float* qkv, const float* key_bias,
                    float* out) {
  check_shape(s);
  CallScope scope(ctx);
  const int64_t S = s.seq, hd = s.head_dim, H = s.width(), ld_qkv = 3 * H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t pairs = s.batch * s.heads;
  parallel_region(ctx, static_cast<int>(std::min<int64_t>(pairs, ctx.threads)), [&](Team& team) {
    std::vector<float> scores(static_cast<size_t>(S * S));
    const Range mine = static_range(pairs, team.id(), team.size());
    for (int64_t p = mine.begin; p < mine.end; ++p) {
      const int64_t b = p / s.heads, h = p % s.heads;
      const float* q = qkv + b * S * ld_qkv + h * 3 * hd;
      const float* k = q + hd;
      const float* v = q + 2 * hd;
      gemm(ctx, false, true, S, S, hd, scale, q, ld_qkv, k, ld_qkv, 0.0f, scores.data(), S);
      const float* bias = key_bias ? key_bias + b * S : nullptr;
      for (int64_t i = 0; i < S; ++i) cpu::softmax_inplace(scores.data() + i * S, bias, S);
      gemm(ctx, false, false, S, hd, S, 1.0f, scores.data(), S, v, ld_qkv, 0.0f,
           out + b * S * H + h * hd, H);
    }
  });
}

}  // namespace fff
