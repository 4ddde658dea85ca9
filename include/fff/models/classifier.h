// A classifier: one feedforward block (dense FF, leaf FFF or neuron FFF) mapping standardised
// inputs to class logits; model files.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/io/data.h"
#include "fff/layers/activation.h"
#include "fff/layers/ff/ff_block.h"

namespace fff {

// The classifier's kinds are the feedforward block's: ff, leaf-fff, neuron-fff.
using ModelKind = FFKind;
inline ModelKind parse_model_kind(const std::string& name) {
  return parse_ff_kind(name);
}
inline const char* model_kind_name(ModelKind k) {
  return ff_kind_name(k);
}

// The block's config (in = features, out = classes) and the inputs' standardisation.
struct ModelConfig : FFConfig {
  Standardization input_norm;

  // Throws fff::Error naming the bad field: the block's fields, out >= 2 classes, and a finite
  // mean with a positive std.
  void validate() const;
};

using TrainStepOptions = FFTrainOptions;

// One feedforward block mapping standardised inputs to class logits.
class Model {
 public:
  Model(const ModelConfig& cfg, Rng& rng);  // a new block, initialised as its kind's header says
  Model(const ModelConfig& cfg, std::unique_ptr<FFBlock> block);  // a block made for cfg
  const ModelConfig& config() const { return cfg_; }
  FFBlock& block() { return *block_; }
  std::vector<Param*> params() { return block_->params(); }

  // Training forward on standardised x (B, in) -> logits (B, out); keeps what backward needs.
  // Returns the mean node entropy (leaf FFF; 0 for the others).
  double forward_train(Context& ctx, const float* x, int64_t B, float* logits,
                       const TrainStepOptions& opt, Rng& rng) {
    return block_->forward_train(ctx, x, B, logits, opt, rng, *cache_);
  }
  // Overwrites every gradient for the last forward_train; hardening is the weight h.
  void backward(Context& ctx, const float* x, int64_t B, const float* dlogits, float hardening) {
    block_->backward(ctx, x, B, dlogits, hardening, *cache_, nullptr);
  }
  // Call after weights change and before predict.
  void prepare_inference() { block_->prepare_inference({}); }
  // Hard inference. routes, if non-null, receives per row the leaf reached (leaf FFF), or the
  // K*(D+1) nodes visited (neuron FFF); nothing for ff.
  void predict(Context& ctx, const float* x, int64_t B, float* logits,
               std::vector<int32_t>* routes) {
    block_->infer(ctx, x, B, logits, routes);
  }
  // The path hard inference takes for each row and the node logits it decides on (FFTrace).
  void trace(Context& ctx, const float* x, int64_t B, FFTrace& t) { block_->trace(ctx, x, B, t); }
  // Mean entropy of sigmoid(z) over the decisions inference makes (0 for ff).
  double mean_node_entropy(Context& ctx, const float* x, int64_t B) {
    return block_->mean_node_entropy(ctx, x, B);
  }

 private:
  ModelConfig cfg_;
  std::unique_ptr<FFBlock> block_;
  std::unique_ptr<FFCache> cache_;
};

std::unique_ptr<Model> make_model(const ModelConfig& cfg, Rng& rng);

// Model files: safetensors with the config (and any extra string entries) in "__metadata__".
// Saving is atomic. Loading validates tensor names, shapes and values against the config and
// fails with an fff::Error naming the file; a loaded model is for inference (its parameters have
// no gradient storage).
void save_model(const std::string& path, Model& model,
                const std::map<std::string, std::string>& extra_metadata = {});
struct LoadedModel {
  std::unique_ptr<Model> model;
  std::map<std::string, std::string> metadata;
};
LoadedModel load_model(const std::string& path);

}  // namespace fff
