// fff.load and fff.save's C++ side (python/fff/files.py): classifier files go through the
// library's load_model and save_model, so Python reads and writes exactly what `fff train` and
// `fff eval` do; encoder files give their feedforward blocks. Blocks cross as dicts of their
// config fields and parameters (numpy copies, keyed as in the files).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <map>
#include <string>

#include "convert.h"
#include "fff/io/safetensors.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/models/bert.h"
#include "fff/models/classifier.h"

namespace py = pybind11;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::dict block_dict(const fff::FFConfig& c, fff::FFBlock& block) {
  py::dict d = fff_python::ff_config_to_dict(c);
  d["tensors"] = fff_python::params_dict(block.params());
  return d;
}

py::dict load_classifier(const std::string& path) {
  fff::LoadedModel loaded = fff::load_model(path);
  const fff::ModelConfig& c = loaded.model->config();
  py::dict d;
  d["block"] = block_dict(c, loaded.model->block());
  d["input_mean"] = c.input_norm.mean;
  d["input_std"] = c.input_norm.std;
  d["metadata"] = loaded.metadata;
  return d;
}

py::list load_bert_ff_blocks(const std::string& path) {
  fff::BertModel m = fff::load_bert(path);
  py::list blocks;
  for (fff::BertLayer& layer : m.layers) blocks.append(block_dict(layer.ff->config(), *layer.ff));
  return blocks;
}

// An encoder file's metadata and every tensor as stored (numpy copies), after load_bert has
// checked it as a whole: what fff.bert.load builds its PyTorch model from.
py::tuple read_bert(const std::string& path) {
  fff::load_bert(path);
  fff::SafetensorsFile f = fff::load_safetensors(path);
  py::dict tensors;
  for (const auto& [name, t] : f.tensors) {
    py::array_t<float> a(std::vector<py::ssize_t>(t.shape.begin(), t.shape.end()));
    std::copy(t.data.begin(), t.data.end(), a.mutable_data());
    tensors[py::str(name)] = a;
  }
  return py::make_tuple(f.metadata, tensors);
}

// Writes an encoder file from its metadata and tensors (as read_bert gives them) atomically, and
// only once load_bert accepts it: the complete temporary file is loaded back as a whole before
// it is renamed over `path`.
void write_bert(const std::string& path, const std::map<std::string, std::string>& metadata,
                const std::map<std::string, FloatArray>& arrays) {
  std::map<std::string, fff::Tensor> tensors;
  std::vector<std::pair<std::string, const fff::Tensor*>> order;
  for (const auto& [name, a] : arrays) {
    fff::Tensor t(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()));
    std::copy_n(a.data(), t.size(), t.ptr());
    for (float v : t.data)
      if (!std::isfinite(v))
        throw fff::Error(path + ": cannot save: tensor '" + name + "' holds NaN or infinity");
    order.push_back({name, &tensors.emplace(name, std::move(t)).first->second});
  }
  try {
    fff::save_safetensors(path, order, metadata,
                          [](const std::string& tmp) { fff::load_bert(tmp); });
  } catch (const std::exception& e) {
    std::string what = e.what();  // without the path if it starts with it already
    if (what.rfind(path + ": ", 0) == 0) what.erase(0, path.size() + 2);
    throw fff::Error(path + ": cannot save: " + what);
  }
}

void save_classifier(const std::string& path, const py::dict& config, float input_mean,
                     float input_std, const std::map<std::string, FloatArray>& arrays,
                     const std::map<std::string, std::string>& metadata) {
  fff::ModelConfig c;
  try {
    static_cast<fff::FFConfig&>(c) = fff_python::ff_config_from_dict(config);
    c.input_norm = {input_mean, input_std};
    c.validate();
  } catch (const fff::Error& e) {
    throw fff::Error(path + ": cannot save: " + e.what());
  }
  std::map<std::string, fff::Tensor> tensors;
  for (const auto& [name, a] : arrays) {
    fff::Tensor t(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()));
    std::copy_n(a.data(), t.size(), t.ptr());
    for (float v : t.data)
      if (!std::isfinite(v))
        throw fff::Error(path + ": cannot save: parameter '" + name + "' holds NaN or infinity");
    tensors.emplace(name, std::move(t));
  }
  fff::Model model(c, fff::make_ff_block_from(c, tensors, path + ": cannot save"));
  fff::save_model(path, model, metadata);
}

}  // namespace

void bind_files(py::module_& m) {
  m.def("_file_metadata", &fff::load_safetensors_metadata, py::arg("path"));
  m.def("_load_classifier", &load_classifier, py::arg("path"));
  m.def("_read_bert", &read_bert, py::arg("path"));
  m.def("_write_bert", &write_bert, py::arg("path"), py::arg("metadata"), py::arg("tensors"));
  m.def("_load_bert_ff_blocks", &load_bert_ff_blocks, py::arg("path"));
  m.def("_save_classifier", &save_classifier, py::arg("path"), py::arg("config"),
        py::arg("input_mean"), py::arg("input_std"), py::arg("tensors"), py::arg("metadata"));
}
