// One feedforward block, whatever its kind: dense FF, leaf FFF or neuron FFF behind one small
// interface, used by the classifier, the language model and the encoder.
//   x: (B, in)   y: (B, out)
// FFConfig says which kind and its shape; it owns the kind's names (one spelling everywhere: CLI,
// files, JSON), validation, parameter shapes, widths, FLOPs and its file metadata. FFBlock holds
// the parameters and runs training (forward, backward) and hard inference. The math of each kind
// is in its own header (dense_ff.h, leaf_fff.h, neuron_fff.h) and in docs/layers/.
// Adding a kind: a value in FFKind, a row in the table of kinds and a block class, all in
// src/layers/ff/ff_block.cc.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/core/param.h"
#include "fff/layers/activation.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"

namespace fff {

enum class FFKind { ff, leaf_fff, neuron_fff };

// "ff" | "leaf-fff" | "neuron-fff". Older spellings still read: "fff" (leaf FFF in classifier
// files and `--model`/`--mixer`), "dense" (the language model's and encoder's dense block); if
// `deprecated` is non-null it receives a note naming the new spelling (empty for current names).
// Throws fff::Error naming the accepted values otherwise.
FFKind parse_ff_kind(const std::string& name, std::string* deprecated = nullptr);
const char* ff_kind_name(FFKind kind);
// Every kind, in declaration order (for help texts and tests).
std::vector<FFKind> ff_kinds();

struct FFConfig {
  FFKind kind = FFKind::leaf_fff;
  int64_t in = 0, out = 0;
  Activation act = Activation::relu;
  int64_t width = 0;       // ff: hidden width
  int64_t depth = 0;       // leaf-fff: d (2^d leaves); neuron-fff: D (D + 1 levels per tree)
  int64_t leaf_width = 0;  // leaf-fff: neurons per leaf
  int64_t trees = 1;       // neuron-fff: K parallel trees
  // neuron-fff: the output bias b (UltraFastBERT has none); ff: both biases b1 and b2
  // (crammedBERT's blocks have none); leaf-fff always has its biases.
  bool output_bias = true;

  // Width a dense FF of equal training cost would have: w, 2^d * leaf_width, or K * n nodes.
  int64_t training_width() const;
  // Neurons one input uses at inference: w, leaf_width, or K * (D + 1).
  int64_t inference_width() const;
  // Floating-point operations of one row at inference (multiply-adds counted as 2).
  double inference_flops_per_row() const;
  // One line for people, e.g. "leaf FFF, depth 4, leaf width 8 (training width 128, inference
  // width 8), relu".
  std::string describe() const;
  // Throws fff::Error naming the field and its value, e.g. "leaf_width = 0: must be positive".
  void validate() const;
  // Names and shapes of the parameters make_ff_block creates, without allocating. Sizes whose
  // element count overflows int64 come out as INT64_MAX (so they can never match a file).
  std::vector<std::pair<std::string, std::vector<int64_t>>> param_shapes() const;
};

// The config's fields as file metadata entries, each key prefixed (classifier files use no
// prefix; other formats may nest a block under one): "model" (the kind), "activation", "in",
// "out", "width", "depth", "leaf_width", "trees", "output_bias".
void write_ff_metadata(const FFConfig& c, std::map<std::string, std::string>& meta,
                       const std::string& prefix = "");
// The inverse; errors name `path` and the key. Does not validate (call validate()).
FFConfig read_ff_metadata(const std::map<std::string, std::string>& meta, const std::string& path,
                          const std::string& prefix = "");

// The kind's own config, for calling its layer functions (dense_ff.h, leaf_fff.h, neuron_fff.h)
// directly.
DenseFFConfig dense_config(const FFConfig& c);
LeafFFFConfig leaf_config(const FFConfig& c);
NeuronFFFConfig neuron_config(const FFConfig& c);

struct FFInferOptions {
  // neuron-fff: read w1 and w2 from an IEEE-half copy (half the bytes a path reads; each weight
  // rounded to nearest, biases and arithmetic fp32). Other kinds refuse it.
  bool half_weights = false;
};

struct FFTrainOptions {
  bool hardened = false;     // leaf FFF: train with hardened (0/1) decisions
  float region_leak = 0.0f;  // leaf FFF: per (sample, node) flip probability
  float balance = 0.0f;      // leaf FFF: weight of the leaf balance loss (LeafTrainMode)
};

// The decisions hard inference takes, row by row (FFBlock::trace): the nodes each row visits and
// their logits, root first. Leaf FFF: per_row = depth d, node i's logit N_i x + c_i (right iff
// >= 0), and leaves the leaf reached (infer's routes); neuron FFF: per_row = K (D + 1), tree by
// tree, every node of the path down to the last level (global index t * (2^(D+1) - 1) + heap
// index, infer's routes), its logit the pre-activation w1_i x + b1_i (right iff > 0); dense FF:
// per_row = 0 and nothing else.
struct FFTrace {
  int64_t per_row = 0;
  std::vector<int32_t> nodes;   // (B, per_row)
  std::vector<float> logits;    // (B, per_row)
  std::vector<int32_t> leaves;  // leaf FFF: (B); empty for the other kinds
};

// What a training forward keeps for its backward, made by FFBlock::make_cache. One per forward
// in flight: a block may run several forwards before their backwards.
struct FFCache {
  virtual ~FFCache() = default;
};

class FFBlock {
 public:
  virtual ~FFBlock() = default;
  const FFConfig& config() const { return cfg_; }
  // The parameters, named as in model files ("w1", "b1", ...; "nodes_w" ... for leaf FFF).
  virtual std::vector<Param*> params() = 0;

  virtual std::unique_ptr<FFCache> make_cache() const = 0;
  // Training forward; keeps what backward needs in `cache`. Returns the mean node entropy (leaf
  // FFF's hardening loss before its weight; 0 for the others). rng draws the region leak.
  virtual double forward_train(Context& ctx, const float* x, int64_t B, float* y,
                               const FFTrainOptions& opt, Rng& rng, FFCache& cache) = 0;
  // Gradients for the forward that filled `cache` (overwritten; neuron FFF lists the rows it
  // wrote in touched_rows); dx overwritten if non-null. hardening is the weight h.
  virtual void backward(Context& ctx, const float* x, int64_t B, const float* dy, float hardening,
                        FFCache& cache, float* dx) = 0;

  // Call after the weights change and before infer (leaf FFF and dense FF pack their inference
  // weights, which infer reads instead of the parameters; a
  // neuron FFF with half_weights makes its half copy, without it drops the copy).
  virtual void prepare_inference(const FFInferOptions& opt) = 0;
  // Hard inference. routes, if non-null, receives per row the leaf reached (leaf FFF) or the
  // K * (D + 1) nodes visited (neuron FFF); nothing for ff.
  virtual void infer(Context& ctx, const float* x, int64_t B, float* y,
                     std::vector<int32_t>* routes) = 0;
  // The path hard inference takes for each of the B rows of x, with the node logits it decides
  // on (FFTrace; the same decisions infer makes). Fills t, resized to B rows.
  virtual void trace(Context& ctx, const float* x, int64_t B, FFTrace& t) = 0;
  // Mean entropy of sigmoid(logit) over the decisions inference makes (0 for ff).
  virtual double mean_node_entropy(Context& ctx, const float* x, int64_t B) = 0;
  // A deep copy: parameters, inference weights and options.
  virtual std::unique_ptr<FFBlock> clone() const = 0;

 protected:
  explicit FFBlock(const FFConfig& cfg) : cfg_(cfg) {}
  FFConfig cfg_;
};

// Validates cfg, then initialises the kind's parameters as its header describes.
std::unique_ptr<FFBlock> make_ff_block(const FFConfig& cfg, Rng& rng);
// A block for inference whose parameters are `tensors` (moved from the map), keyed by parameter
// name, each with the shape param_shapes() gives: no random initialisation and no gradient
// storage (train a block made by make_ff_block). Errors name `where` and the tensor.
std::unique_ptr<FFBlock> make_ff_block_from(const FFConfig& cfg,
                                            std::map<std::string, Tensor>& tensors,
                                            const std::string& where);

}  // namespace fff
