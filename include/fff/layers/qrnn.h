// QRNN layer with f-pooling (Bradbury et al. 2016): gates and candidates from a causal
// convolution of width k over the input, then an elementwise linear recurrence along time,
// computed by one of the scans of fff/cpu/scan.h.
//   x: (T, B, in) time-major      w: (k * in, G * C)   b: (G * C)      G = 3 with an output gate
//   [Z | F | O][t] = sum_{j<k} x[t - j] w[j * in : (j + 1) * in] + b   (x before t = 0: `history`)
//   z = tanh(Z),  f = sigmoid(F) or hard sigmoid clamp(F / 6 + 1/2, 0, 1),  o = sigmoid(O)
//   h[t] = f[t] h[t-1] + (1 - f[t]) z[t],  h[-1] = h0 (or 0)
//   y = o * h with an output gate, else h;  y, h: (T, B, C)
// Backward overwrites dw, db, dx (if non-null) and dh0 (if non-null).
// naive reference: fff/testing/layers.h
#pragma once

#include <cstdint>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/cpu/scan.h"

namespace fff {

struct QrnnConfig {
  int64_t in = 0, channels = 0;
  int64_t window = 1;  // k: the convolution's width in time steps (1: pointwise)
  bool output_gate = true;
  bool hard_sigmoid = false;  // forget gate through the hard sigmoid instead of the logistic
  ScanAlgo scan = ScanAlgo::sequential;

  int64_t gates() const { return output_gate ? 3 : 2; }
};

struct Qrnn {
  QrnnConfig cfg;
  Param w, b;
  std::vector<Param*> params() { return {&w, &b}; }
};

// w uniform +-1/sqrt(k in); b zero except the forget gate's bias, +1 (the state starts by
// remembering).
Qrnn make_qrnn(const QrnnConfig& cfg, Rng& rng);

// What backward needs: the unfolded convolution input, the gate activations and the states.
struct QrnnContext {
  Tensor xu;       // (T * B, k * in) the inputs of each step and the k - 1 before it
  Tensor z, f, o;  // (T, B, C) activations (o empty without an output gate)
  Tensor h;        // (T, B, C) states
  Tensor fpre;     // (T, B, C) forget-gate pre-activation (for the hard sigmoid's derivative)
};

// history: (k - 1, B, in), the inputs before t = 0 (oldest first), or null for zeros.
// h0: (B, C) or null. The next segment of a longer sequence takes cache.h's last step as its h0
// and the last k - 1 inputs as its history.
void qrnn_forward(Context& ctx, const Qrnn& m, const float* x, int64_t T, int64_t B,
                  const float* history, const float* h0, float* y, QrnnContext& cache);
void qrnn_backward(Context& ctx, Qrnn& m, const float* dy, int64_t T, int64_t B, const float* h0,
                   const QrnnContext& cache, float* dx, float* dh0);

}  // namespace fff
