// The classifier (one feedforward block) and its model files.
#include "fff/models/classifier.h"

#include <cmath>
#include <limits>

#include "fff/io/safetensors.h"

namespace fff {

void ModelConfig::validate() const {
  // Messages name the field and its value ("FFConfig.width = 0: ...", "ModelConfig.out = 1:
  // ..."); the CLI maps the field names to its flags.
  FFConfig::validate();
  if (out < 2)
    throw Error("ModelConfig.out = " + std::to_string(out) +
                ": a classifier needs at least 2 output classes");
  if (!(input_norm.std > 0.0f) || !std::isfinite(input_norm.mean))
    throw Error(
        "ModelConfig.input_norm: standardisation must have a finite mean and a positive std");
}

namespace {

const ModelConfig& validated(const ModelConfig& c) {
  c.validate();
  return c;
}

std::string to_str(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

Model::Model(const ModelConfig& cfg, Rng& rng)
    : cfg_(validated(cfg)), block_(make_ff_block(cfg, rng)), cache_(block_->make_cache()) {}

Model::Model(const ModelConfig& cfg, std::unique_ptr<FFBlock> block)
    : cfg_(validated(cfg)), block_(std::move(block)), cache_(block_->make_cache()) {}

std::unique_ptr<Model> make_model(const ModelConfig& cfg, Rng& rng) {
  return std::make_unique<Model>(cfg, rng);
}

void save_model(const std::string& path, Model& model,
                const std::map<std::string, std::string>& extra_metadata) {
  const ModelConfig& c = model.config();
  std::map<std::string, std::string> config = {{"format", "fff-classifier"},
                                               {"format_version", "1"},
                                               {"input_mean", to_str(c.input_norm.mean)},
                                               {"input_std", to_str(c.input_norm.std)}};
  write_ff_metadata(c, config);
  std::map<std::string, std::string> meta = extra_metadata;
  for (const auto& [key, value] : config) meta[key] = value;  // the config wins over extras
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (Param* p : model.params()) tensors.emplace_back(p->name, &p->value);
  save_safetensors(path, tensors, meta);
}

LoadedModel load_model(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  const auto& meta = file.metadata;
  check_metadata_format(meta, path, "fff-classifier", "an fff classifier file");
  ModelConfig c;
  static_cast<FFConfig&>(c) = read_ff_metadata(meta, path);
  c.input_norm.mean = metadata_float(meta, "input_mean", path);
  c.input_norm.std = metadata_float(meta, "input_std", path);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(path + ": bad model config: " + e.what());
  }
  for (const auto& [name, t] : file.tensors)
    for (float v : t.data)
      if (!std::isfinite(v)) throw Error(path + ": tensor '" + name + "' holds NaN or infinity");
  // The block takes the file's tensors after checking them against the shapes the config
  // implies, so that a corrupt size in the metadata cannot make it allocate anything.
  LoadedModel loaded{std::make_unique<Model>(c, make_ff_block_from(c, file.tensors, path)), meta};
  return loaded;
}

}  // namespace fff
