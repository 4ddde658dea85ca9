// The Python extension module fff._fff: a thin binding over the C++ API (no libtorch; arrays
// cross through the buffer protocol). What it offers is in python/fff/__init__.py and
// docs/python.md.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "convert.h"
#include "fff/core/context.h"
#include "fff/models/classifier.h"
#include "fff/version.h"

namespace py = pybind11;

void bind_ff_ops(py::module_& m);    // python/ff_ops.cc
void bind_files(py::module_& m);     // python/files.cc
void bind_text(py::module_& m);      // python/text.cc
void bind_sentence(py::module_& m);  // python/sentence.cc

namespace {

// c-contiguous float32; other dtypes and layouts are converted (a copy).
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

int default_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// A classifier file for inference from numpy: the model, its execution context (threads, the
// workspace calls reuse) and a lock, since one context serves one call at a time.
class NumpyModel {
 public:
  static std::unique_ptr<NumpyModel> load(const std::string& path, int threads) {
    auto m = std::unique_ptr<NumpyModel>(new NumpyModel());
    fff::LoadedModel loaded = fff::load_model(path);
    m->model_ = std::move(loaded.model);
    m->metadata_ = std::move(loaded.metadata);
    m->set_threads(threads);
    return m;
  }

  const fff::ModelConfig& config() const { return model_->config(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  int threads() const { return ctx_.threads; }
  // 0: every core; otherwise validated by the Context (1 .. kMaxThreads).
  void set_threads(int threads) {
    if (threads < 0)
      throw fff::Error("threads = " + std::to_string(threads) +
                       ": must be positive, or 0 for every core");
    fff::Context ctx(threads > 0 ? threads : default_threads());
    ctx_ = std::move(ctx);
  }

  // x: (..., in) -> logits (..., classes). With `standardize`, x is in the units the model was
  // trained on (pixels scaled to [0, 1] for IDX images) and the model's stored standardisation
  // is applied first, as `fff eval` does; without it, x is already standardised.
  py::array_t<float> predict(const FloatArray& x, bool standardize) {
    const fff::ModelConfig& c = config();
    if (x.ndim() < 1)
      throw fff::Error("predict: x must have at least 1 dimension (..., in_features = " +
                       std::to_string(c.in) + "), got a scalar");
    const int64_t in = x.shape(x.ndim() - 1);
    if (in != c.in)
      throw fff::Error("predict: x's last dimension is " + std::to_string(in) +
                       ", but the model's in_features is " + std::to_string(c.in));
    const int64_t rows = in == 0 ? 0 : x.size() / in;
    std::vector<py::ssize_t> out_shape(x.shape(), x.shape() + x.ndim());
    out_shape.back() = c.out;
    py::array_t<float> y(out_shape);
    const float* xp = x.data();
    float* yp = y.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      std::vector<float> standardized;
      if (standardize) {
        standardized.resize(static_cast<size_t>(x.size()));
        const float mean = c.input_norm.mean, inv_std = 1.0f / c.input_norm.std;
        for (size_t i = 0; i < standardized.size(); ++i) standardized[i] = (xp[i] - mean) * inv_std;
        xp = standardized.data();
      }
      model_->predict(ctx_, xp, rows, yp, nullptr);
    }
    return y;
  }

  // Every parameter as a float32 array (a copy), keyed as in the model file.
  py::dict state_dict() { return fff_python::params_dict(model_->params()); }

 private:
  NumpyModel() = default;
  std::unique_ptr<fff::Model> model_;
  std::map<std::string, std::string> metadata_;
  fff::Context ctx_;
  std::mutex mutex_;
};

// A split as numpy arrays: x (n, features) float32 (IDX pixels scaled to [0, 1]), y (n) int64.
py::tuple dataset_arrays(const fff::Dataset& d) {
  py::array_t<float> x(
      {static_cast<py::ssize_t>(d.size()), static_cast<py::ssize_t>(d.features())});
  std::copy(d.x.data.begin(), d.x.data.end(), x.mutable_data());
  py::array_t<int64_t> y(static_cast<py::ssize_t>(d.size()));
  std::copy(d.y.begin(), d.y.end(), y.mutable_data());
  return py::make_tuple(x, y);
}

py::dict load_dataset(const std::string& name) {
  fff::TrainTest tt;
  {
    py::gil_scoped_release release;
    tt = fff::load_dataset(name);
  }
  py::dict d;
  d["name"] = tt.name;
  d["train"] = dataset_arrays(tt.train);
  d["test"] = dataset_arrays(tt.test);
  d["num_classes"] = tt.train.num_classes;
  return d;
}

}  // namespace

PYBIND11_MODULE(_fff, m) {
  m.doc() = "fff: fast feedforward networks (the C++ library's Python binding)";
  m.attr("__version__") = FFF_VERSION_STRING;
  // fff::Error (bad file, bad argument, bad shape) arrives as fff.Error, a ValueError.
  py::register_exception<fff::Error>(m, "Error", PyExc_ValueError);
  bind_ff_ops(m);
  bind_files(m);
  bind_text(m);
  bind_sentence(m);
  m.def("load_dataset", &load_dataset, py::arg("name"),
        "The data set `fff train --data NAME` reads ('fashion-mnist', 'mnist', or a directory of "
        "IDX files or CIFAR-10 batches), as a dict: 'train' and 'test' are (x, y) with x "
        "(n, features) float32 (IDX pixels scaled to [0, 1]) and y (n) int64; 'num_classes'; "
        "'name'. Raises fff.Error naming the file or directory and what is wrong.");

  py::class_<NumpyModel>(m, "Model",
                         "A classifier file written by `fff train --save`, for inference on "
                         "numpy arrays (hard inference: one root-to-leaf path per row).")
      .def_static("load", &NumpyModel::load, py::arg("path"), py::arg("threads") = 0,
                  "Loads and validates a classifier file. threads: how many threads predict uses "
                  "(0: every core).")
      .def("predict", &NumpyModel::predict, py::arg("x"), py::arg("standardize") = true,
           "Class logits (..., classes) for inputs x (..., in_features). float32 C-contiguous "
           "arrays are read in place; others are converted (a copy). With standardize (the "
           "default) the model's stored input standardisation is applied first.")
      .def_property("threads", &NumpyModel::threads, &NumpyModel::set_threads)
      .def_property_readonly("kind",
                             [](const NumpyModel& n) { return fff::ff_kind_name(n.config().kind); })
      .def_property_readonly("in_features", [](const NumpyModel& n) { return n.config().in; })
      .def_property_readonly("classes", [](const NumpyModel& n) { return n.config().out; })
      .def_property_readonly("description",
                             [](const NumpyModel& n) { return n.config().describe(); })
      .def_property_readonly("input_mean",
                             [](const NumpyModel& n) { return n.config().input_norm.mean; })
      .def_property_readonly("input_std",
                             [](const NumpyModel& n) { return n.config().input_norm.std; })
      .def_property_readonly("metadata", &NumpyModel::metadata,
                             "The file's metadata entries (its config and training record).")
      .def("state_dict", &NumpyModel::state_dict,
           "Every parameter as a float32 array (a copy), named as in the file.");
}
