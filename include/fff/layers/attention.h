// Multi-head self-attention of an encoder at inference (crammedBERT's packed layout).
//   qkv: (B*S, 3*heads*hd)  token rows; head h's q, k, v are the hd floats at h*3*hd, +hd, +2*hd
//   key_bias: (B, S) or null  added to every score against that key (-10000 masks padding)
//   out: (B*S, heads*hd)      head h's output in columns h*hd .. h*hd + hd
// scores = q k^T / sqrt(hd) + key_bias;  probs = softmax over keys;  out = probs v
// naive reference: fff/testing/layers.h
#pragma once

#include <cstdint>

#include "fff/core/context.h"

namespace fff {

struct AttentionShape {
  int64_t batch = 1, seq = 1, heads = 1, head_dim = 1;
  int64_t width() const { return heads * head_dim; }
};

// Two products per (sequence, head) through sgemm, the softmax fused per score row in between;
// (sequence, head) pairs are spread over threads, each result depends only on its pair.
void self_attention(Context& ctx, const AttentionShape& s, const float* qkv, const float* key_bias,
                    float* out);

// The additive key bias of a padding mask: 0 where mask is non-zero, -10000 where it is zero
// (the constant crammedBERT and HuggingFace BERT use, not -inf, so fully padded rows stay finite).
void attention_key_bias(const uint8_t* mask, int64_t n, float* bias);

}  // namespace fff
