// The classifier interface over the three layer kinds, and model files.
#include "fff/models/classifier.h"

#include <cmath>
#include <limits>
#include <set>

#include "fff/engine/cmm.h"
#include "fff/io/safetensors.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"

namespace fff {

ModelKind parse_model_kind(const std::string& name) {
  if (name == "ff") return ModelKind::ff;
  if (name == "fff" || name == "leaf-fff") return ModelKind::leaf_fff;
  if (name == "neuron-fff") return ModelKind::neuron_fff;
  throw Error("unknown model '" + name + "' (expected ff, fff or neuron-fff)");
}

const char* model_kind_name(ModelKind k) {
  switch (k) {
    case ModelKind::ff:
      return "ff";
    case ModelKind::leaf_fff:
      return "fff";
    case ModelKind::neuron_fff:
      return "neuron-fff";
  }
  return "?";
}

int64_t ModelConfig::training_width() const {
  switch (kind) {
    case ModelKind::ff:
      return width;
    case ModelKind::leaf_fff:
      return (int64_t{1} << depth) * leaf_width;
    case ModelKind::neuron_fff:
      return trees * ((int64_t{2} << depth) - 1);
  }
  return 0;
}

int64_t ModelConfig::inference_width() const {
  switch (kind) {
    case ModelKind::ff:
      return width;
    case ModelKind::leaf_fff:
      return leaf_width;
    case ModelKind::neuron_fff:
      return trees * (depth + 1);
  }
  return 0;
}

int64_t ModelConfig::route_count() const {
  switch (kind) {
    case ModelKind::ff:
      return 1;
    case ModelKind::leaf_fff:
      return int64_t{1} << depth;
    case ModelKind::neuron_fff:
      return training_width();
  }
  return 1;
}

void ModelConfig::validate() const {
  if (in <= 0) throw Error("model input size must be positive");
  if (out < 2) throw Error("model needs at least 2 output classes");
  switch (kind) {
    case ModelKind::ff:
      if (width <= 0) throw Error("--width must be positive for ff");
      break;
    case ModelKind::leaf_fff:
      if (leaf_width <= 0) throw Error("--leaf-width must be positive for fff");
      if (depth < 0 || depth > 20) throw Error("--depth must be in [0, 20] for fff");
      break;
    case ModelKind::neuron_fff:
      if (trees <= 0) throw Error("--trees must be positive for neuron-fff");
      if (depth < 0 || depth > 24) throw Error("--depth must be in [0, 24] for neuron-fff");
      break;
  }
  if (!(input_norm.std > 0.0f) || !std::isfinite(input_norm.mean))
    throw Error("input standardisation must have finite mean and positive std");
}

namespace {

class DenseFFModel : public Model {
 public:
  DenseFFModel(const ModelConfig& cfg, Rng& rng)
      : Model(cfg), m_(make_dense_ff({cfg.in, cfg.width, cfg.out, cfg.act}, rng)) {}
  std::vector<Param*> params() override { return m_.params(); }
  double forward_train(Context& ctx, const float* x, int64_t B, float* logits,
                       const TrainStepOptions&, Rng&) override {
    dense_ff_forward(ctx, m_, x, B, logits, &cache_);
    return 0.0;
  }
  void backward(Context& ctx, const float* x, int64_t B, const float* dlogits, float) override {
    dense_ff_backward(ctx, m_, x, B, dlogits, cache_, nullptr);
  }
  void predict(Context& ctx, const float* x, int64_t B, float* logits,
               std::vector<int32_t>*) override {
    dense_ff_forward(ctx, m_, x, B, logits, &cache_);
  }
  double mean_node_entropy(Context&, const float*, int64_t) override { return 0.0; }

 private:
  DenseFF m_;
  DenseFFContext cache_;
};

class LeafFFFModel : public Model {
 public:
  LeafFFFModel(const ModelConfig& cfg, Rng& rng)
      : Model(cfg), m_(make_leaf_fff({cfg.in, cfg.out, cfg.depth, cfg.leaf_width, cfg.act}, rng)) {}
  std::vector<Param*> params() override { return m_.params(); }
  double forward_train(Context& ctx, const float* x, int64_t B, float* logits,
                       const TrainStepOptions& opt, Rng& rng) override {
    flips_ = sample_region_leak(B, m_.cfg.n_nodes(), opt.region_leak, rng);
    LeafTrainMode mode{opt.hardened, opt.region_leak > 0.0f ? &flips_ : nullptr};
    return leaf_fff_forward_train(ctx, m_, x, B, logits, mode, cache_);
  }
  void backward(Context& ctx, const float* x, int64_t B, const float* dlogits,
                float hardening) override {
    leaf_fff_backward_train(ctx, m_, x, B, dlogits, hardening, cache_, nullptr);
  }
  void prepare_inference() override { packed_ = pack_leaf_fff(m_); }
  void predict(Context& ctx, const float* x, int64_t B, float* logits,
               std::vector<int32_t>* routes) override {
    if (packed_.w1t.size() == 0) prepare_inference();
    if (routes) routes->resize(static_cast<size_t>(B));
    leaf_fff_infer(ctx, packed_, x, B, logits, routes ? routes->data() : nullptr);
  }
  double mean_node_entropy(Context& ctx, const float* x, int64_t B) override {
    const int64_t n = m_.cfg.n_nodes();
    if (n == 0 || B == 0) return 0.0;
    Tensor y({B, m_.cfg.out});
    LeafFFFContext cache;
    return leaf_fff_forward_train(ctx, m_, x, B, y.ptr(), {}, cache);
  }

 private:
  LeafFFF m_;
  LeafFFFPacked packed_;
  LeafFFFContext cache_;
  std::vector<uint8_t> flips_;
};

class NeuronFFFModel : public Model {
 public:
  NeuronFFFModel(const ModelConfig& cfg, Rng& rng)
      : Model(cfg),
        m_(make_neuron_fff({cfg.in, cfg.out, cfg.trees, cfg.depth, cfg.act, cfg.output_bias},
                           rng)) {}
  std::vector<Param*> params() override { return m_.params(); }
  double forward_train(Context& ctx, const float* x, int64_t B, float* logits,
                       const TrainStepOptions&, Rng&) override {
    neuron_fff_forward(ctx, m_, x, B, logits, &cache_);
    return 0.0;
  }
  void backward(Context& ctx, const float* x, int64_t B, const float* dlogits, float) override {
    neuron_fff_backward(ctx, m_, x, B, dlogits, cache_, nullptr);
  }
  void predict(Context& ctx, const float* x, int64_t B, float* logits,
               std::vector<int32_t>* routes) override {
    if (!routes) return neuron_fff_infer(ctx, m_, x, B, logits);  // the CMM engine
    NeuronFFFContext cache;
    neuron_fff_forward(ctx, m_, x, B, logits, &cache);
    *routes = std::move(cache.node);
  }
  double mean_node_entropy(Context& ctx, const float* x, int64_t B) override {
    if (B == 0) return 0.0;
    Tensor y({B, m_.cfg.out});
    NeuronFFFContext cache;
    neuron_fff_forward(ctx, m_, x, B, y.ptr(), &cache);
    double sum = 0.0;
    for (float z : cache.z) sum += binary_entropy(1.0 / (1.0 + std::exp(-static_cast<double>(z))));
    return sum / static_cast<double>(cache.z.size());
  }

 private:
  NeuronFFF m_;
  NeuronFFFContext cache_;
};

std::string to_str(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

std::unique_ptr<Model> make_model(const ModelConfig& cfg, Rng& rng) {
  cfg.validate();
  switch (cfg.kind) {
    case ModelKind::ff:
      return std::make_unique<DenseFFModel>(cfg, rng);
    case ModelKind::leaf_fff:
      return std::make_unique<LeafFFFModel>(cfg, rng);
    case ModelKind::neuron_fff:
      return std::make_unique<NeuronFFFModel>(cfg, rng);
  }
  return nullptr;
}

void save_model(const std::string& path, Model& model,
                const std::map<std::string, std::string>& extra_metadata) {
  const ModelConfig& c = model.config();
  const std::map<std::string, std::string> config = {
      {"format", "fff-classifier"},
      {"format_version", "1"},
      {"model", model_kind_name(c.kind)},
      {"in", std::to_string(c.in)},
      {"out", std::to_string(c.out)},
      {"activation", activation_name(c.act)},
      {"width", std::to_string(c.width)},
      {"depth", std::to_string(c.depth)},
      {"leaf_width", std::to_string(c.leaf_width)},
      {"trees", std::to_string(c.trees)},
      {"output_bias", c.output_bias ? "true" : "false"},
      {"input_mean", to_str(c.input_norm.mean)},
      {"input_std", to_str(c.input_norm.std)}};
  std::map<std::string, std::string> meta = extra_metadata;
  for (const auto& [key, value] : config) meta[key] = value;  // the config wins over extras
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (Param* p : model.params()) tensors.emplace_back(p->name, &p->value);
  save_safetensors(path, tensors, meta);
}

namespace {

// Names and shapes of the parameters make_model creates for c, computed without allocating.
// Sizes whose element count overflows are reported as that; a huge but representable shape
// simply fails to match the file.
std::vector<std::pair<std::string, std::vector<int64_t>>> model_param_shapes(const ModelConfig& c) {
  switch (c.kind) {
    case ModelKind::ff:
      return {
          {"w1", {c.in, c.width}}, {"b1", {c.width}}, {"w2", {c.width, c.out}}, {"b2", {c.out}}};
    case ModelKind::leaf_fff: {
      const int64_t n = (int64_t{1} << c.depth) - 1, L = n + 1;
      const int64_t W = L > std::numeric_limits<int64_t>::max() / c.leaf_width
                            ? std::numeric_limits<int64_t>::max()
                            : L * c.leaf_width;
      return {{"nodes_w", {n, c.in}}, {"nodes_b", {n}},  {"w1", {c.in, W}}, {"b1", {W}},
              {"w2", {W, c.out}},     {"b2", {L, c.out}}};
    }
    case ModelKind::neuron_fff: {
      const int64_t per_tree = (int64_t{2} << c.depth) - 1;
      const int64_t n = c.trees > std::numeric_limits<int64_t>::max() / per_tree
                            ? std::numeric_limits<int64_t>::max()
                            : c.trees * per_tree;
      std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
          {"w1", {n, c.in}}, {"b1", {n}}, {"w2", {n, c.out}}};
      if (c.output_bias) shapes.push_back({"b", {c.out}});
      return shapes;
    }
  }
  return {};
}

}  // namespace

LoadedModel load_model(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  const auto& meta = file.metadata;
  check_metadata_format(meta, path, "fff-classifier", "an fff classifier file");
  ModelConfig c;
  try {
    c.kind = parse_model_kind(metadata_string(meta, "model", path));
    c.act = parse_activation(metadata_string(meta, "activation", path));
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  c.in = metadata_int(meta, "in", path);
  c.out = metadata_int(meta, "out", path);
  c.width = metadata_int(meta, "width", path);
  c.depth = metadata_int(meta, "depth", path);
  c.leaf_width = metadata_int(meta, "leaf_width", path);
  c.trees = metadata_int(meta, "trees", path);
  c.output_bias = metadata_string(meta, "output_bias", path) == "true";
  c.input_norm.mean = metadata_float(meta, "input_mean", path);
  c.input_norm.std = metadata_float(meta, "input_std", path);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(path + ": bad model config: " + e.what());
  }
  // Check the file's tensors against the shapes the config implies before building the model,
  // so that a corrupt size in the metadata cannot make us allocate more than the file holds.
  std::set<std::string> expected;
  for (const auto& [name, shape] : model_param_shapes(c)) {
    expected.insert(name);
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) throw Error(path + ": tensor '" + name + "' is missing");
    if (it->second.shape != shape)
      throw Error(path + ": tensor '" + name + "' has shape " + shape_string(it->second.shape) +
                  " but the config needs " + shape_string(shape));
    for (float v : it->second.data)
      if (!std::isfinite(v)) throw Error(path + ": tensor '" + name + "' holds NaN or infinity");
  }
  for (const auto& [name, t] : file.tensors)
    if (!expected.count(name)) throw Error(path + ": unexpected tensor '" + name + "'");
  Rng rng(0);
  LoadedModel loaded{make_model(c, rng), meta};
  for (Param* p : loaded.model->params()) p->value = std::move(file.tensors.at(p->name));
  loaded.model->prepare_inference();
  return loaded;
}

}  // namespace fff
