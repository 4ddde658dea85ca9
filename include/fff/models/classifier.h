// A classifier built from one FF-family layer (dense FF, leaf FFF or neuron FFF) mapping
// standardised inputs to class logits, behind one small interface; model files.
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

namespace fff {

enum class ModelKind { ff, leaf_fff, neuron_fff };
ModelKind parse_model_kind(const std::string& name);  // "ff" | "fff" | "neuron-fff"
const char* model_kind_name(ModelKind k);

struct ModelConfig {
  ModelKind kind = ModelKind::leaf_fff;
  int64_t in = 0, out = 0;
  Activation act = Activation::relu;
  int64_t width = 0;        // ff: hidden width
  int64_t depth = 0;        // leaf FFF: leaf depth d; neuron FFF: D (D + 1 levels)
  int64_t leaf_width = 0;   // leaf FFF
  int64_t trees = 1;        // neuron FFF
  bool output_bias = true;  // neuron FFF
  Standardization input_norm;

  // Width a dense FF of equal training cost would have: w, 2^d * leaf_width, or K * n nodes.
  int64_t training_width() const;
  // Neurons one input uses at inference.
  int64_t inference_width() const;
  // Leaves (leaf FFF), nodes (neuron FFF) or 1 (ff): what usage is counted over.
  int64_t route_count() const;
  // Throws fff::Error naming the bad field.
  void validate() const;
};

struct TrainStepOptions {
  bool hardened = false;     // leaf FFF: train with hardened decisions
  float region_leak = 0.0f;  // leaf FFF: per (sample, node) flip probability
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return cfg_; }
  virtual std::vector<Param*> params() = 0;

  // Training forward on standardised x (B, in) -> logits (B, out); keeps what backward needs.
  // Returns the mean node entropy (leaf FFF; 0 for the others).
  virtual double forward_train(Context& ctx, const float* x, int64_t B, float* logits,
                               const TrainStepOptions& opt, Rng& rng) = 0;
  // Overwrites every gradient for the last forward_train; hardening is the weight h.
  virtual void backward(Context& ctx, const float* x, int64_t B, const float* dlogits,
                        float hardening) = 0;
  // Call after weights change and before predict.
  virtual void prepare_inference() {}
  // Hard inference. routes, if non-null, receives per row the leaf reached (leaf FFF), or the
  // K*(D+1) nodes visited (neuron FFF); nothing for ff.
  virtual void predict(Context& ctx, const float* x, int64_t B, float* logits,
                       std::vector<int32_t>* routes) = 0;
  // Mean entropy of sigmoid(z) over the decisions inference makes (0 for ff).
  virtual double mean_node_entropy(Context& ctx, const float* x, int64_t B) = 0;

 protected:
  explicit Model(const ModelConfig& cfg) : cfg_(cfg) {}
  ModelConfig cfg_;
};

std::unique_ptr<Model> make_model(const ModelConfig& cfg, Rng& rng);

// Model files: safetensors with the config (and any extra string entries) in "__metadata__".
// Saving is atomic. Loading validates tensor names and shapes against the config and fails
// with an fff::Error naming the file.
void save_model(const std::string& path, Model& model,
                const std::map<std::string, std::string>& extra_metadata = {});
struct LoadedModel {
  std::unique_ptr<Model> model;
  std::map<std::string, std::string> metadata;
};
LoadedModel load_model(const std::string& path);

}  // namespace fff
