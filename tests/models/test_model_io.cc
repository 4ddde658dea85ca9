// Tests for model files: every model kind round-trips bitwise (weights, config, extra metadata,
// predictions), invalid or corrupted files fail with an fff::Error naming the file, and saving
// over an existing file replaces it atomically without leaving temporary files behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/io/safetensors.h"
#include "fff/models/classifier.h"
#include "temp_dir.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

bool same_bits(const fff::Tensor& a, const fff::Tensor& b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         (a.data.empty() ||
          std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

bool same_float_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof(float)) == 0;
}

struct Case {
  std::string label;
  fff::ModelConfig cfg;
};

fff::ModelConfig base_config(fff::ModelKind kind) {
  fff::ModelConfig c;
  c.kind = kind;
  c.in = 11;
  c.out = 3;
  c.input_norm.mean = 0.2860402f;  // values that need all 9 significant digits
  c.input_norm.std = 0.35302424f;
  return c;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  {
    fff::ModelConfig c = base_config(fff::ModelKind::ff);
    c.width = 7;
    c.act = fff::Activation::relu;
    cases.push_back({"ff", c});
  }
  {
    fff::ModelConfig c = base_config(fff::ModelKind::leaf_fff);
    c.depth = 2;
    c.leaf_width = 3;
    c.act = fff::Activation::gelu;
    cases.push_back({"leaf_fff", c});
  }
  {
    fff::ModelConfig c = base_config(fff::ModelKind::neuron_fff);
    c.depth = 2;
    c.trees = 2;
    c.output_bias = true;
    c.act = fff::Activation::gelu;
    cases.push_back({"neuron_fff_bias", c});
  }
  {
    fff::ModelConfig c = base_config(fff::ModelKind::neuron_fff);
    c.depth = 3;
    c.trees = 1;
    c.output_bias = false;
    c.act = fff::Activation::identity;
    cases.push_back({"neuron_fff_no_bias", c});
  }
  return cases;
}

void expect_same_config(const fff::ModelConfig& a, const fff::ModelConfig& b) {
  fff_test::expect_same_ff_config(a, b);
  EXPECT_TRUE(same_float_bits(a.input_norm.mean, b.input_norm.mean))
      << a.input_norm.mean << " vs " << b.input_norm.mean;
  EXPECT_TRUE(same_float_bits(a.input_norm.std, b.input_norm.std))
      << a.input_norm.std << " vs " << b.input_norm.std;
}

void expect_same_params(fff::Model& a, fff::Model& b) {
  std::vector<fff::Param*> pa = a.params(), pb = b.params();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i]->name, pb[i]->name);
    EXPECT_TRUE(same_bits(pa[i]->value, pb[i]->value)) << "param " << pa[i]->name;
  }
}

// Predictions (logits and routes) on the same random batch are bitwise equal.
void expect_same_predictions(fff::Model& a, fff::Model& b, uint64_t seed) {
  fff::Context ectx(2);
  const int64_t B = 37, in = a.config().in, C = a.config().out;
  fff::Rng rng(seed);
  fff::Tensor x({B, in});
  for (float& v : x.data) v = rng.normal();
  fff::Tensor ya({B, C}), yb({B, C});
  std::vector<int32_t> ra, rb;
  a.prepare_inference();
  b.prepare_inference();
  a.predict(ectx, x.ptr(), B, ya.ptr(), &ra);
  b.predict(ectx, x.ptr(), B, yb.ptr(), &rb);
  EXPECT_TRUE(same_bits(ya, yb));
  EXPECT_EQ(ra, rb);
  for (float v : ya.data) EXPECT_TRUE(std::isfinite(v));
}

// Runs f, which must throw fff::Error whose message contains path (and `also`, if given).
void expect_error_naming(const std::function<void()>& f, const std::string& path,
                         const std::string& also = "") {
  try {
    f();
    ADD_FAILURE() << "no fff::Error thrown for " << path;
  } catch (const fff::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    if (!also.empty()) {
      EXPECT_NE(msg.find(also), std::string::npos) << "message lacks '" << also << "': " << msg;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected fff::Error, got another exception: " << e.what();
  }
}

void expect_load_error(const std::string& path, const std::string& also = "") {
  expect_error_naming([&] { fff::load_model(path); }, path, also);
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ModelIO, RoundTripEveryKind) {
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.label);
    TempDir dir("fff_model_io");
    fff::Rng rng(1234);
    auto model = fff::make_model(c.cfg, rng);
    const std::map<std::string, std::string> extra = {
        {"data", "synthetic"},
        {"note", "spaces, \"quotes\", unicode \xc3\xbc and a\nnewline"},
        {"seed", "42"},
        {"empty", ""}};
    const std::string path = dir.file(c.label + ".safetensors");
    fff::save_model(path, *model, extra);
    fff::LoadedModel loaded = fff::load_model(path);
    ASSERT_TRUE(loaded.model);

    expect_same_config(model->config(), loaded.model->config());
    expect_same_params(*model, *loaded.model);
    for (const auto& [k, v] : extra) {
      auto it = loaded.metadata.find(k);
      ASSERT_NE(it, loaded.metadata.end()) << "metadata key " << k;
      EXPECT_EQ(it->second, v) << "metadata key " << k;
    }
    EXPECT_EQ(loaded.metadata.at("format"), "fff-classifier");
    EXPECT_EQ(loaded.metadata.at("model"), fff::model_kind_name(c.cfg.kind));
    expect_same_predictions(*model, *loaded.model, 99);

    // The file holds exactly the model's tensors.
    fff::SafetensorsFile raw = fff::load_safetensors(path);
    EXPECT_EQ(raw.tensors.size(), model->params().size());
    if (c.cfg.kind == fff::ModelKind::neuron_fff) {
      EXPECT_EQ(raw.tensors.count("b"), c.cfg.output_bias ? 1u : 0u);
    }

    // Saving the loaded model again gives identical tensors.
    const std::string path2 = dir.file("again.safetensors");
    fff::save_model(path2, *loaded.model, loaded.metadata);
    fff::SafetensorsFile raw2 = fff::load_safetensors(path2);
    ASSERT_EQ(raw.tensors.size(), raw2.tensors.size());
    for (const auto& [name, t] : raw.tensors) EXPECT_TRUE(same_bits(t, raw2.tensors.at(name)));
    EXPECT_EQ(raw.metadata, raw2.metadata);
  }
}

// The metadata of a valid leaf FFF file, and its tensors, to build invalid files from.
struct ValidFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, fff::Tensor> tensors;
};

ValidFile valid_file(const TempDir& dir, const fff::ModelConfig& cfg) {
  fff::Rng rng(7);
  auto model = fff::make_model(cfg, rng);
  const std::string path = dir.file("valid_source.safetensors");
  fff::save_model(path, *model, {{"data", "synthetic"}});
  fff::SafetensorsFile f = fff::load_safetensors(path);
  std::remove(path.c_str());
  return {f.metadata, f.tensors};
}

void write_file(const std::string& path, const std::map<std::string, fff::Tensor>& tensors,
                const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, const fff::Tensor*>> list;
  for (const auto& [name, t] : tensors) list.emplace_back(name, &t);
  fff::save_safetensors(path, list, metadata);
}

fff::ModelConfig leaf_config() {
  fff::ModelConfig c = base_config(fff::ModelKind::leaf_fff);
  c.depth = 2;
  c.leaf_width = 3;
  return c;
}

// Writes v's tensors with one metadata entry changed to `name` in dir, and expects loading it to
// fail with an error naming the file (and `also`, if given).
void expect_bad_metadata(const TempDir& dir, const ValidFile& v, const std::string& key,
                         const std::string& value, const std::string& name,
                         const std::string& also = "") {
  auto meta = v.metadata;
  meta[key] = value;
  const std::string path = dir.file(name);
  write_file(path, v.tensors, meta);
  expect_load_error(path, also);
}

TEST(ModelIO, ValidFileBuiltByHandLoads) {
  // Sanity check of the helpers used by the corruption tests below.
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  const std::string path = dir.file("ok.safetensors");
  write_file(path, v.tensors, v.metadata);
  EXPECT_NO_THROW(fff::load_model(path));
}

TEST(ModelIO, MissingFile) {
  TempDir dir("fff_model_io");
  const std::string path = dir.file("does_not_exist.safetensors");
  expect_load_error(path);
}

TEST(ModelIO, GarbageFile) {
  TempDir dir("fff_model_io");
  const std::string path = dir.file("garbage.safetensors");
  {
    std::ofstream out(path, std::ios::binary);
    out << "this is not a safetensors file at all, just some text";
  }
  expect_load_error(path);
}

TEST(ModelIO, MetadataWithoutModel) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  v.metadata.erase("model");
  const std::string path = dir.file("no_model.safetensors");
  write_file(path, v.tensors, v.metadata);
  expect_load_error(path, "model");
}

TEST(ModelIO, NoMetadataAtAll) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  const std::string path = dir.file("no_metadata.safetensors");
  write_file(path, v.tensors, {});
  expect_load_error(path);
}

TEST(ModelIO, WrongFormat) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  expect_bad_metadata(dir, v, "format", "pt", "wrong_format.safetensors", "pt");
}

TEST(ModelIO, UnsupportedFormatVersion) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  expect_bad_metadata(dir, v, "format_version", "2", "version2.safetensors", "format_version");
}

TEST(ModelIO, UnknownModelKindAndActivation) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  expect_bad_metadata(dir, v, "model", "transformer", "bad_kind.safetensors", "transformer");
  expect_bad_metadata(dir, v, "activation", "tanh", "bad_act.safetensors");
}

TEST(ModelIO, TensorWithWrongShape) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  ASSERT_TRUE(v.tensors.count("w2"));
  {
    auto tensors = v.tensors;
    fff::Tensor& t = tensors.at("w2");
    // Same number of elements, transposed shape: only the shape is wrong.
    std::swap(t.shape[0], t.shape[1]);
    const std::string path = dir.file("transposed.safetensors");
    write_file(path, tensors, v.metadata);
    expect_load_error(path, "w2");
  }
  {
    auto tensors = v.tensors;
    fff::Tensor t({tensors.at("b1").size() + 1}, 0.5f);
    tensors["b1"] = t;
    const std::string path = dir.file("longer.safetensors");
    write_file(path, tensors, v.metadata);
    expect_load_error(path, "b1");
  }
  {
    // The config says in = 11; tensors shaped for in = 12 do not fit.
    ValidFile v12 = valid_file(dir, [] {
      fff::ModelConfig c = leaf_config();
      c.in = 12;
      return c;
    }());
    const std::string path = dir.file("other_config.safetensors");
    write_file(path, v12.tensors, v.metadata);
    expect_load_error(path);
  }
}

TEST(ModelIO, MissingTensor) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  ASSERT_EQ(v.tensors.erase("nodes_b"), 1u);
  const std::string path = dir.file("missing_tensor.safetensors");
  write_file(path, v.tensors, v.metadata);
  expect_load_error(path, "nodes_b");
}

TEST(ModelIO, NeuronFFFBiasMismatch) {
  TempDir dir("fff_model_io");
  fff::ModelConfig c = base_config(fff::ModelKind::neuron_fff);
  c.depth = 2;
  c.output_bias = true;
  ValidFile v = valid_file(dir, c);
  {
    // The config wants an output bias, the file has none.
    auto tensors = v.tensors;
    ASSERT_EQ(tensors.erase("b"), 1u);
    const std::string path = dir.file("no_bias.safetensors");
    write_file(path, tensors, v.metadata);
    expect_load_error(path, "'b'");
  }
  // The config says no output bias, but the file has one.
  expect_bad_metadata(dir, v, "output_bias", "false", "extra_bias.safetensors", "'b'");
}

TEST(ModelIO, ExtraTensor) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  v.tensors["unexpected_extra"] = fff::Tensor({2, 2}, 1.0f);
  const std::string path = dir.file("extra_tensor.safetensors");
  write_file(path, v.tensors, v.metadata);
  expect_load_error(path, "unexpected_extra");
}

TEST(ModelIO, NonFiniteWeight) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  int i = 0;
  for (float b : bad) {
    auto tensors = v.tensors;
    fff::Tensor& t = tensors.at("w1");
    t.data[t.data.size() / 2] = b;
    const std::string path = dir.file("nonfinite" + std::to_string(i++) + ".safetensors");
    write_file(path, tensors, v.metadata);
    expect_load_error(path, "w1");
  }
}

TEST(ModelIO, DepthOutOfRange) {
  TempDir dir("fff_model_io");
  ValidFile leaf = valid_file(dir, leaf_config());
  for (const char* depth : {"21", "-1", "64", "1000"}) {
    SCOPED_TRACE(depth);
    auto meta = leaf.metadata;
    meta["depth"] = depth;
    const std::string path = dir.file(std::string("leafd") + depth + ".safetensors");
    write_file(path, leaf.tensors, meta);
    expect_load_error(path, "depth");
  }
  fff::ModelConfig nc = base_config(fff::ModelKind::neuron_fff);
  nc.depth = 1;
  ValidFile neuron = valid_file(dir, nc);
  for (const char* depth : {"25", "-3", "63"}) {
    SCOPED_TRACE(depth);
    auto meta = neuron.metadata;
    meta["depth"] = depth;
    const std::string path = dir.file(std::string("neurond") + depth + ".safetensors");
    write_file(path, neuron.tensors, meta);
    expect_load_error(path, "depth");
  }
}

TEST(ModelIO, NonIntegerIn) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  int i = 0;
  for (const char* in : {"11.5", "eleven", "", "11abc", "1e1", "99999999999999999999999"}) {
    SCOPED_TRACE(std::string("in = '") + in + "'");
    expect_bad_metadata(dir, v, "in", in, "in" + std::to_string(i++) + ".safetensors", "'in'");
  }
  expect_bad_metadata(dir, v, "in", "0", "in_zero.safetensors");
}

TEST(ModelIO, BadStandardisation) {
  TempDir dir("fff_model_io");
  ValidFile v = valid_file(dir, leaf_config());
  int i = 0;
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"input_std", "0"},
                                                        {"input_std", "-1"},
                                                        {"input_std", "nan"},
                                                        {"input_mean", "inf"},
                                                        {"input_mean", "abc"}}) {
    SCOPED_TRACE(key + " = " + value);
    expect_bad_metadata(dir, v, key, value, "norm" + std::to_string(i++) + ".safetensors");
  }
}

TEST(ModelIO, SaveOverExistingFileReplacesIt) {
  TempDir dir("fff_model_io");
  const std::string path = dir.file("model.safetensors");
  fff::ModelConfig c1 = leaf_config();
  fff::Rng rng1(1);
  auto m1 = fff::make_model(c1, rng1);
  fff::save_model(path, *m1, {{"run", "first"}});

  fff::ModelConfig c2 = base_config(fff::ModelKind::ff);
  c2.width = 5;
  fff::Rng rng2(2);
  auto m2 = fff::make_model(c2, rng2);
  fff::save_model(path, *m2, {{"run", "second"}});

  fff::LoadedModel loaded = fff::load_model(path);
  expect_same_config(c2, loaded.model->config());
  expect_same_params(*m2, *loaded.model);
  EXPECT_EQ(loaded.metadata.at("run"), "second");
  EXPECT_EQ(dir_entries(dir.path()), std::vector<std::string>{"model.safetensors"});

  // A third save, over a larger file with a smaller one, still leaves exactly one valid file.
  fff::save_model(path, *m1, {{"run", "third"}});
  fff::LoadedModel again = fff::load_model(path);
  expect_same_params(*m1, *again.model);
  EXPECT_EQ(again.metadata.at("run"), "third");
  EXPECT_EQ(dir_entries(dir.path()), std::vector<std::string>{"model.safetensors"});
}

TEST(ModelIO, SaveIntoMissingDirectoryFailsNamingPath) {
  TempDir dir("fff_model_io");
  const std::string path = dir.file("no/such/dir/model.safetensors");
  fff::Rng rng(3);
  auto m = fff::make_model(leaf_config(), rng);
  expect_error_naming([&] { fff::save_model(path, *m); }, path);
  EXPECT_TRUE(dir_entries(dir.path()).empty());
}

}  // namespace

// Regression: load_model once built the model from the metadata (allocating every tensor) before
// comparing the file's shapes with the config, so a corrupt size gave std::bad_alloc or an error
// that did not name the file. The widths below exceed the 128 TiB user address space, so an
// allocation would fail at once whatever the overcommit setting.
TEST(ModelIO, ImplausibleSizesFailWithErrorNamingFile) {
  TempDir dir("fff_model_io");
  fff::ModelConfig c = base_config(fff::ModelKind::ff);
  c.width = 5;
  ValidFile ff = valid_file(dir, c);
  int i = 0;
  for (const char* width : {"10000000000000", "4611686018427387904"}) {
    SCOPED_TRACE(std::string("width = ") + width);
    auto meta = ff.metadata;
    meta["width"] = width;
    const std::string path = dir.file("huge" + std::to_string(i++) + ".safetensors");
    write_file(path, ff.tensors, meta);
    expect_load_error(path);
  }
  fff::ModelConfig nc = base_config(fff::ModelKind::neuron_fff);
  nc.depth = 1;
  ValidFile neuron = valid_file(dir, nc);
  {
    auto meta = neuron.metadata;
    meta["trees"] = "5000000000000";
    const std::string path = dir.file("huge_trees.safetensors");
    write_file(path, neuron.tensors, meta);
    expect_load_error(path);
  }
}

TEST(ModelConfig, ValidateNamesTheFieldAndValue) {
  struct Bad {
    fff::ModelKind kind;
    void (*change)(fff::ModelConfig&);
    const char* needle;
  };
  const Bad cases[] = {
      {fff::ModelKind::ff, [](fff::ModelConfig& c) { c.width = 0; }, "FFConfig.width = 0:"},
      {fff::ModelKind::leaf_fff, [](fff::ModelConfig& c) { c.leaf_width = -2; },
       "FFConfig.leaf_width = -2:"},
      {fff::ModelKind::leaf_fff, [](fff::ModelConfig& c) { c.depth = 21; }, "FFConfig.depth = 21:"},
      {fff::ModelKind::neuron_fff, [](fff::ModelConfig& c) { c.trees = 0; }, "FFConfig.trees = 0:"},
      {fff::ModelKind::neuron_fff, [](fff::ModelConfig& c) { c.depth = 25; },
       "FFConfig.depth = 25:"},
      {fff::ModelKind::ff, [](fff::ModelConfig& c) { c.out = 1; }, "ModelConfig.out = 1:"},
  };
  for (const Bad& b : cases) {
    SCOPED_TRACE(b.needle);
    fff::ModelConfig c = base_config(b.kind);
    c.width = 4, c.leaf_width = 2, c.depth = 1, c.trees = 1;
    EXPECT_NO_THROW(c.validate());
    b.change(c);
    try {
      c.validate();
      ADD_FAILURE() << "no error";
    } catch (const fff::Error& e) {
      EXPECT_NE(std::string(e.what()).find(b.needle), std::string::npos) << e.what();
    }
  }
}
