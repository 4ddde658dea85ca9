// The feedforward block interface over dense FF, leaf FFF and neuron FFF: the table of kinds
// (names, validation, shapes, widths, FLOPs, descriptions) and one block class per kind.
#include "fff/layers/ff/ff_block.h"

#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "fff/engine/cmm.h"
#include "fff/io/safetensors.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"

namespace fff {

DenseFFConfig dense_config(const FFConfig& c) {
  return {c.in, c.width, c.out, c.act, c.output_bias};
}

LeafFFFConfig leaf_config(const FFConfig& c) {
  return {c.in, c.out, c.depth, c.leaf_width, c.act};
}

NeuronFFFConfig neuron_config(const FFConfig& c) {
  return {c.in, c.out, c.trees, c.depth, c.act, c.output_bias};
}

namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// a * b, or INT64_MAX when the product overflows (such a shape never matches a file).
int64_t saturating_mul(int64_t a, int64_t b) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a)
    return std::numeric_limits<int64_t>::max();
  return a * b;
}

std::string field_error(const char* field, int64_t value, const std::string& why) {
  return std::string("FFConfig.") + field + " = " + std::to_string(value) + ": " + why;
}

void require_positive(const char* field, int64_t value) {
  if (value <= 0) throw Error(field_error(field, value, "must be positive"));
}

void require_range(const char* field, int64_t value, int64_t lo, int64_t hi,
                   const std::string& kind) {
  if (value < lo || value > hi)
    throw Error(field_error(
        field, value,
        "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] for " + kind));
}

// ---- dense FF -------------------------------------------------------------------------------

void refuse_half(const FFInferOptions& opt, const FFConfig& c) {
  if (opt.half_weights)
    throw Error(std::string("half-precision weights: only neuron-fff blocks have them, not ") +
                ff_kind_name(c.kind));
}

// The scratch of a dense block's inference (its hidden activations), in the caller's context.
struct DenseInferScratch {
  Tensor hidden;
};

class DenseBlock : public FFBlock {
 public:
  DenseBlock(const FFConfig& cfg, DenseFF m) : FFBlock(cfg), m_(std::move(m)) {}
  std::vector<Param*> params() override { return m_.params(); }
  struct Cache : FFCache {
    DenseFFContext layer;
  };
  std::unique_ptr<FFCache> make_cache() const override { return std::make_unique<Cache>(); }
  double forward_train(Context& ctx, const float* x, int64_t B, float* y, const FFTrainOptions&,
                       Rng&, FFCache& cache) override {
    dense_ff_forward(ctx, m_, x, B, y, &static_cast<Cache&>(cache).layer);
    return 0.0;
  }
  void backward(Context& ctx, const float* x, int64_t B, const float* dy, float, FFCache& cache,
                float* dx) override {
    dense_ff_backward(ctx, m_, x, B, dy, static_cast<Cache&>(cache).layer, dx);
  }
  void prepare_inference(const FFInferOptions& opt) override {
    refuse_half(opt, cfg_);
    packed_ = pack_dense_ff(m_.cfg, weights_of(m_));
  }
  // On the weights packed by prepare_inference (dense_ff.h): no packing per call.
  void infer(Context& ctx, const float* x, int64_t B, float* y, std::vector<int32_t>*) override {
    if (packed_.w1.empty()) prepare_inference({});
    dense_ff_infer(ctx, packed_, x, B, y, ctx.workspace.get<DenseInferScratch>().hidden);
  }
  void trace(Context&, const float*, int64_t, FFTrace& t) override { t = FFTrace{}; }
  double mean_node_entropy(Context&, const float*, int64_t) override { return 0.0; }
  std::unique_ptr<FFBlock> clone() const override { return std::make_unique<DenseBlock>(*this); }

 private:
  DenseFF m_;
  DenseFFPacked packed_;
};

// ---- leaf FFF -------------------------------------------------------------------------------

class LeafBlock : public FFBlock {
 public:
  LeafBlock(const FFConfig& cfg, LeafFFF m) : FFBlock(cfg), m_(std::move(m)) {}
  std::vector<Param*> params() override { return m_.params(); }
  struct Cache : FFCache {
    LeafFFFContext layer;
    std::vector<uint8_t> flips;
  };
  std::unique_ptr<FFCache> make_cache() const override { return std::make_unique<Cache>(); }
  double forward_train(Context& ctx, const float* x, int64_t B, float* y, const FFTrainOptions& opt,
                       Rng& rng, FFCache& cache) override {
    auto& c = static_cast<Cache&>(cache);
    const bool leak = opt.region_leak > 0.0f;
    if (leak) c.flips = sample_region_leak(B, m_.cfg.n_nodes(), opt.region_leak, rng);
    const LeafTrainMode mode{opt.hardened, leak ? &c.flips : nullptr, opt.balance};
    return leaf_fff_forward_train(ctx, m_, x, B, y, mode, c.layer);
  }
  void backward(Context& ctx, const float* x, int64_t B, const float* dy, float hardening,
                FFCache& cache, float* dx) override {
    leaf_fff_backward_train(ctx, m_, x, B, dy, hardening, static_cast<Cache&>(cache).layer, dx);
  }
  void prepare_inference(const FFInferOptions& opt) override {
    refuse_half(opt, cfg_);
    packed_ = pack_leaf_fff(m_);
  }
  void infer(Context& ctx, const float* x, int64_t B, float* y,
             std::vector<int32_t>* routes) override {
    if (packed_.w1t.size() == 0) prepare_inference({});
    if (routes) routes->resize(static_cast<size_t>(B));
    leaf_fff_infer(ctx, packed_, x, B, y, routes ? routes->data() : nullptr);
  }
  void trace(Context& ctx, const float* x, int64_t B, FFTrace& t) override {
    if (packed_.w1t.size() == 0) prepare_inference({});
    const int64_t d = m_.cfg.depth;
    t.per_row = d;
    t.leaves.resize(static_cast<size_t>(B));
    t.logits.resize(static_cast<size_t>(B * d));
    t.nodes.resize(static_cast<size_t>(B * d));
    Tensor y({B, m_.cfg.out});
    leaf_fff_infer(ctx, packed_, x, B, y.ptr(), t.leaves.data(), t.logits.data());
    for (int64_t r = 0; r < B; ++r)
      for (int64_t level = 0; level < d; ++level)
        t.nodes[r * d + level] =
            static_cast<int32_t>((int64_t{1} << level) - 1 + (t.leaves[r] >> (d - level)));
  }
  double mean_node_entropy(Context& ctx, const float* x, int64_t B) override {
    if (m_.cfg.n_nodes() == 0 || B == 0) return 0.0;
    Tensor y({B, m_.cfg.out});
    LeafFFFContext state;
    return leaf_fff_forward_train(ctx, m_, x, B, y.ptr(), {}, state);
  }
  std::unique_ptr<FFBlock> clone() const override { return std::make_unique<LeafBlock>(*this); }

 private:
  LeafFFF m_;
  LeafFFFPacked packed_;
};

// ---- neuron FFF -----------------------------------------------------------------------------

class NeuronBlock : public FFBlock {
 public:
  NeuronBlock(const FFConfig& cfg, NeuronFFF m) : FFBlock(cfg), m_(std::move(m)) {}
  std::vector<Param*> params() override { return m_.params(); }
  struct Cache : FFCache {
    NeuronFFFContext layer;
  };
  std::unique_ptr<FFCache> make_cache() const override { return std::make_unique<Cache>(); }
  double forward_train(Context& ctx, const float* x, int64_t B, float* y, const FFTrainOptions&,
                       Rng&, FFCache& cache) override {
    neuron_fff_forward(ctx, m_, x, B, y, &static_cast<Cache&>(cache).layer);
    return 0.0;
  }
  void backward(Context& ctx, const float* x, int64_t B, const float* dy, float, FFCache& cache,
                float* dx) override {
    neuron_fff_backward(ctx, m_, x, B, dy, static_cast<Cache&>(cache).layer, dx);
  }
  void infer(Context& ctx, const float* x, int64_t B, float* y,
             std::vector<int32_t>* routes) override {
    if (!routes) return neuron_fff_infer(ctx, m_, x, B, y, half_ ? &*half_ : nullptr);
    NeuronFFFContext state;
    neuron_fff_forward(ctx, m_, x, B, y, &state);
    *routes = std::move(state.node);
  }
  void trace(Context& ctx, const float* x, int64_t B, FFTrace& t) override {
    Tensor y({B, m_.cfg.out});
    NeuronFFFContext state;
    neuron_fff_forward(ctx, m_, x, B, y.ptr(), &state);
    t.per_row = m_.cfg.path_length();
    t.nodes = std::move(state.node);
    t.logits = std::move(state.z);
    t.leaves.clear();
  }
  double mean_node_entropy(Context& ctx, const float* x, int64_t B) override {
    if (B == 0) return 0.0;
    Tensor y({B, m_.cfg.out});
    NeuronFFFContext state;
    neuron_fff_forward(ctx, m_, x, B, y.ptr(), &state);
    double sum = 0.0;
    for (float z : state.z) sum += binary_entropy(1.0 / (1.0 + std::exp(-static_cast<double>(z))));
    return sum / static_cast<double>(state.z.size());
  }
  void prepare_inference(const FFInferOptions& opt) override {
    half_.reset();
    if (opt.half_weights) half_ = make_half_weights(m_);
  }
  std::unique_ptr<FFBlock> clone() const override { return std::make_unique<NeuronBlock>(*this); }

 private:
  NeuronFFF m_;
  std::optional<NeuronFFFHalf> half_;  // the engine reads w1, w2 from here when present
};

// ---- the table of kinds ---------------------------------------------------------------------

struct KindInfo {
  FFKind kind;
  const char* name;
  std::vector<const char*> old_names;  // still read, with a deprecation note
  std::function<int64_t(const FFConfig&)> training_width, inference_width;
  std::function<double(const FFConfig&)> flops_per_row;
  std::function<std::string(const FFConfig&)> describe;  // without the activation
  std::function<void(const FFConfig&)> validate;         // the kind's own fields
  std::function<Shapes(const FFConfig&)> shapes;
  std::function<std::unique_ptr<FFBlock>(const FFConfig&, Rng&)> make;
  // A block whose parameters are named but hold no storage yet (make_ff_block_from fills them).
  std::function<std::unique_ptr<FFBlock>(const FFConfig&)> shell;
};

// Names params as `names` says, in order; their tensors stay empty.
void name_params(std::vector<Param*> params, std::initializer_list<const char*> names) {
  auto name = names.begin();
  for (Param* p : params) p->name = *name++;
}

const std::vector<KindInfo>& kinds() {
  static const std::vector<KindInfo> table = {
      {FFKind::ff,
       "ff",
       {"dense"},
       [](const FFConfig& c) { return c.width; },
       [](const FFConfig& c) { return c.width; },
       [](const FFConfig& c) { return dense_ff_flops_per_row(dense_config(c)); },
       [](const FFConfig& c) {
         return "dense FF, width " + std::to_string(c.width) + (c.output_bias ? "" : ", no biases");
       },
       [](const FFConfig& c) { require_positive("width", c.width); },
       [](const FFConfig& c) -> Shapes {
         if (!c.output_bias) return {{"w1", {c.in, c.width}}, {"w2", {c.width, c.out}}};
         return {
             {"w1", {c.in, c.width}}, {"b1", {c.width}}, {"w2", {c.width, c.out}}, {"b2", {c.out}}};
       },
       [](const FFConfig& c, Rng& rng) -> std::unique_ptr<FFBlock> {
         return std::make_unique<DenseBlock>(c, make_dense_ff(dense_config(c), rng));
       },
       [](const FFConfig& c) -> std::unique_ptr<FFBlock> {
         DenseFF m;
         m.cfg = dense_config(c);
         name_params({&m.w1, &m.b1, &m.w2, &m.b2}, {"w1", "b1", "w2", "b2"});
         return std::make_unique<DenseBlock>(c, std::move(m));
       }},
      {FFKind::leaf_fff,
       "leaf-fff",
       {"fff"},
       [](const FFConfig& c) { return saturating_mul(int64_t{1} << c.depth, c.leaf_width); },
       [](const FFConfig& c) { return c.leaf_width; },
       [](const FFConfig& c) { return leaf_fff_inference_flops_per_row(leaf_config(c)); },
       [](const FFConfig& c) {
         return "leaf FFF, depth " + std::to_string(c.depth) + ", leaf width " +
                std::to_string(c.leaf_width) + " (training width " +
                std::to_string(c.training_width()) + ", inference width " +
                std::to_string(c.inference_width()) + ")";
       },
       [](const FFConfig& c) {
         require_positive("leaf_width", c.leaf_width);
         require_range("depth", c.depth, 0, 20, "leaf-fff");
       },
       [](const FFConfig& c) -> Shapes {
         const int64_t L = int64_t{1} << c.depth, n = L - 1, W = saturating_mul(L, c.leaf_width);
         return {{"nodes_w", {n, c.in}}, {"nodes_b", {n}},  {"w1", {c.in, W}}, {"b1", {W}},
                 {"w2", {W, c.out}},     {"b2", {L, c.out}}};
       },
       [](const FFConfig& c, Rng& rng) -> std::unique_ptr<FFBlock> {
         return std::make_unique<LeafBlock>(c, make_leaf_fff(leaf_config(c), rng));
       },
       [](const FFConfig& c) -> std::unique_ptr<FFBlock> {
         LeafFFF m;
         m.cfg = leaf_config(c);
         name_params(m.params(), {"nodes_w", "nodes_b", "w1", "b1", "w2", "b2"});
         return std::make_unique<LeafBlock>(c, std::move(m));
       }},
      {FFKind::neuron_fff,
       "neuron-fff",
       {},
       [](const FFConfig& c) { return saturating_mul(c.trees, (int64_t{2} << c.depth) - 1); },
       [](const FFConfig& c) { return saturating_mul(c.trees, c.depth + 1); },
       [](const FFConfig& c) { return neuron_fff_flops_per_row(neuron_config(c)); },
       [](const FFConfig& c) {
         return "neuron FFF, " + std::to_string(c.trees) + " tree(s) of depth " +
                std::to_string(c.depth) + " (" + std::to_string(c.training_width()) + " neurons, " +
                std::to_string(c.inference_width()) + " used per input)";
       },
       [](const FFConfig& c) {
         require_positive("trees", c.trees);
         require_range("depth", c.depth, 0, 24, "neuron-fff");
       },
       [](const FFConfig& c) -> Shapes {
         const int64_t n = saturating_mul(c.trees, (int64_t{2} << c.depth) - 1);
         Shapes s = {{"w1", {n, c.in}}, {"b1", {n}}, {"w2", {n, c.out}}};
         if (c.output_bias) s.push_back({"b", {c.out}});
         return s;
       },
       [](const FFConfig& c, Rng& rng) -> std::unique_ptr<FFBlock> {
         return std::make_unique<NeuronBlock>(c, make_neuron_fff(neuron_config(c), rng));
       },
       [](const FFConfig& c) -> std::unique_ptr<FFBlock> {
         NeuronFFF m;
         m.cfg = neuron_config(c);
         name_params({&m.w1, &m.b1, &m.w2, &m.b}, {"w1", "b1", "w2", "b"});
         return std::make_unique<NeuronBlock>(c, std::move(m));
       }},
  };
  return table;
}

const KindInfo& info(FFKind kind) {
  for (const KindInfo& k : kinds())
    if (k.kind == kind) return k;
  throw Error("unknown feedforward kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace

FFKind parse_ff_kind(const std::string& name, std::string* deprecated) {
  if (deprecated) deprecated->clear();
  std::string names;
  for (const KindInfo& k : kinds()) {
    if (name == k.name) return k.kind;
    for (const char* old : k.old_names)
      if (name == old) {
        if (deprecated)
          *deprecated = "'" + name + "' is the old name of '" + k.name + "'; say '" + k.name + "'";
        return k.kind;
      }
    names += std::string(names.empty() ? "" : ", ") + k.name;
  }
  throw Error("unknown feedforward kind '" + name + "' (expected " + names + ")");
}

const char* ff_kind_name(FFKind kind) {
  return info(kind).name;
}

std::vector<FFKind> ff_kinds() {
  std::vector<FFKind> all;
  for (const KindInfo& k : kinds()) all.push_back(k.kind);
  return all;
}

int64_t FFConfig::training_width() const {
  return info(kind).training_width(*this);
}
int64_t FFConfig::inference_width() const {
  return info(kind).inference_width(*this);
}
double FFConfig::inference_flops_per_row() const {
  return info(kind).flops_per_row(*this);
}

std::string FFConfig::describe() const {
  return info(kind).describe(*this) + ", " + activation_name(act);
}

void FFConfig::validate() const {
  require_positive("in", in);
  require_positive("out", out);
  info(kind).validate(*this);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> FFConfig::param_shapes() const {
  return info(kind).shapes(*this);
}

void write_ff_metadata(const FFConfig& c, std::map<std::string, std::string>& meta,
                       const std::string& prefix) {
  meta[prefix + "model"] = ff_kind_name(c.kind);
  meta[prefix + "activation"] = activation_name(c.act);
  meta[prefix + "in"] = std::to_string(c.in);
  meta[prefix + "out"] = std::to_string(c.out);
  meta[prefix + "width"] = std::to_string(c.width);
  meta[prefix + "depth"] = std::to_string(c.depth);
  meta[prefix + "leaf_width"] = std::to_string(c.leaf_width);
  meta[prefix + "trees"] = std::to_string(c.trees);
  meta[prefix + "output_bias"] = c.output_bias ? "true" : "false";
}

FFConfig read_ff_metadata(const std::map<std::string, std::string>& meta, const std::string& path,
                          const std::string& prefix) {
  FFConfig c;
  try {
    c.kind = parse_ff_kind(metadata_string(meta, prefix + "model", path));
    c.act = parse_activation(metadata_string(meta, prefix + "activation", path));
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error(what.rfind(path, 0) == 0 ? what : path + ": " + what);
  }
  c.in = metadata_int(meta, prefix + "in", path);
  c.out = metadata_int(meta, prefix + "out", path);
  c.width = metadata_int(meta, prefix + "width", path);
  c.depth = metadata_int(meta, prefix + "depth", path);
  c.leaf_width = metadata_int(meta, prefix + "leaf_width", path);
  c.trees = metadata_int(meta, prefix + "trees", path);
  const std::string bias = metadata_string(meta, prefix + "output_bias", path);
  if (bias != "true" && bias != "false")
    throw Error(path + ": metadata '" + prefix + "output_bias' is '" + bias +
                "', expected true or false");
  c.output_bias = bias == "true";
  return c;
}

std::unique_ptr<FFBlock> make_ff_block(const FFConfig& cfg, Rng& rng) {
  cfg.validate();
  return info(cfg.kind).make(cfg, rng);
}

std::unique_ptr<FFBlock> make_ff_block_from(const FFConfig& cfg,
                                            std::map<std::string, Tensor>& tensors,
                                            const std::string& where) {
  try {
    cfg.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  const Shapes shapes = cfg.param_shapes();
  for (const auto& [name, shape] : shapes) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(where + ": tensor '" + name + "' is missing");
    if (it->second.shape != shape)
      throw Error(where + ": tensor '" + name + "' has shape " + shape_string(it->second.shape) +
                  " but " + cfg.describe() + " needs " + shape_string(shape));
  }
  for (const auto& [name, t] : tensors) {
    bool known = false;
    for (const auto& s : shapes) known = known || s.first == name;
    if (!known) throw Error(where + ": unexpected tensor '" + name + "' for " + cfg.describe());
  }
  auto block = info(cfg.kind).shell(cfg);
  for (Param* p : block->params()) p->value = std::move(tensors.at(p->name));
  tensors.clear();
  block->prepare_inference({});
  return block;
}

}  // namespace fff
