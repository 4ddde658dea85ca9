// Tests for language model training: text loading and its errors, checkpoints (round trip, and
// a run resumed from a checkpoint ending exactly where an uninterrupted run ends), evaluation
// and sampling.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "fff/io/safetensors.h"
#include "fff/training/lm_train.h"
#include "temp_dir.h"
#include "test_util.h"

namespace {

using namespace fff_test;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string corpus() {
  std::string s;
  for (int i = 0; i < 60; ++i)
    s += "The quick brown fox " + std::to_string(i) + " jumps over the lazy dog.\n%\n";
  return s;
}

TEST(LmText, LoadsFilesAndDirectoriesAndSplits) {
  TempDir dir;
  write_file(dir.file("b"), "world");
  write_file(dir.file("a"), "hello ");
  write_file(dir.file("a.dat"), "INDEX");  // fortune index files are skipped
  const fff::TextSplit s = fff::load_text(dir.path(), 0.25);
  std::string all;
  for (int32_t t : s.train) all.push_back(static_cast<char>(t));
  for (int32_t t : s.val) all.push_back(static_cast<char>(t));
  EXPECT_EQ(all, "hello world");
  EXPECT_EQ(s.val.size(), 2u);
}

TEST(LmText, ClearErrors) {
  TempDir dir;
  write_file(dir.file("empty"), "");
  write_file(dir.file("short"), "ab");
  auto message = [](const std::string& path) {
    try {
      fff::load_text(path, 0.1);
    } catch (const fff::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(dir.file("missing")).find("no such file"), std::string::npos);
  EXPECT_NE(message(dir.file("empty")).find("empty"), std::string::npos);
  EXPECT_NE(message(dir.file("short")).find("too short"), std::string::npos);
  EXPECT_NE(message(dir.file("empty")).find(dir.file("empty")), std::string::npos);
}

fff::LmTrainer tiny_trainer(fff::FFKind mixer, int64_t steps, const std::string& save) {
  fff::LmConfig c;
  c.dim = 8;
  c.layers = 2;
  c.window = 2;
  c.mixer = mixer;
  c.width = 16;
  c.leaf_width = 4;
  c.scan = fff::ScanAlgo::chunked;
  fff::LmTrainOptions o;
  o.seq = 8;
  o.batch = 4;
  o.steps = steps;
  o.lr = 3e-3f;
  o.eval_every = 3;
  o.checkpoint_every = 3;
  o.save_path = save;
  fff::Rng rng(5);
  return fff::LmTrainer(fff::make_lm(c, rng), o);
}

TEST(LmTrain, ResumedRunEqualsUninterrupted) {
  fff::Context ectx(2);
  TempDir dir;
  write_file(dir.file("text"), corpus());
  const fff::TextSplit text = fff::load_text(dir.file("text"), 0.1);
  for (fff::FFKind mixer : {fff::FFKind::ff, fff::FFKind::leaf_fff}) {
    fff::LmTrainer whole = tiny_trainer(mixer, 7, "");
    const fff::LmTrainResult rw = fff::train_lm(ectx, whole, text);
    EXPECT_EQ(rw.steps, 7);
    EXPECT_TRUE(std::isfinite(rw.val_bpc));
    // The same run killed after step 3 (just after the checkpoint written then), resumed.
    const std::string ckpt = dir.file("ckpt.safetensors");
    fff::LmTrainer first = tiny_trainer(mixer, 7, ckpt);
    struct Killed {};
    EXPECT_THROW(fff::train_lm(ectx, first, text,
                               [](const fff::LmProgress& p) {
                                 if (p.step == 3) throw Killed{};
                               }),
                 Killed);
    fff::LmTrainer resumed = fff::load_lm_checkpoint(ckpt);
    EXPECT_EQ(resumed.step, 3);
    EXPECT_EQ(resumed.options.steps, 7);
    resumed.options.save_path.clear();
    fff::train_lm(ectx, resumed, text);
    const auto pw = whole.model.params(), pr = resumed.model.params();
    ASSERT_EQ(pw.size(), pr.size());
    for (size_t i = 0; i < pw.size(); ++i)
      EXPECT_TRUE(bitwise_equal(pw[i]->value.data, pr[i]->value.data))
          << fff::ff_kind_name(mixer) << " " << pw[i]->name;
  }
}

TEST(LmTrain, CheckpointRejectsOtherFiles) {
  TempDir dir;
  write_file(dir.file("junk"), "not a checkpoint at all");
  EXPECT_THROW(fff::load_lm_checkpoint(dir.file("junk")), fff::Error);
  EXPECT_THROW(fff::load_lm_checkpoint(dir.file("missing")), fff::Error);
  // A checkpoint with one NaN weight (a damaged file): refused, naming the tensor.
  fff::LmTrainer tr = tiny_trainer(fff::FFKind::leaf_fff, 1, "");
  fff::save_lm_checkpoint(dir.file("good"), tr);
  fff::SafetensorsFile f = fff::load_safetensors(dir.file("good"));
  f.tensors.at("out.w").data[3] = std::nanf("");
  std::vector<std::pair<std::string, const fff::Tensor*>> tensors;
  for (const auto& [name, t] : f.tensors) tensors.emplace_back(name, &t);
  fff::save_safetensors(dir.file("nan"), tensors, f.metadata);
  try {
    fff::load_lm_checkpoint(dir.file("nan"));
    ADD_FAILURE() << "no error";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'out.w' holds NaN"), std::string::npos) << e.what();
  }
}

TEST(LmTrain, LearnsAndSamplesDeterministically) {
  fff::Context ectx(2);
  TempDir dir;
  write_file(dir.file("text"), corpus());
  const fff::TextSplit text = fff::load_text(dir.file("text"), 0.1);
  fff::LmTrainer tr = tiny_trainer(fff::FFKind::leaf_fff, 40, "");
  const double before = fff::evaluate_bpc(ectx, tr.model, text.val);
  const fff::LmTrainResult r = fff::train_lm(ectx, tr, text);
  EXPECT_LT(r.val_bpc, before - 1.0) << "40 steps should learn the byte statistics";
  const std::string a = fff::sample_lm(ectx, tr.model, "The ", 30, 0.8f, 7);
  const std::string b = fff::sample_lm(ectx, tr.model, "The ", 30, 0.8f, 7);
  EXPECT_EQ(a.size(), 30u);
  EXPECT_EQ(a, b);
  // NaN fails the option checks (it compares false with everything).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (float t : {nan, -1.0f, std::numeric_limits<float>::infinity()})
    EXPECT_THROW(fff::sample_lm(ectx, tr.model, "The ", 3, t, 7), fff::Error) << t;
  fff::LmTrainer nan_hardening = tiny_trainer(fff::FFKind::leaf_fff, 41, "");
  nan_hardening.options.hardening = nan;
  EXPECT_THROW(fff::train_lm(ectx, nan_hardening, text), fff::Error);
  fff::LmTrainer nan_after = tiny_trainer(fff::FFKind::leaf_fff, 41, "");
  nan_after.options.harden_after = nan;
  EXPECT_THROW(fff::train_lm(ectx, nan_after, text), fff::Error);
}

}  // namespace
