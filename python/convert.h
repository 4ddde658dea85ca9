// Conversions between the library's types and the binding's Python objects (internal header of
// the extension module).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fff/core/param.h"
#include "fff/layers/activation.h"
#include "fff/layers/ff/ff_block.h"

namespace fff_python {

// Every parameter as a float32 array (a copy), keyed by its name (as in model files).
inline pybind11::dict params_dict(const std::vector<fff::Param*>& params) {
  pybind11::dict d;
  for (const fff::Param* p : params) {
    pybind11::array_t<float> a(
        std::vector<pybind11::ssize_t>(p->value.shape.begin(), p->value.shape.end()));
    std::copy(p->value.data.begin(), p->value.data.end(), a.mutable_data());
    d[pybind11::str(p->name)] = a;
  }
  return d;
}

// A feedforward block's config as the Python side spells it: a dict with "kind", "in_features",
// "out_features", "activation" and, as the kind needs them, "width", "depth", "leaf_width",
// "trees", "output_bias" (fff.torch modules' _config, the blocks fff.load returns).

// Validated; errors name the field (fff::Error).
inline fff::FFConfig ff_config_from_dict(const pybind11::dict& d) {
  auto get = [&](const char* key, auto fallback) {
    return d.contains(key) ? d[key].cast<decltype(fallback)>() : fallback;
  };
  fff::FFConfig c;
  c.kind = fff::parse_ff_kind(d["kind"].cast<std::string>());
  c.in = d["in_features"].cast<int64_t>();
  c.out = d["out_features"].cast<int64_t>();
  c.act = fff::parse_activation(d["activation"].cast<std::string>());
  c.width = get("width", int64_t{0});
  c.depth = get("depth", int64_t{0});
  c.leaf_width = get("leaf_width", int64_t{0});
  c.trees = get("trees", int64_t{1});
  c.output_bias = get("output_bias", true);
  c.validate();
  return c;
}

inline pybind11::dict ff_config_to_dict(const fff::FFConfig& c) {
  pybind11::dict d;
  d["kind"] = fff::ff_kind_name(c.kind);
  d["in_features"] = c.in;
  d["out_features"] = c.out;
  d["activation"] = fff::activation_name(c.act);
  d["width"] = c.width;
  d["depth"] = c.depth;
  d["leaf_width"] = c.leaf_width;
  d["trees"] = c.trees;
  d["output_bias"] = c.output_bias;
  return d;
}

}  // namespace fff_python
