// Elementwise activations phi: ReLU, GELU (exact erf form) and identity, with derivatives.
#pragma once

#include <cstdint>
#include <string>

#include "fff/core/context.h"

namespace fff {

enum class Activation { relu, gelu, identity };

// "relu" | "gelu" | "identity"; throws fff::Error naming the accepted values otherwise.
Activation parse_activation(const std::string& name);
const char* activation_name(Activation a);

float activate(Activation a, float z);
// d phi / dz at z. ReLU'(0) = 0.
float activate_grad(Activation a, float z);

// a[i] = phi(z[i]) for i < n. a may alias z. GELU here uses a vectorised erf within 2e-7 of
// activate()'s.
void activation_forward(Context& ctx, Activation act, const float* z, float* a, int64_t n);
// dz[i] = da[i] * phi'(z[i]) (overwrites dz; dz may alias da).
void activation_backward(Activation act, const float* z, const float* da, float* dz, int64_t n);

}  // namespace fff
