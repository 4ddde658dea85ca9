// Byte-level language model: embedding -> L blocks of [QRNN sequence mixing + feedforward channel
// mixing (dense FF, leaf FFF or neuron FFF), each pre-normalised and residual] -> layer norm ->
// logits over the 256 byte values.
//   tokens: (T, B) time-major   logits: (T * B, 256)
//   block: x += qrnn(ln1(x)); x += ff(ln2(x))
// The QRNN state and convolution history of each block are carried from one segment of T steps
// to the next (truncated backpropagation: gradients stop at segment boundaries).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/layers/embedding.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/layers/layer_norm.h"
#include "fff/layers/qrnn.h"

namespace fff {

struct LmConfig {
  static constexpr int64_t kVocab = 256;
  int64_t dim = 128, layers = 2;
  int64_t window = 2;  // QRNN convolution width
  ScanAlgo scan = ScanAlgo::sequential;
  FFKind mixer = FFKind::leaf_fff;  // the feedforward block of every layer
  int64_t width = 512;              // ff: hidden width; leaf-fff: training width
  int64_t leaf_width = 32;          // leaf-fff: neurons per leaf; depth = log2(width / leaf_width)
  int64_t trees = 1, depth = 6;     // neuron-fff

  int64_t leaf_depth() const;
  // The feedforward block of every layer: dim -> dim, GELU, the mixer's shape.
  FFConfig ff_config() const;
  // Feedforward FLOPs per token at inference (multiply-adds counted as 2), all blocks.
  double ff_inference_flops() const;
};

struct LmBlock {
  LayerNorm ln1, ln2;
  Qrnn qrnn;
  std::unique_ptr<FFBlock> ff;  // parameters named "block<l>.ff.<name>"
};

struct LmModel {
  LmConfig cfg;
  Embedding embed;
  std::vector<LmBlock> blocks;
  LayerNorm ln_out;
  Param out_w, out_b;  // (dim, 256), (256)
  std::vector<Param*> params();
};

LmModel make_lm(const LmConfig& cfg, Rng& rng);

// The recurrent state carried between segments: per block the QRNN state (B, dim) and the last
// window - 1 QRNN inputs (window - 1, B, dim). Empty means zeros.
struct LmState {
  int64_t batch = 0;
  std::vector<Tensor> h, history;
  void reset(const LmModel& m, int64_t B);
};

struct LmBlockContext {
  Tensor u1, q, u2, f;  // (T * B, dim): ln1 output, QRNN output, ln2 output, mixer output
  Tensor h0, history;   // the carried state the segment started from
  LayerNormContext ln1, ln2;
  QrnnContext qrnn;
  std::unique_ptr<FFCache> ff;  // the feedforward block's training state
  bool ff_prepared = false;     // inference weights prepared (leaf FFF packs them) for this context
};

struct LmContext {
  int64_t T = 0, B = 0;
  std::vector<LmBlockContext> blocks;
  Tensor u_out;  // (T * B, dim) the final layer norm's output
  LayerNormContext ln_out;
};

// The first inference forward with a cache (LmContext) prepares the blocks' inference weights
// (leaf FFF packs them): use a fresh one after the weights change. train: leaf FFF runs its training
// mixture (else hard inference, as deployed), with hardened (0/1) node decisions if `hardened`; the
// other mixers are the same either way. Updates state to the end of the segment. Returns the mean
// node entropy of the leaf FFF blocks (0 for other mixers), the hardening loss before its weight.
double lm_forward(Context& ctx, LmModel& m, const int32_t* tokens, int64_t T, int64_t B,
                  LmState& state, bool train, float* logits, LmContext& cache,
                  bool hardened = false);
// Gradients of every parameter (overwritten) for d(loss)/d(logits) = dlogits, after a training
// forward of the same segment; hardening is the weight of the leaf FFF entropy loss.
void lm_backward(Context& ctx, LmModel& m, const int32_t* tokens, const float* dlogits,
                 float hardening, LmContext& cache);

}  // namespace fff
