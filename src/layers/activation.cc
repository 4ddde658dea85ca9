// Activation functions and their derivatives.
#include "fff/layers/activation.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "cpu/elementwise_kernels.h"
#include "fff/core/common.h"

namespace fff {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "gelu") return Activation::gelu;
  if (name == "identity") return Activation::identity;
  throw Error("unknown activation '" + name + "' (expected relu, gelu or identity)");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::relu:
      return "relu";
    case Activation::gelu:
      return "gelu";
    case Activation::identity:
      return "identity";
  }
  return "?";
}

static constexpr float kInvSqrt2 = 0.70710678118654752f;
static constexpr float kInvSqrt2Pi = 0.39894228040143268f;

float activate(Activation a, float z) {
  switch (a) {
    case Activation::relu:
      return z > 0.0f ? z : 0.0f;
    case Activation::gelu:
      return 0.5f * z * (1.0f + std::erf(z * kInvSqrt2));
    case Activation::identity:
      return z;
  }
  return z;
}

float activate_grad(Activation a, float z) {
  switch (a) {
    case Activation::relu:
      return z > 0.0f ? 1.0f : 0.0f;
    case Activation::gelu:
      return 0.5f * (1.0f + std::erf(z * kInvSqrt2)) + z * kInvSqrt2Pi * std::exp(-0.5f * z * z);
    case Activation::identity:
      return 1.0f;
  }
  return 1.0f;
}

void activation_forward(Context& ctx, Activation act, const float* z, float* a, int64_t n) {
  switch (act) {
    case Activation::relu:
      cpu::relu(z, a, n);  // dispatched: a portable build still gets the CPU's widest SIMD
      return;
    case Activation::gelu:
      // Vectorised erf (|error| < 2e-7): a scalar erf per value costs as much as the products
      // around it in a dense FF. Fixed-size chunks over the threads give the same result for any
      // thread count.
      {
        constexpr int64_t kChunk = 16384;
        const int64_t chunks = (n + kChunk - 1) / kChunk;
        CallScope scope(ctx);
        parallel_for(ctx, chunks, [&](int64_t c) {
          const int64_t lo = c * kChunk;
          cpu::gelu(z + lo, a + lo, std::min(kChunk, n - lo));
        });
      }
      return;
    case Activation::identity:
      if (a != z)
        for (int64_t i = 0; i < n; ++i) a[i] = z[i];
      return;
  }
}

void activation_backward(Activation act, const float* z, const float* da, float* dz, int64_t n) {
  switch (act) {
    case Activation::relu:
      cpu::relu_backward(z, da, dz, n);
      return;
    case Activation::gelu:
      for (int64_t i = 0; i < n; ++i) dz[i] = da[i] * activate_grad(Activation::gelu, z[i]);
      return;
    case Activation::identity:
      if (dz != da)
        for (int64_t i = 0; i < n; ++i) dz[i] = da[i];
      return;
  }
}

}  // namespace fff
