// Internal header: the shape check that self_attention and its reference (src/testing/layers.cc)
// share.
#pragma once

#include "fff/layers/attention.h"

namespace fff {

// Throws fff::Error naming the shape unless batch, seq >= 0 and heads, head_dim > 0.
void check_shape(const AttentionShape& s);

}  // namespace fff
