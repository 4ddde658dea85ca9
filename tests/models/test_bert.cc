// Tests of the BERT encoder: file round trip and validation, invariances (padding, threads,
// FFF of depth 0 equals dense FF), pooling, and agreement with an independent PyTorch model of the
// same architecture (scripts/bert_reference.py) through the checkpoint converter.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "cpu/cmm_kernels.h"
#include "fff/core/context.h"
#include "fff/io/safetensors.h"
#include "fff/models/bert.h"
#include "fff/testing/ff.h"
#include "temp_dir.h"
#include "test_util.h"

using fff_test::bitwise_equal;

namespace {

fff::BertConfig small_config(fff::FFKind ff) {
  fff::BertConfig c;
  c.hidden = 24, c.layers = 2, c.heads = 3, c.vocab = 50, c.max_seq = 20, c.norm_eps = 1e-12f;
  c.ff.kind = ff, c.ff.width = 40, c.ff.trees = 2, c.ff.depth = 3;
  return c;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  fff::Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return ids;
}

std::vector<float> encode(const fff::BertModel& m, const std::vector<int32_t>& ids,
                          const std::vector<uint8_t>* mask, int64_t B, int64_t S, int threads = 2) {
  fff::Context ectx(threads);
  std::vector<float> h(static_cast<size_t>(B * S * m.cfg.hidden), NAN);
  fff::bert_encode(ectx, m, ids.data(), mask ? mask->data() : nullptr, B, S, h.data());
  return h;
}

// A layer's feedforward parameter by name ("w1", "b1", "w2").
fff::Tensor& ff_param(fff::BertLayer& L, const std::string& name) {
  for (fff::Param* p : L.ff->params())
    if (p->name == name) return p->value;
  throw fff::Error("no feedforward parameter " + name);
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double d = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return d;
}

// `file` written as `name` in dir; returns the path.
std::string write_file(TempDir& dir, const std::string& name, const fff::SafetensorsFile& file) {
  std::vector<std::pair<std::string, const fff::Tensor*>> t;
  for (const auto& [k, v] : file.tensors) t.push_back({k, &v});
  fff::save_safetensors(dir.file(name), t, file.metadata);
  return dir.file(name);
}

// load_bert refuses `path` with an error naming `needle` and the path.
void expect_load_error(const std::string& path, const std::string& needle) {
  try {
    fff::load_bert(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// Saves a model, then rewrites its file with one edit at a time: load_bert must refuse each
// edited file with an error naming `needle` and the file.
class EditedFileCheck {
 public:
  EditedFileCheck(TempDir& dir, const fff::BertModel& m) : dir_(dir) {
    fff::save_bert(m, dir.file("good.safetensors"));
    good_ = fff::load_safetensors(dir.file("good.safetensors"));
  }
  template <class Edit>
  void operator()(const std::string& name, Edit edit, const std::string& needle) const {
    fff::SafetensorsFile g = good_;
    edit(g);
    expect_load_error(write_file(dir_, name, g), needle);
  }

 private:
  TempDir& dir_;
  fff::SafetensorsFile good_;
};

// Two random sequences of S and L < S tokens in one batch, the second padded to S: each real
// row equals its sequence encoded alone. Returns the batch, its mask and its hidden states.
struct PaddedRun {
  std::vector<int32_t> batch;
  std::vector<uint8_t> mask;
  std::vector<float> hidden;
};
PaddedRun expect_padding_invariant(const fff::BertModel& m, int64_t S, int64_t L) {
  const int64_t H = m.cfg.hidden;
  const auto a = random_ids(S, m.cfg.vocab, 3), b = random_ids(L, m.cfg.vocab, 4);
  PaddedRun r{a, std::vector<uint8_t>(2 * S, 1), {}};
  r.batch.insert(r.batch.end(), b.begin(), b.end());
  r.batch.resize(2 * S, 0);
  std::fill(r.mask.begin() + S + L, r.mask.end(), 0);
  r.hidden = encode(m, r.batch, &r.mask, 2, S);
  const auto ha = encode(m, a, nullptr, 1, S);
  const auto hl = encode(m, b, nullptr, 1, L);
  EXPECT_LT(max_abs_diff(r.hidden.data(), ha.data(), S * H), 1e-5);
  EXPECT_LT(max_abs_diff(r.hidden.data() + S * H, hl.data(), L * H), 1e-5);
  return r;
}

}  // namespace

// Files name the feedforward kind in fff's one spelling (ff, neuron-fff); files written before
// it said dense or fff (neuron FFF in this format) and still load, as the same model.
TEST(Bert, FilesSayTheBlockKindInOneSpellingAndOldFilesStillLoad) {
  TempDir dir;
  const std::pair<fff::FFKind, const char*> kinds[] = {{fff::FFKind::ff, "dense"},
                                                       {fff::FFKind::neuron_fff, "fff"}};
  for (const auto& [kind, old_name] : kinds) {
    const fff::BertModel m = fff::make_random_bert(small_config(kind), 5);
    const std::string path = dir.file("new.safetensors"), old_path = dir.file("old.safetensors");
    fff::save_bert(m, path);
    fff::SafetensorsFile f = fff::load_safetensors(path);
    EXPECT_EQ(f.metadata.at("ff"), fff::ff_kind_name(kind));
    f.metadata["ff"] = old_name;
    std::vector<std::pair<std::string, const fff::Tensor*>> tensors;
    for (const auto& [name, t] : f.tensors) tensors.emplace_back(name, &t);
    fff::save_safetensors(old_path, tensors, f.metadata);
    const fff::BertModel old = fff::load_bert(old_path);
    EXPECT_EQ(old.cfg.ff.kind, kind) << old_name;
    const auto ids = random_ids(2 * 5, m.cfg.vocab, 3);
    EXPECT_TRUE(bitwise_equal(encode(m, ids, nullptr, 2, 5), encode(old, ids, nullptr, 2, 5)));
    f.metadata["ff"] = "leaf-fff";
    fff::save_safetensors(old_path, tensors, f.metadata);
    EXPECT_THROW(fff::load_bert(old_path), fff::Error);
  }
}

TEST(Bert, SaveLoadRoundTripGivesIdenticalOutputs) {
  TempDir dir;
  for (fff::FFKind ff : {fff::FFKind::ff, fff::FFKind::neuron_fff}) {
    fff::BertModel m = fff::make_random_bert(small_config(ff), 7);
    m.vocab_text = "[PAD]\n[UNK]\nhello";
    m.lowercase = false;
    const std::string path = dir.file("m.safetensors");
    fff::save_bert(m, path);
    const fff::BertModel r = fff::load_bert(path);
    EXPECT_EQ(r.cfg.describe(), m.cfg.describe());
    EXPECT_EQ(r.vocab_text, m.vocab_text);
    EXPECT_FALSE(r.lowercase);
    const auto ids = random_ids(2 * 11, m.cfg.vocab, 1);
    EXPECT_TRUE(bitwise_equal(encode(m, ids, nullptr, 2, 11), encode(r, ids, nullptr, 2, 11)));
  }
}

TEST(Bert, LoadRejectsWrongFilesNamingTheProblem) {
  TempDir dir;
  const fff::BertModel m = fff::make_random_bert(small_config(fff::FFKind::neuron_fff), 7);
  const std::string good = dir.file("good.safetensors");
  fff::save_bert(m, good);
  fff::SafetensorsFile f = fff::load_safetensors(good);
  auto rewrite = [&](const std::string& name, const fff::SafetensorsFile& g) {
    return write_file(dir, name, g);
  };
  {
    fff::SafetensorsFile g = f;
    g.tensors.erase("layers.1.fff.w2");
    expect_load_error(rewrite("missing.safetensors", g), "layers.1.fff.w2");
  }
  {
    fff::SafetensorsFile g = f;
    g.tensors["layers.0.attn.qkv"] = fff::Tensor({72, 23});
    expect_load_error(rewrite("shape.safetensors", g), "layers.0.attn.qkv");
  }
  {
    fff::SafetensorsFile g = f;
    g.tensors["extra"] = fff::Tensor({1});
    expect_load_error(rewrite("extra.safetensors", g), "extra");
  }
  {
    fff::SafetensorsFile g = f;
    g.metadata["format"] = "fff-classifier";
    expect_load_error(rewrite("format.safetensors", g), "not an fff BERT file");
  }
  {
    fff::SafetensorsFile g = f;
    g.metadata["heads"] = "5";
    expect_load_error(rewrite("heads.safetensors", g), "heads");
  }
  {
    fff::SafetensorsFile g = f;
    g.metadata["ff"] = "moe";
    expect_load_error(rewrite("ff.safetensors", g), "moe");
  }
}

TEST(Bert, EncodeRejectsBadInput) {
  fff::Context ectx(2);
  const fff::BertModel m = fff::make_random_bert(small_config(fff::FFKind::ff), 7);
  std::vector<int32_t> ids = random_ids(21, m.cfg.vocab, 2);
  std::vector<float> h(21 * 24);
  EXPECT_THROW(fff::bert_encode(ectx, m, ids.data(), nullptr, 1, 21, h.data()),
               fff::Error);  // > 20
  ids[3] = 50;
  EXPECT_THROW(fff::bert_encode(ectx, m, ids.data(), nullptr, 1, 5, h.data()), fff::Error);
  ids[3] = -1;
  EXPECT_THROW(fff::bert_encode(ectx, m, ids.data(), nullptr, 1, 5, h.data()), fff::Error);
}

TEST(Bert, PaddingDoesNotChangeRealTokensAndBatchingDoesNotMatter) {
  for (fff::FFKind ff : {fff::FFKind::ff, fff::FFKind::neuron_fff}) {
    const fff::BertModel m = fff::make_random_bert(small_config(ff), 8);
    expect_padding_invariant(m, 13, 7);
  }
}

TEST(Bert, OneAndTwoThreadsAgreeBitwise) {
  for (fff::FFKind ff : {fff::FFKind::ff, fff::FFKind::neuron_fff}) {
    const fff::BertModel m = fff::make_random_bert(small_config(ff), 9);
    const auto ids = random_ids(3 * 17, m.cfg.vocab, 5);
    std::vector<uint8_t> mask(3 * 17, 1);
    mask[3 * 17 - 1] = 0;
    const auto one = encode(m, ids, &mask, 3, 17, 1);
    EXPECT_TRUE(bitwise_equal(one, encode(m, ids, &mask, 3, 17, 2)));
  }
}

TEST(Bert, HalfFffWeightsEqualFp32InferenceWithRoundedWeights) {
  fff::BertModel m = fff::make_random_bert(small_config(fff::FFKind::neuron_fff), 13);
  fff::BertModel rounded = m;
  for (auto& L : rounded.layers)
    for (fff::Tensor* w : {&ff_param(L, "w1"), &ff_param(L, "w2")})
      for (float& v : w->data) {
        uint16_t bits;
        fff::cpu::to_half(&v, 1, &bits);
        v = fff::cpu::half_to_float(bits);
      }
  fff::bert_use_half_fff(m);
  const auto ids = random_ids(2 * 19, m.cfg.vocab, 14);
  std::vector<uint8_t> mask(2 * 19, 1);
  mask[2 * 19 - 3] = mask[2 * 19 - 2] = mask[2 * 19 - 1] = 0;
  EXPECT_TRUE(bitwise_equal(encode(m, ids, &mask, 2, 19), encode(rounded, ids, &mask, 2, 19)));
  // A dense model has no FFF weights to round.
  fff::BertModel dense = fff::make_random_bert(small_config(fff::FFKind::ff), 15);
  EXPECT_THROW(fff::bert_use_half_fff(dense), fff::Error);
}

TEST(Bert, FffOfDepthZeroEqualsDenseFeedforward) {
  // K trees of depth 0 are K always-used neurons: a dense FF of width K (with b1 = 0).
  fff::BertConfig fc = small_config(fff::FFKind::neuron_fff);
  fc.ff.trees = 6, fc.ff.depth = 0;
  fff::BertModel f = fff::make_random_bert(fc, 10);
  fff::BertConfig dc = fc;
  dc.ff.kind = fff::FFKind::ff, dc.ff.width = 6;
  fff::BertModel d = fff::make_random_bert(dc, 10);
  const int64_t H = fc.hidden;
  d.word = f.word;
  d.pos_scale = f.pos_scale;
  for (size_t i = 0; i < f.layers.size(); ++i) {
    fff::BertLayer& L = f.layers[i];
    ff_param(L, "b1").zero();
    d.layers[i].qkv = L.qkv;
    d.layers[i].out = L.out;
    // The dense block holds w1 (H, K) and w2 (K, H); the trees' neurons are rows of (K, H).
    fff::Tensor& w1 = ff_param(d.layers[i], "w1");
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t c = 0; c < H; ++c) w1.row(c)[r] = ff_param(L, "w1").row(r)[c];
    ff_param(d.layers[i], "w2") = ff_param(L, "w2");
  }
  // The weights changed after make_random_bert prepared the models: prepare them again.
  fff::bert_prepare_inference(f);
  fff::bert_prepare_inference(d);
  const auto ids = random_ids(2 * 9, fc.vocab, 6);
  const auto hf = encode(f, ids, nullptr, 2, 9), hd = encode(d, ids, nullptr, 2, 9);
  EXPECT_LT(max_abs_diff(hf.data(), hd.data(), hf.size()), 2e-5);
}

TEST(Bert, MeanPoolSkipsPadding) {
  const std::vector<float> h = {1, 2, 3, 4, 100, 100, 5, 6, 7, 8, 9, 10};  // B=2, S=3, H=2
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 1, 1};
  std::vector<float> out(4);
  fff::bert_mean_pool(h.data(), mask.data(), 2, 3, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{2, 3, 7, 8}));
}

// ---- The original post-norm BERT (arch bert) ----

namespace {

fff::BertConfig post_norm_config() {
  fff::BertConfig c = small_config(fff::FFKind::ff);
  c.arch = fff::BertArch::bert;
  c.ff.output_bias = true;
  c.type_vocab = 2;
  return c;
}

}  // namespace

TEST(BertPostNorm, SaveLoadRoundTripKeepsArchAndOutputs) {
  TempDir dir;
  fff::BertModel m = fff::make_random_bert(post_norm_config(), 21);
  m.normalize_embeddings = true;
  const std::string path = dir.file("m.safetensors");
  fff::save_bert(m, path);
  const fff::SafetensorsFile f = fff::load_safetensors(path);
  EXPECT_EQ(f.metadata.at("arch"), "bert");
  EXPECT_EQ(f.tensors.at("embedding.position").shape, (std::vector<int64_t>{20, 24}));
  EXPECT_EQ(f.tensors.at("embedding.token_type").shape, (std::vector<int64_t>{2, 24}));
  EXPECT_EQ(f.tensors.at("layers.1.ff.b1").shape, (std::vector<int64_t>{40}));
  EXPECT_EQ(f.tensors.count("final_norm.gain"), 0u);
  EXPECT_EQ(f.tensors.count("embedding.pos_scale"), 0u);
  const fff::BertModel r = fff::load_bert(path);
  EXPECT_EQ(r.cfg.arch, fff::BertArch::bert);
  EXPECT_TRUE(r.normalize_embeddings);
  const auto ids = random_ids(2 * 11, m.cfg.vocab, 1);
  EXPECT_TRUE(bitwise_equal(encode(m, ids, nullptr, 2, 11), encode(r, ids, nullptr, 2, 11)));
}

TEST(BertPostNorm, LoadRejectsWrongFilesNamingTheProblem) {
  TempDir dir;
  const EditedFileCheck check(dir, fff::make_random_bert(post_norm_config(), 22));
  check(
      "bias.safetensors", [](auto& g) { g.tensors.erase("layers.0.attn.qkv_bias"); },
      "layers.0.attn.qkv_bias");
  check(
      "b2.safetensors", [](auto& g) { g.tensors["layers.1.ff.b2"] = fff::Tensor({23}); },
      "layers.1.ff.b2");
  check(
      "pos.safetensors",
      [](auto& g) {
        g.tensors["embedding.position"] = fff::Tensor({19, 24});
      },
      "embedding.position");
  check(
      "arch.safetensors", [](auto& g) { g.metadata["arch"] = "roberta"; }, "roberta");
  // One non-finite value anywhere: the encoder would give NaN embeddings without a word.
  check(
      "nan.safetensors", [](auto& g) { g.tensors["layers.1.attn.out"].data[5] = std::nanf(""); },
      "'layers.1.attn.out' holds NaN");
  check(
      "inf.safetensors",
      [](auto& g) { g.tensors["layers.0.ff.w1"].data[0] = std::numeric_limits<float>::infinity(); },
      "'layers.0.ff.w1' holds NaN or infinity");
  check(
      "types.safetensors", [](auto& g) { g.metadata.erase("type_vocab_size"); }, "type_vocab_size");
  check(
      "fff.safetensors", [](auto& g) { g.metadata["ff"] = "neuron-fff"; }, "arch bert");
  check(
      "norm.safetensors", [](auto& g) { g.metadata["sentence.normalize"] = "maybe"; },
      "sentence.normalize");
  // A crammed file whose arch key is missing (written before it existed) still loads as crammed.
  const fff::BertModel c = fff::make_random_bert(small_config(fff::FFKind::ff), 23);
  fff::save_bert(c, dir.file("c.safetensors"));
  fff::SafetensorsFile g = fff::load_safetensors(dir.file("c.safetensors"));
  g.metadata.erase("arch");
  EXPECT_EQ(fff::load_bert(write_file(dir, "old.safetensors", g)).cfg.arch, fff::BertArch::crammed);
}

TEST(BertPostNorm, PaddingThreadsAndNoMlmHead) {
  const fff::BertModel m = fff::make_random_bert(post_norm_config(), 24);
  const int64_t S = 13;
  const PaddedRun p = expect_padding_invariant(m, S, 6);
  EXPECT_TRUE(bitwise_equal(encode(m, p.batch, &p.mask, 2, S, 1), p.hidden));
  fff::Context ctx(1);
  std::vector<float> logits(static_cast<size_t>(m.cfg.vocab));
  EXPECT_THROW(fff::bert_mlm_logits(ctx, m, p.hidden.data(), 1, logits.data()), fff::Error);
  // The post-norm architecture refuses FFF blocks and bias-free dense blocks.
  fff::BertConfig bad = post_norm_config();
  bad.ff.output_bias = false;
  EXPECT_THROW(fff::make_random_bert(bad, 1), fff::Error);
  bad = post_norm_config();
  bad.ff.kind = fff::FFKind::neuron_fff;
  EXPECT_THROW(fff::make_random_bert(bad, 1), fff::Error);
}

TEST(Bert, L2NormalizeRowsGivesUnitRowsAndKeepsZeroRows) {
  std::vector<float> x = {3, 4, 0, 0, 0, 0, 1, 0, 0};
  fff::l2_normalize_rows(x.data(), 3, 3);
  EXPECT_FLOAT_EQ(x[0], 0.6f);
  EXPECT_FLOAT_EQ(x[1], 0.8f);
  EXPECT_EQ(x[3], 0.0f);
  EXPECT_FLOAT_EQ(x[6], 1.0f);
}

// ---- Agreement with PyTorch (needs /usr/bin/python3 with torch, e.g. Debian's python3-torch) ----

namespace {

bool have_torch() {
  return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

struct ReferenceRun {
  fff::BertModel model;
  fff::SafetensorsFile ref;
};

ReferenceRun make_reference(const TempDir& dir, const std::string& args) {
  const std::string src = FFF_SOURCE_DIR;
  const std::string ckpt = dir.file("ckpt"), out = dir.file("model.safetensors");
  const std::string gen = "/usr/bin/python3 " + src + "/scripts/bert_reference.py --out " + ckpt +
                          " " + args + " >/dev/null";
  const std::string conv =
      "/usr/bin/python3 " + src + "/scripts/convert_bert.py " + ckpt + " " + out + " >/dev/null";
  EXPECT_EQ(std::system(gen.c_str()), 0) << gen;
  EXPECT_EQ(std::system(conv.c_str()), 0) << conv;
  return {fff::load_bert(out), fff::load_safetensors(ckpt + "/reference.safetensors")};
}

void expect_matches_reference(const ReferenceRun& r, const std::string& what) {
  fff::Context ectx(2);
  const fff::Tensor& ids_f = r.ref.tensors.at("input_ids");
  const fff::Tensor& mask_f = r.ref.tensors.at("attention_mask");
  const int64_t B = ids_f.dim(0), S = ids_f.dim(1), H = r.model.cfg.hidden, V = r.model.cfg.vocab;
  std::vector<int32_t> ids(static_cast<size_t>(B * S));
  std::vector<uint8_t> mask(ids.size());
  bool padded = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>(ids_f.data[i]);
    mask[i] = mask_f.data[i] != 0.0f;
    padded |= !mask[i];
  }
  EXPECT_TRUE(padded) << "the reference batch should contain padding";
  const auto hidden = encode(r.model, ids, &mask, B, S);
  const fff::Tensor& ref_h = r.ref.tensors.at("hidden");
  ASSERT_EQ(ref_h.size(), B * S * H);
  const double dh = max_abs_diff(hidden.data(), ref_h.ptr(), hidden.size());
  EXPECT_LE(dh, 1e-4) << what << ": hidden states";
  if (r.model.cfg.arch == fff::BertArch::bert) {  // no MLM head: hidden states only
    EXPECT_EQ(r.ref.tensors.count("logits"), 0u);
    std::printf("%s: max abs error hidden %.2e\n", what.c_str(), dh);
    return;
  }
  std::vector<float> logits(static_cast<size_t>(B * S * V));
  fff::bert_mlm_logits(ectx, r.model, hidden.data(), B * S, logits.data());
  const fff::Tensor& ref_l = r.ref.tensors.at("logits");
  ASSERT_EQ(ref_l.size(), B * S * V);
  const double dl = max_abs_diff(logits.data(), ref_l.ptr(), logits.size());
  EXPECT_LE(dl, 1e-4) << what << ": MLM logits";
  std::printf("%s: max abs error hidden %.2e, logits %.2e\n", what.c_str(), dh, dl);
}

}  // namespace

TEST(BertReference, SmallFffModelMatchesPyTorch) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not found";
  TempDir dir;
  expect_matches_reference(make_reference(dir, "--ff fff --trees 2 --depth 3"), "fff 2x3");
}

TEST(BertReference, SmallDenseModelFromSafetensorsMatchesPyTorch) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not found";
  TempDir dir;
  expect_matches_reference(make_reference(dir, "--ff dense --width 96 --format safetensors"),
                           "dense 96");
}

TEST(BertReference, FullWidthUltraFastBertLayersMatchPyTorch) {
  // UltraFastBERT-1x11's layer shapes (hidden 768, 12 heads, 4095-neuron trees), 2 layers.
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not found";
  TempDir dir;
  expect_matches_reference(
      make_reference(dir,
                     "--ff fff --hidden 768 --heads 12 --layers 2 --trees 1 --depth 11 "
                     "--vocab 300 --seq 24 --batch 2"),
      "fff 1x11, hidden 768");
}

// The original post-norm BERT in Hugging Face BertModel's checkpoint layout (separate q, k, v
// with biases, which the converter packs per head), against the reference's own PyTorch code.
TEST(BertReference, SmallPostNormBertFromHfCheckpointMatchesPyTorch) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not found";
  TempDir dir;
  const ReferenceRun r =
      make_reference(dir, "--arch bert --width 96 --format safetensors --seq 20 --batch 4");
  EXPECT_EQ(r.model.cfg.arch, fff::BertArch::bert);
  expect_matches_reference(r, "post-norm bert, dense 96");
}

// all-MiniLM-L6-v2's shapes (hidden 384, 12 heads of 32, FF 1536, 512 positions), 2 layers.
TEST(BertReference, MiniLmShapedPostNormLayersMatchPyTorch) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not found";
  TempDir dir;
  expect_matches_reference(make_reference(dir,
                                          "--arch bert --hidden 384 --heads 12 --layers 2 "
                                          "--width 1536 --max-seq 512 --vocab 300 --seq 40 "
                                          "--batch 3 --format bin"),
                           "post-norm bert, MiniLM shapes");
}

// ---- Leaf FFF feedforward blocks ----

namespace {

fff::BertConfig leaf_config_of(fff::BertArch arch, int64_t depth, int64_t leaf_width) {
  fff::BertConfig c = small_config(fff::FFKind::leaf_fff);
  c.arch = arch;
  c.ff.act = fff::Activation::gelu;
  c.ff.depth = depth, c.ff.leaf_width = leaf_width;
  return c;
}

// Records every layer's block input and output.
struct Recorder : fff::BertFFObserver {
  std::vector<std::vector<float>> x, y;
  int64_t H = 0;
  void ff_block(int64_t layer, const float* xi, const float* yi, int64_t N) override {
    if (static_cast<int64_t>(x.size()) <= layer) x.resize(layer + 1), y.resize(layer + 1);
    x[layer].assign(xi, xi + N * H);
    y[layer].assign(yi, yi + N * H);
  }
};

}  // namespace

TEST(BertLeaf, SaveLoadRoundTripKeepsTheBlockAndItsOutputs) {
  for (const fff::BertArch arch : {fff::BertArch::bert, fff::BertArch::crammed}) {
    TempDir dir;
    const fff::BertModel m = fff::make_random_bert(leaf_config_of(arch, 2, 5), 31);
    const std::string path = dir.file("leaf.safetensors");
    fff::save_bert(m, path);
    const fff::SafetensorsFile f = fff::load_safetensors(path);
    EXPECT_EQ(f.metadata.at("ff"), "leaf-fff");
    EXPECT_EQ(f.metadata.at("leaf_depth"), "2");
    EXPECT_EQ(f.metadata.at("leaf_width"), "5");
    EXPECT_EQ(f.tensors.at("layers.1.leaf.nodes_w").shape, (std::vector<int64_t>{3, 24}));
    EXPECT_EQ(f.tensors.at("layers.1.leaf.w1").shape, (std::vector<int64_t>{24, 20}));
    EXPECT_EQ(f.tensors.at("layers.1.leaf.w2").shape, (std::vector<int64_t>{20, 24}));
    EXPECT_EQ(f.tensors.at("layers.0.leaf.b2").shape, (std::vector<int64_t>{4, 24}));
    EXPECT_EQ(f.tensors.count("layers.0.ff.w1"), 0u);
    const fff::BertModel r = fff::load_bert(path);
    EXPECT_EQ(r.cfg.ff.kind, fff::FFKind::leaf_fff);
    EXPECT_EQ(r.cfg.ff.depth, 2);
    EXPECT_EQ(r.cfg.ff.leaf_width, 5);
    EXPECT_EQ(r.cfg.arch, arch);
    const auto ids = random_ids(2 * 11, m.cfg.vocab, 1);
    EXPECT_TRUE(bitwise_equal(encode(m, ids, nullptr, 2, 11), encode(r, ids, nullptr, 2, 11)));
  }
}

TEST(BertLeaf, EveryLayerRunsItsBlockOnItsInputAsTheNaiveReference) {
  // The observer sees each block's input and output; the output must be the naive hard inference
  // of that layer's leaf FFF on that input, and the final hidden state follows from the last
  // layer's (post-norm: LN2(x + FF(x))).
  const fff::BertModel m = fff::make_random_bert(leaf_config_of(fff::BertArch::bert, 3, 4), 32);
  const int64_t B = 2, S = 9, H = m.cfg.hidden, N = B * S;
  const auto ids = random_ids(N, m.cfg.vocab, 2);
  Recorder rec;
  rec.H = H;
  fff::Context ctx(2);
  std::vector<float> h(static_cast<size_t>(N * H));
  fff::bert_encode(ctx, m, ids.data(), nullptr, B, S, h.data(), nullptr, &rec);
  ASSERT_EQ(rec.x.size(), 2u);
  std::vector<int32_t> leaves(static_cast<size_t>(N));
  for (size_t i = 0; i < 2; ++i) {
    fff::BertLayer L = m.layers[i];
    fff::LeafFFF lf;
    lf.cfg = fff::leaf_config(m.cfg.ff_config());
    lf.nodes_w.value = ff_param(L, "nodes_w");
    lf.nodes_b.value = ff_param(L, "nodes_b");
    lf.w1.value = ff_param(L, "w1");
    lf.b1.value = ff_param(L, "b1");
    lf.w2.value = ff_param(L, "w2");
    lf.b2.value = ff_param(L, "b2");
    std::vector<float> y(static_cast<size_t>(N * H));
    fff::leaf_fff_infer_reference(lf, rec.x[i].data(), N, y.data(), leaves.data());
    EXPECT_LT(max_abs_diff(y.data(), rec.y[i].data(), y.size()), 1e-4) << "layer " << i;
    // More than one leaf is used: the test would not see a wrong routing otherwise.
    EXPECT_NE(*std::min_element(leaves.begin(), leaves.end()),
              *std::max_element(leaves.begin(), leaves.end()));
  }
  // The last layer's output: LN2(x + FF(x)) with norm2 at gain 1, bias 0.
  for (int64_t r = 0; r < N; ++r) {
    std::vector<double> z(static_cast<size_t>(H));
    double mean = 0, var = 0;
    for (int64_t j = 0; j < H; ++j) mean += z[j] = rec.x[1][r * H + j] + rec.y[1][r * H + j];
    mean /= H;
    for (int64_t j = 0; j < H; ++j) var += (z[j] - mean) * (z[j] - mean);
    var /= H;
    for (int64_t j = 0; j < H; ++j)
      EXPECT_NEAR(h[r * H + j], (z[j] - mean) / std::sqrt(var + 1e-12), 1e-4);
  }
}

TEST(BertLeaf, LeafOfDepthZeroEqualsDenseFeedforward) {
  // One leaf of width w is a dense FF of width w with the same biases.
  fff::BertConfig lc = leaf_config_of(fff::BertArch::bert, 0, 7);
  fff::BertModel l = fff::make_random_bert(lc, 33);
  fff::BertConfig dc = post_norm_config();
  dc.ff.width = 7;
  fff::BertModel d = fff::make_random_bert(dc, 34);
  d.word = l.word, d.positions = l.positions, d.token_type = l.token_type;
  for (size_t i = 0; i < l.layers.size(); ++i) {
    fff::BertLayer& L = l.layers[i];
    d.layers[i].qkv = L.qkv, d.layers[i].out = L.out;
    d.layers[i].qkv_bias = L.qkv_bias, d.layers[i].out_bias = L.out_bias;
    for (const char* p : {"w1", "b1", "w2"}) ff_param(d.layers[i], p) = ff_param(L, p);
    fff::Tensor& b2 = ff_param(d.layers[i], "b2");
    std::copy(ff_param(L, "b2").data.begin(), ff_param(L, "b2").data.end(), b2.data.begin());
  }
  fff::bert_prepare_inference(d);  // the weights changed after make_random_bert prepared them
  const auto ids = random_ids(2 * 9, lc.vocab, 6);
  const auto hl = encode(l, ids, nullptr, 2, 9), hd = encode(d, ids, nullptr, 2, 9);
  EXPECT_LT(max_abs_diff(hl.data(), hd.data(), hl.size()), 2e-5);
}

TEST(BertLeaf, LoadRejectsWrongLeafTensorsAndConfigs) {
  TempDir dir;
  const EditedFileCheck check(dir,
                              fff::make_random_bert(leaf_config_of(fff::BertArch::bert, 2, 5), 35));
  check(
      "w1.safetensors",
      [](auto& g) {
        g.tensors["layers.1.leaf.w1"] = fff::Tensor({20, 24});
      },
      "layers.1.leaf.w1");
  check(
      "nodes.safetensors", [](auto& g) { g.tensors.erase("layers.0.leaf.nodes_b"); },
      "layers.0.leaf.nodes_b");
  check(
      "depth.safetensors", [](auto& g) { g.metadata["leaf_depth"] = "3"; }, "layers.0.leaf");
  check(
      "width.safetensors", [](auto& g) { g.metadata.erase("leaf_width"); }, "leaf_width");
  check(
      "act.safetensors", [](auto& g) { g.metadata["activation"] = "relu"; }, "activation");
}

TEST(Bert, PackedAttentionProductsMatchTheUnpackedPath) {
  // bert_prepare_inference packs qkv and out; a model whose packs are cleared multiplies by the
  // tensors through OpenBLAS. Both architectures, with padding.
  for (fff::BertArch arch : {fff::BertArch::crammed, fff::BertArch::bert}) {
    fff::BertConfig c =
        arch == fff::BertArch::bert ? post_norm_config() : small_config(fff::FFKind::ff);
    fff::BertModel packed = fff::make_random_bert(c, 41);
    fff::BertModel plain = packed;
    for (fff::BertLayer& L : plain.layers) L.qkv_packed = L.out_packed = fff::PackedMatrix();
    const auto ids = random_ids(3 * 7, c.vocab, 8);
    std::vector<uint8_t> mask(3 * 7, 1);
    mask[6] = mask[13] = mask[12] = 0;
    const auto a = encode(packed, ids, &mask, 3, 7), b = encode(plain, ids, &mask, 3, 7);
    for (float v : a) ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(max_abs_diff(a.data(), b.data(), a.size()), 2e-5) << fff::bert_arch_name(arch);
  }
}
