// fff._fff.FFOps: the feedforward blocks' kernels for fff.torch (python/fff/torch.py), on
// tensors passed by address. The binding does not link libtorch, so tensors cross as
// data_ptr() integers; fff.torch checks dtype (float32), device (CPU), contiguity and shapes
// before calling, and these entry points are private to it.
//
// Training runs the layer functions on the caller's storage in place (LeafFFFWeights etc.):
// no copy of the parameters per step. Inference runs an FFBlock made from a copy of the
// weights (leaf FFF packs them, neuron FFF runs the CMM engine), rebuilt by prepare() when
// fff.torch sees that the parameters changed.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "convert.h"
#include "fff/core/context.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/layers/ff/neuron_fff.h"

namespace py = pybind11;

namespace {

using Addresses = std::vector<uintptr_t>;

const float* in_ptr(uintptr_t a) {
  return reinterpret_cast<const float*>(a);
}
float* out_ptr(uintptr_t a) {
  return reinterpret_cast<float*>(a);
}

// Storage for large inference outputs, reused across calls. A fresh tensor of tens of MB comes
// from mmap and is faulted in page by page when the engine first writes it, which at batch
// 16,384 costs more than the engine itself (measured 1.9 us of 3.2 us per row). A block goes back
// to its module's pool when the array (and the tensor over it) is freed, so steady-state calls
// write to memory already mapped. The pool is the module's own: nothing is shared between
// modules or kept once the module is gone.
class OutputPool {
 public:
  ~OutputPool() {
    for (const Block& b : free_) fff::free_storage(b.ptr, b.bytes);
  }
  struct Block {
    float* ptr;
    size_t bytes;
  };
  Block take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 0; i < free_.size(); ++i)
        if (free_[i].bytes == bytes) {
          const Block b = free_[i];
          free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
          return b;
        }
    }
    return {static_cast<float*>(fff::allocate_storage(bytes)), bytes};
  }
  void give(const Block& b) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() < kKeep) {
      free_.push_back(b);
      return;
    }
    fff::free_storage(b.ptr, b.bytes);
  }

 private:
  static constexpr size_t kKeep = 2;  // blocks kept (one in use by the caller, one free)
  std::mutex mutex_;
  std::vector<Block> free_;
};

// What one training forward keeps for its backward; one per forward in flight.
struct OpsCache {
  fff::LeafFFFContext leaf;
  fff::NeuronFFFContext neuron;
  fff::DenseFFContext dense;
};

class FFOps {
 public:
  explicit FFOps(const py::dict& config)
      : cfg_(fff_python::ff_config_from_dict(config)), shapes_(cfg_.param_shapes()) {}

  // Names and shapes of the parameters, in the order every address list follows.
  const std::vector<std::pair<std::string, std::vector<int64_t>>>& param_shapes() const {
    return shapes_;
  }
  std::string describe() const { return cfg_.describe(); }

  int threads() const { return ctx_.threads; }
  void set_threads(int threads) {
    if (threads == ctx_.threads) return;
    fff::Context ctx(threads);  // validates the count
    std::lock_guard<std::mutex> lock(mutex_);
    ctx_ = std::move(ctx);
  }

  // y = block(x) with soft (or, with `hardened`, hard) decisions for leaf FFF; flips: address of
  // B * n_nodes region-leak flags (uint8), or 0. Returns the mean node entropy (0 but for leaf
  // FFF).
  double forward_train(const Addresses& w, uintptr_t x, int64_t B, uintptr_t y, OpsCache& cache,
                       bool hardened, uintptr_t flips) {
    check_count(w, "weights");
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    switch (cfg_.kind) {
      case fff::FFKind::leaf_fff: {
        std::vector<uint8_t> flags;
        if (flips) {
          const auto* f = reinterpret_cast<const uint8_t*>(flips);
          flags.assign(f, f + B * leaf_config().n_nodes());
        }
        fff::LeafTrainMode mode{hardened, flips ? &flags : nullptr};
        return fff::leaf_fff_forward_train(ctx_, leaf_config(), leaf_weights(w), in_ptr(x), B,
                                           out_ptr(y), mode, cache.leaf);
      }
      case fff::FFKind::neuron_fff:
        fff::neuron_fff_forward(ctx_, neuron_config(), neuron_weights(w), in_ptr(x), B, out_ptr(y),
                                &cache.neuron);
        return 0.0;
      case fff::FFKind::ff:
        fff::dense_ff_forward(ctx_, dense_config(), dense_weights(w), in_ptr(x), B, out_ptr(y),
                              &cache.dense);
        return 0.0;
    }
    return 0.0;
  }

  // Gradients into the addresses g (overwritten; for neuron FFF only the rows on some path of
  // the batch are written, so g must hold zeros), and dx if non-zero. hardening: the weight of
  // the mean node entropy in the loss (the gradient reaching the entropy output).
  void backward(const Addresses& w, const Addresses& g, uintptr_t x, int64_t B, uintptr_t dy,
                float hardening, OpsCache& cache, uintptr_t dx) {
    check_count(w, "weights");
    check_count(g, "gradients");
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    switch (cfg_.kind) {
      case fff::FFKind::leaf_fff: {
        const fff::LeafFFFGrads grads{out_ptr(g[0]), out_ptr(g[1]), out_ptr(g[2]),
                                      out_ptr(g[3]), out_ptr(g[4]), out_ptr(g[5])};
        fff::leaf_fff_backward_train(ctx_, leaf_config(), leaf_weights(w), grads, in_ptr(x), B,
                                     in_ptr(dy), hardening, cache.leaf, out_ptr(dx));
        return;
      }
      case fff::FFKind::neuron_fff: {
        const fff::NeuronFFFGrads grads{out_ptr(g[0]), out_ptr(g[1]), out_ptr(g[2]),
                                        cfg_.output_bias ? out_ptr(g[3]) : nullptr};
        std::vector<int32_t> touched;
        fff::neuron_fff_backward(ctx_, neuron_config(), neuron_weights(w), grads, in_ptr(x), B,
                                 in_ptr(dy), cache.neuron, out_ptr(dx), touched);
        return;
      }
      case fff::FFKind::ff: {
        const bool b = cfg_.output_bias;
        const fff::DenseFFGrads grads{out_ptr(g[0]), b ? out_ptr(g[1]) : nullptr,
                                      out_ptr(g[b ? 2 : 1]), b ? out_ptr(g[3]) : nullptr};
        fff::dense_ff_backward(ctx_, dense_config(), dense_weights(w), grads, in_ptr(x), B,
                               in_ptr(dy), cache.dense, out_ptr(dx));
        return;
      }
    }
  }

  // Copies the weights into the inference block (leaf FFF packs them; half_weights: neuron FFF
  // reads IEEE-half copies of w1 and w2).
  void prepare(const Addresses& w, bool half_weights) {
    check_count(w, "weights");
    py::gil_scoped_release release;
    std::map<std::string, fff::Tensor> tensors;
    for (size_t i = 0; i < shapes_.size(); ++i) {
      fff::Tensor t(shapes_[i].second);
      std::copy_n(in_ptr(w[i]), t.size(), t.ptr());
      tensors.emplace(shapes_[i].first, std::move(t));
    }
    auto block = fff::make_ff_block_from(cfg_, tensors, "fff.torch");
    block->prepare_inference({half_weights});
    std::lock_guard<std::mutex> lock(mutex_);
    infer_block_ = std::move(block);
  }

  // Hard inference on the weights of the last prepare().
  void infer(uintptr_t x, int64_t B, uintptr_t y) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    prepared().infer(ctx_, in_ptr(x), B, out_ptr(y), nullptr);
  }

  // Hard inference into a new (B, out) float32 array whose storage comes from the module's
  // output pool (see OutputPool).
  py::array_t<float> infer_pooled(uintptr_t x, int64_t B) {
    const size_t bytes = static_cast<size_t>(B * cfg_.out) * sizeof(float);
    struct Owner {
      std::shared_ptr<OutputPool> pool;
      OutputPool::Block block;
    };
    auto* owner = new Owner{pool_, pool_->take(bytes)};
    py::capsule base(owner, [](void* p) {
      auto* o = static_cast<Owner*>(p);
      o->pool->give(o->block);
      delete o;
    });
    infer(x, B, reinterpret_cast<uintptr_t>(owner->block.ptr));
    return py::array_t<float>({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(cfg_.out)},
                              owner->block.ptr, base);
  }

  // Mean entropy of sigmoid(node logit) over the decisions inference makes (0 for ff).
  double mean_node_entropy(uintptr_t x, int64_t B) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return prepared().mean_node_entropy(ctx_, in_ptr(x), B);
  }

 private:
  fff::FFBlock& prepared() {
    if (!infer_block_) throw fff::Error("fff.torch: inference before prepare()");
    return *infer_block_;
  }

  void check_count(const Addresses& a, const char* what) const {
    const auto& shapes = shapes_;
    if (a.size() != shapes.size())
      throw fff::Error("fff.torch: " + std::to_string(a.size()) + " " + what + " given, the " +
                       fff::ff_kind_name(cfg_.kind) + " block has " +
                       std::to_string(shapes.size()));
    // An empty tensor (a depth-0 leaf FFF's nodes) may have no storage at all.
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] == 0 && fff::shape_numel(shapes[i].second) > 0)
        throw fff::Error("fff.torch: null address for " + shapes[i].first + " among the " + what);
  }

  fff::LeafFFFConfig leaf_config() const { return fff::leaf_config(cfg_); }
  fff::NeuronFFFConfig neuron_config() const { return fff::neuron_config(cfg_); }
  fff::DenseFFConfig dense_config() const { return fff::dense_config(cfg_); }
  static fff::LeafFFFWeights leaf_weights(const Addresses& w) {
    return {in_ptr(w[0]), in_ptr(w[1]), in_ptr(w[2]), in_ptr(w[3]), in_ptr(w[4]), in_ptr(w[5])};
  }
  fff::NeuronFFFWeights neuron_weights(const Addresses& w) const {
    return {in_ptr(w[0]), in_ptr(w[1]), in_ptr(w[2]), cfg_.output_bias ? in_ptr(w[3]) : nullptr};
  }
  fff::DenseFFWeights dense_weights(const Addresses& w) const {
    const bool b = cfg_.output_bias;
    return {in_ptr(w[0]), b ? in_ptr(w[1]) : nullptr, in_ptr(w[b ? 2 : 1]),
            b ? in_ptr(w[3]) : nullptr};
  }

  fff::FFConfig cfg_;
  // The parameters' names and shapes, in the order of every address list (checked each call).
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes_;
  fff::Context ctx_;
  std::unique_ptr<fff::FFBlock> infer_block_;
  std::shared_ptr<OutputPool> pool_ = std::make_shared<OutputPool>();
  std::mutex mutex_;
};

}  // namespace

void bind_ff_ops(py::module_& m) {
  py::class_<OpsCache>(m, "_FFCache").def(py::init<>());
  py::class_<FFOps>(m, "_FFOps")
      .def(py::init<const py::dict&>(), py::arg("config"))
      .def("param_shapes", &FFOps::param_shapes)
      .def("describe", &FFOps::describe)
      .def_property("threads", &FFOps::threads, &FFOps::set_threads)
      .def("forward_train", &FFOps::forward_train)
      .def("backward", &FFOps::backward)
      .def("prepare", &FFOps::prepare)
      .def("infer", &FFOps::infer)
      .def("infer_pooled", &FFOps::infer_pooled)
      .def("mean_node_entropy", &FFOps::mean_node_entropy);
}
