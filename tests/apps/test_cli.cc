// Tests for the fff command-line tool, run as a separate process: help texts, errors that name
// the bad path and exit non-zero (without crashing), and, if Fashion-MNIST is installed, a short
// train -> eval -> info round trip whose JSON output is checked, and thread-count independence;
// fff routes on small generated image data (its counts add up and agree with fff eval, its
// pictures, its errors).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "fff/models/bert.h"
#include "temp_dir.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kFashion = "/usr/share/datasets/fashion-mnist";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Single-quotes s for /bin/sh.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

struct Result {
  bool exited = false;  // normal exit (not killed by a signal)
  int code = -1;        // exit status if exited
  int signal = 0;       // terminating signal otherwise
  std::string out, err;
};

std::ostream& operator<<(std::ostream& os, const Result& r) {
  return os << "exited " << r.exited << " code " << r.code << " signal " << r.signal
            << "\n--- stdout ---\n"
            << r.out.substr(0, 4000) << "\n--- stderr ---\n"
            << r.err.substr(0, 4000);
}

// Runs the CLI with the given arguments (each quoted), capturing stdout, stderr and the status.
Result run_cli(const std::vector<std::string>& args) {
  TempDir tmp;
  const std::string err_path = tmp.file("stderr.txt");
  std::string cmd = shell_quote(FFF_CLI_PATH);
  for (const std::string& a : args) cmd.append(" ").append(shell_quote(a));
  cmd.append(" 2>").append(shell_quote(err_path)).append(" </dev/null");
  Result r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) {
    ADD_FAILURE() << "popen failed for " << cmd;
    return r;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.err = read_text(err_path);
  // /bin/sh reports a child killed by signal N as exit status 128 + N.
  if (status != -1 && WIFEXITED(status)) {
    r.code = WEXITSTATUS(status);
    r.exited = r.code < 128;
    if (!r.exited) r.signal = r.code - 128;
  } else if (status != -1 && WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  return r;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Cli, BinaryExists) {
  ASSERT_TRUE(fs::exists(FFF_CLI_PATH)) << FFF_CLI_PATH;
}

TEST(Cli, TopLevelHelp) {
  const Result r = run_cli({"--help"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_EQ(r.code, 0) << r;
  const std::string text = r.out + r.err;
  for (const char* word : {"train", "eval", "info"}) EXPECT_TRUE(contains(text, word)) << word;
}

TEST(Cli, NoSubcommandFails) {
  const Result r = run_cli({});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_NE(r.code, 0) << r;
}

TEST(Cli, TrainHelpListsOptions) {
  const Result r = run_cli({"train", "--help"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_EQ(r.code, 0) << r;
  const std::string text = r.out + r.err;
  for (const char* opt :
       {"--data", "--model", "--width", "--leaf-width", "--depth", "--trees", "--activation",
        "--epochs", "--batch", "--optimizer", "--lr", "--hardening", "--region-leak", "--seed",
        "--threads", "--save", "--json"})
    EXPECT_TRUE(contains(text, opt)) << opt << " missing from:\n" << text;
}

TEST(Cli, EvalAndInfoHelp) {
  for (const char* sub : {"eval", "info"}) {
    const Result r = run_cli({sub, "--help"});
    ASSERT_TRUE(r.exited) << r;
    EXPECT_EQ(r.code, 0) << r;
    EXPECT_TRUE(contains(r.out + r.err, "--json")) << r;
  }
}

TEST(Cli, UnknownModelFails) {
  const Result r = run_cli({"train", "--model", "nope", "--data", "/nonexistent/dir"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_NE(r.code, 0) << r;
  EXPECT_TRUE(contains(r.err, "nope") || contains(r.err, "--model")) << r;
}

// The kinds have one spelling (ff, leaf-fff, neuron-fff); the old 'fff' still works, with a
// note naming the new one, and the new spellings give no note.
TEST(Cli, OldKindSpellingsWorkWithANote) {
  const Result old_model = run_cli({"train", "--model", "fff", "--data", "/nonexistent/dir"});
  ASSERT_TRUE(old_model.exited) << old_model;
  EXPECT_NE(old_model.code, 0) << old_model;  // the data is missing, not the model kind
  EXPECT_TRUE(contains(old_model.err, "'fff' is the old name of 'leaf-fff'")) << old_model;
  EXPECT_TRUE(contains(old_model.err, "/nonexistent/dir")) << old_model;
  const Result old_mixer =
      run_cli({"lm", "train", "--mixer", "fff", "--text", "/nonexistent/file.txt"});
  ASSERT_TRUE(old_mixer.exited) << old_mixer;
  EXPECT_NE(old_mixer.code, 0) << old_mixer;
  EXPECT_TRUE(contains(old_mixer.err, "'fff' is the old name of 'leaf-fff'")) << old_mixer;
  for (const char* kind : {"ff", "leaf-fff", "neuron-fff"}) {
    const Result r = run_cli({"train", "--model", kind, "--data", "/nonexistent/dir"});
    ASSERT_TRUE(r.exited) << r;
    EXPECT_FALSE(contains(r.err, "old name")) << r;
  }
}

TEST(Cli, BadNumbersFail) {
  for (std::vector<std::string> args : {std::vector<std::string>{"train", "--lr", "-1"},
                                        {"train", "--epochs", "0"},
                                        {"train", "--region-leak", "0.9"},
                                        {"train", "--optimizer", "rmsprop"},
                                        {"train", "--batch", "many"},
                                        {"train", "--no-such-flag"}}) {
    args.push_back("--data");
    args.push_back("/nonexistent/dir");
    const Result r = run_cli(args);
    ASSERT_TRUE(r.exited) << r;
    EXPECT_NE(r.code, 0) << args[1] << "\n" << r;
  }
}

TEST(Cli, ShapeFlagsOfAnotherModelFail) {
  // Checked before any data is loaded, so the (missing) data directory is never reached.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"train", "--model", "neuron-fff", "--width", "100"},
        {"train", "--model", "ff", "--depth", "3"},
        {"train", "--model", "ff", "--leaf-width", "4"},
        {"train", "--model", "fff", "--trees", "2"},
        {"train", "--model", "fff", "--depth", "3", "--width", "100"}}) {
    args.push_back("--data");
    args.push_back("/nonexistent/dir");
    const Result r = run_cli(args);
    ASSERT_TRUE(r.exited) << r;
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(contains(r.err, args[3])) << r;
    EXPECT_FALSE(contains(r.err, "/nonexistent/dir")) << r;
  }
}

// A leaf FFF's width = leaf width x 2^depth: consistent combinations of the three flags pass the
// checks (and reach the missing data directory), contradictions fail first and say why.
TEST(Cli, LeafShapeFlagsAgreeOrSayWhyNot) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--width", "128", "--leaf-width", "8", "--depth", "4"},
        {"--width", "64", "--depth", "3"},
        {"--leaf-width", "4", "--depth", "5"},
        {"--depth", "2"},
        {"--width", "256"},
        {"--width", "96", "--leaf-width", "3"}}) {
    args.insert(args.begin(), {"train", "--model", "fff"});
    args.insert(args.end(), {"--data", "/nonexistent/dir"});
    const Result r = run_cli(args);
    ASSERT_TRUE(r.exited) << r;
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(contains(r.err, "/nonexistent/dir")) << args[3] << " " << args[4] << "\n" << r;
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--width", "100", "--leaf-width", "8", "--depth", "4"},
       "--width 100 is not --leaf-width 8 x 2^--depth 4 = 128"},
      {{"--width", "100", "--depth", "3"}, "--width 100 is not a multiple of 2^--depth 3 = 8"},
      {{"--width", "100"}, "--width 100 is not --leaf-width 8 (the default) x a power of two"},
      {{"--width", "96", "--leaf-width", "8"}, "--width 96 is not --leaf-width 8 x a power of two"},
      {{"--depth", "21"}, "--depth 21: a leaf FFF is at most 20 deep"},
  };
  for (auto [args, needle] : bad) {
    args.insert(args.begin(), {"train", "--model", "fff"});
    args.insert(args.end(), {"--data", "/nonexistent/dir"});
    const Result r = run_cli(args);
    ASSERT_TRUE(r.exited) << r;
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(contains(r.err, needle)) << "expected '" << needle << "' in\n" << r;
    EXPECT_FALSE(contains(r.err, "/nonexistent/dir")) << r;  // refused before loading data
  }
}

TEST(Cli, FlagsOfOtherModelsWarn) {
  for (const auto& [model, flag] : std::vector<std::pair<std::string, std::string>>{
           {"ff", "--hardening"}, {"neuron-fff", "--hardened"}, {"fff", "--no-output-bias"}}) {
    std::vector<std::string> args = {"train", "--model", model, flag};
    if (flag == "--hardening") args.push_back("1");
    args.insert(args.end(), {"--data", "/nonexistent/dir"});
    const Result r = run_cli(args);
    ASSERT_TRUE(r.exited) << r;
    EXPECT_TRUE(contains(r.err, "warning: " + flag)) << r;
  }
}

TEST(Cli, SaveIntoMissingDirectoryFailsBeforeTraining) {
  const Result r =
      run_cli({"train", "--save", "/nonexistent/dir/m.safetensors", "--data", "/also/nonexistent"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(contains(r.err, "/nonexistent/dir")) << r;
  EXPECT_FALSE(contains(r.err, "/also/nonexistent")) << r;  // checked before loading data
}

TEST(Cli, BenchJsonHasTheIssueFields) {
  const Result r =
      run_cli({"bench", "--dim", "33", "--trees", "2", "--depth", "3", "--batch", "5",
               "--dense-width", "64", "--layers", "2", "--min-seconds", "0.01", "--json"});
  ASSERT_TRUE(r.exited) << r;
  ASSERT_EQ(r.code, 0) << r;
  const json j = json::parse(r.out);
  for (const char* key : {"dim",
                          "trees",
                          "depth",
                          "batch",
                          "threads",
                          "layers",
                          "dense_width",
                          "dense_backend",
                          "dense_us_per_token",
                          "fff_us_per_token",
                          "speedup",
                          "fff_gflops",
                          "dense_gflops",
                          "max_rel_err",
                          "simd",
                          "fff_path",
                          "copy_us_per_token",
                          "fff_io_gbps",
                          "copy_io_gbps",
                          "rows_floor_us_per_token",
                          "rows_read_per_token",
                          "fff_vs_rows_floor",
                          "loop_us_per_token",
                          "fff_vs_loop",
                          "loop_max_rel_err"})
    EXPECT_TRUE(j.contains(key)) << key << "\n" << r;
  // Distinct w1 and w2 rows per token and layer: at most its own 2 K (D + 1) = 16, at least
  // those 16 shared by all 5 tokens of the batch.
  EXPECT_LE(j["rows_read_per_token"].get<double>(), 16.0) << r;
  EXPECT_GE(j["rows_read_per_token"].get<double>(), 16.0 / 5.0) << r;
  EXPECT_GT(j["rows_floor_us_per_token"].get<double>(), 0.0) << r;
  EXPECT_EQ(j["fff_path"], "rowwise");  // batch 5 takes the latency path
  EXPECT_EQ(j["dim"], 33);
  EXPECT_EQ(j["trees"], 2);
  EXPECT_EQ(j["layers"], 2);
  EXPECT_LE(j["max_rel_err"].get<double>(), 1e-5) << r;
  EXPECT_LE(j["loop_max_rel_err"].get<double>(), 1e-5) << r;  // the plain loop is correct too
  EXPECT_GT(j["loop_us_per_token"].get<double>(), 0.0) << r;
  EXPECT_GT(j["fff_us_per_token"].get<double>(), 0.0) << r;
  EXPECT_GT(j["dense_us_per_token"].get<double>(), 0.0) << r;
}

TEST(Cli, BenchRejectsBadShapes) {
  const Result r = run_cli({"bench", "--depth", "40"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_NE(r.code, 0) << r;
}

TEST(Cli, MissingDataNamesPath) {
  const Result r = run_cli({"train", "--data", "/nonexistent/dir", "--epochs", "1"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_NE(r.code, 0) << r;
  EXPECT_TRUE(contains(r.err, "/nonexistent/dir")) << r;
  EXPECT_TRUE(r.out.empty()) << r;
}

TEST(Cli, EvalMissingModelNamesFile) {
  const Result r = run_cli({"eval", "/nonexistent.safetensors"});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_NE(r.code, 0) << r;
  EXPECT_TRUE(contains(r.err, "/nonexistent.safetensors")) << r;
}

TEST(Cli, InfoOnGarbageFails) {
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> files = {
      {"text.safetensors", "definitely not a model file\n"},
      {"empty.safetensors", ""},
      // A header length far beyond the file.
      {"huge_header.safetensors", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}"},
      // A plausible header length with a truncated JSON header.
      {"truncated.safetensors",
       std::string("\x20\0\0\0\0\0\0\0", 8) + "{\"w\": {\"dtype\": \"F32\""}};
  for (const auto& [name, bytes] : files) {
    SCOPED_TRACE(name);
    const std::string path = tmp.file(name);
    {
      std::ofstream out(path, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    for (const char* sub : {"info", "eval"}) {
      const Result r = run_cli({sub, path});
      ASSERT_TRUE(r.exited) << sub << " crashed: " << r;
      EXPECT_EQ(r.code, 1) << sub << ": " << r;
      EXPECT_TRUE(contains(r.err, path)) << sub << ": " << r;
    }
  }
}

// The JSON object printed by `--json`: exactly one object on stdout.
json parse_single_json(const Result& r) {
  json j;
  try {
    j = json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "stdout is not one JSON value: " << e.what() << "\n" << r;
    return json::object();
  }
  EXPECT_TRUE(j.is_object()) << r;
  return j;
}

std::vector<double> history_losses(const json& j) {
  std::vector<double> out;
  if (!j.contains("history") || !j["history"].is_array()) return out;
  for (const auto& e : j["history"]) out.push_back(e.at("loss").get<double>());
  return out;
}

TEST(Cli, TrainRecipes) {
  if (!fs::is_directory(kFashion)) GTEST_SKIP() << kFashion << " is not installed";
  auto train = [](std::vector<std::string> extra) {
    std::vector<std::string> args = {"train",  "--limit",      "300",       "--epochs", "3",
                                     "--json", "--no-compare", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run_cli(args);
    EXPECT_EQ(r.code, 0) << r;
    return parse_single_json(r);
  };
  // paper: the FFF paper's settings, no schedule, no decay, no balance, no hardened phase.
  const json p = train({"--recipe", "paper"});
  EXPECT_EQ(p["recipe"], "paper");
  EXPECT_EQ(p["optimizer"], "sgd");
  EXPECT_FLOAT_EQ(p["lr"].get<float>(), 0.2f);
  EXPECT_FLOAT_EQ(p["hardening"].get<float>(), 3.0f);
  EXPECT_EQ(p["lr_schedule"], "constant");
  EXPECT_EQ(p["weight_decay"].get<double>(), 0.0);
  EXPECT_EQ(p["balance"].get<double>(), 0.0);
  EXPECT_EQ(p["hardened_epochs"], 0);
  EXPECT_EQ(p["input_dropout"].get<double>(), 0.0);
  EXPECT_EQ(p["ema"].get<double>(), 0.0);
  EXPECT_EQ(p["label_smoothing"].get<double>(), 0.0);
  EXPECT_LE(p["history"].size(), 3u);
  // best (the default): its settings, and a hardened phase of --epochs x 5 / 3 epochs after the
  // soft ones (no early stop: all 3 + 5 epochs run).
  const json b = train({});
  EXPECT_EQ(b["recipe"], "best");
  EXPECT_EQ(b["optimizer"], "adam");
  EXPECT_FLOAT_EQ(b["lr"].get<float>(), 0.002f);
  EXPECT_EQ(b["lr_schedule"], "cosine");
  EXPECT_FLOAT_EQ(b["weight_decay"].get<float>(), 0.1f);
  EXPECT_FLOAT_EQ(b["hardening"].get<float>(), 0.3f);
  EXPECT_FLOAT_EQ(b["balance"].get<float>(), 0.3f);
  EXPECT_EQ(b["hardened_epochs"], 5);
  EXPECT_FLOAT_EQ(b["input_dropout"].get<float>(), 0.2f);
  ASSERT_EQ(b["history"].size(), 8u) << b.dump();
  EXPECT_FALSE(b["history"][2]["hardened"].get<bool>());
  EXPECT_TRUE(b["history"][3]["hardened"].get<bool>());
  EXPECT_TRUE(b["history"][7]["hardened"].get<bool>());
  // Explicit flags override the recipe.
  const json o =
      train({"--lr", "0.01", "--balance", "0", "--optimizer", "sgd", "--label-smoothing", "0.1"});
  EXPECT_EQ(o["optimizer"], "sgd");
  EXPECT_FLOAT_EQ(o["label_smoothing"].get<float>(), 0.1f);
  EXPECT_FLOAT_EQ(o["lr"].get<float>(), 0.01f);
  EXPECT_EQ(o["balance"].get<double>(), 0.0);
  EXPECT_EQ(o["lr_schedule"], "cosine");
  // No balance loss where it was measured to cost accuracy: 1-neuron leaves, and 2-neuron
  // leaves past depth 4.
  const json narrow = train({"--width", "64", "--leaf-width", "2"});
  EXPECT_EQ(narrow["balance"].get<double>(), 0.0);
  EXPECT_FLOAT_EQ(narrow["hardening"].get<float>(), 0.3f);
  EXPECT_EQ(train({"--width", "16", "--leaf-width", "1"})["balance"].get<double>(), 0.0);
  EXPECT_FLOAT_EQ(train({"--width", "32", "--leaf-width", "2"})["balance"].get<float>(), 0.3f);
  // Dense FF: weight decay 0.3.
  const json ff = train({"--model", "ff", "--width", "16"});
  EXPECT_FLOAT_EQ(ff["weight_decay"].get<float>(), 0.3f);
  EXPECT_EQ(ff["input_dropout"].get<double>(), 0.0);
  // Neuron FFF: no weight decay (its sparse rows are not decayed).
  const json n = train({"--model", "neuron-fff", "--depth", "3"});
  EXPECT_EQ(n["weight_decay"].get<double>(), 0.0);
  EXPECT_EQ(n["optimizer"], "adam");
  const Result bad = run_cli({"train", "--recipe", "fast"});
  EXPECT_NE(bad.code, 0) << bad;
  EXPECT_TRUE(contains(bad.err, "--recipe")) << bad;
}

// --ema: weight averaging runs for every model kind and is reported in --json; it leaves the
// optimisation (the losses) as it was, only what each epoch measures and keeps; out of range
// fails naming the flag.
TEST(Cli, TrainEmaIsReportedAndLeavesTheLossesAlone) {
  if (!fs::is_directory(kFashion)) GTEST_SKIP() << kFashion << " is not installed";
  auto train = [](std::vector<std::string> extra) {
    std::vector<std::string> args = {"train",  "--limit",      "300",       "--epochs", "2",
                                     "--json", "--no-compare", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run_cli(args);
    EXPECT_EQ(r.code, 0) << r;
    return parse_single_json(r);
  };
  for (const std::vector<std::string>& model :
       {std::vector<std::string>{"--model", "ff", "--width", "16"},
        std::vector<std::string>{"--model", "leaf-fff", "--width", "16", "--leaf-width", "4"},
        std::vector<std::string>{"--model", "neuron-fff", "--depth", "3"}}) {
    SCOPED_TRACE(model[1]);
    const json off = train(model);
    std::vector<std::string> with = model;
    with.insert(with.end(), {"--ema", "0.9"});
    const json on = train(with);
    EXPECT_FLOAT_EQ(on["ema"].get<float>(), 0.9f);
    ASSERT_EQ(on["history"].size(), off["history"].size());
    // The soft epochs' losses are the same; a hardened phase starts from another (the best
    // averaged) model.
    for (size_t i = 0; i < on["history"].size(); ++i)
      if (!on["history"][i]["hardened"].get<bool>()) {
        EXPECT_EQ(on["history"][i]["loss"], off["history"][i]["loss"]) << "epoch " << i + 1;
      }
  }
  const Result bad = run_cli({"train", "--ema", "1"});
  EXPECT_NE(bad.code, 0) << bad;
  EXPECT_TRUE(contains(bad.err, "--ema")) << bad;
}

// --teacher: distillation from a model trained on the same split; a teacher of another split,
// of other shapes, or --distill without a teacher are refused with the flag and file named.
TEST(Cli, TrainDistilsFromATeacherOfTheSameSplit) {
  if (!fs::is_directory(kFashion)) GTEST_SKIP() << kFashion << " is not installed";
  TempDir tmp;
  auto train = [](std::vector<std::string> extra) {
    std::vector<std::string> args = {"train",  "--limit",      "300",       "--epochs", "2",
                                     "--json", "--no-compare", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  };
  const std::string teacher = tmp.file("ff.safetensors"), other = tmp.file("ff-seed1.safetensors");
  ASSERT_EQ(train({"--model", "ff", "--width", "32", "--save", teacher}).code, 0);
  ASSERT_EQ(train({"--model", "ff", "--width", "32", "--seed", "1", "--save", other}).code, 0);

  const Result plain = train({});
  const Result kd = train({"--teacher", teacher, "--distill", "0.7", "--temperature", "3"});
  ASSERT_EQ(plain.code, 0) << plain;
  ASSERT_EQ(kd.code, 0) << kd;
  const json p = parse_single_json(plain), k = parse_single_json(kd);
  EXPECT_EQ(k["teacher"], teacher);
  EXPECT_FLOAT_EQ(k["distill"].get<float>(), 0.7f);
  EXPECT_FLOAT_EQ(k["temperature"].get<float>(), 3.0f);
  EXPECT_TRUE(p["teacher"].is_null());
  // The teacher changes the loss: the same seed trains to other losses.
  EXPECT_NE(p["history"][0]["loss"].get<double>(), k["history"][0]["loss"].get<double>());
  EXPECT_TRUE(std::isfinite(k["history"][1]["loss"].get<double>()));

  const Result split = train({"--teacher", other});
  EXPECT_NE(split.code, 0) << split;
  EXPECT_TRUE(contains(split.err, "--teacher " + other)) << split;
  EXPECT_TRUE(contains(split.err, "seed 1")) << split;
  const Result lone = train({"--distill", "0.5"});
  EXPECT_NE(lone.code, 0) << lone;
  EXPECT_TRUE(contains(lone.err, "--distill needs --teacher")) << lone;
  const Result shape = train({"--teacher", teacher, "--data", "mnist"});
  if (fs::is_directory("/usr/share/datasets/mnist")) {
    EXPECT_NE(shape.code, 0) << shape;  // another data set: refused as another split
    EXPECT_TRUE(contains(shape.err, "--teacher")) << shape;
  }
  const Result missing = train({"--teacher", tmp.file("none.safetensors")});
  EXPECT_NE(missing.code, 0) << missing;
  EXPECT_TRUE(contains(missing.err, "--teacher")) << missing;
  const std::string garbage = tmp.file("garbage.safetensors");
  std::ofstream(garbage) << "not a model file";
  const Result bad = train({"--teacher", garbage});
  EXPECT_NE(bad.code, 0) << bad;
  EXPECT_TRUE(contains(bad.err, "--teacher: " + garbage)) << bad;
}

TEST(Cli, FashionMnistTrainEvalInfo) {
  if (!fs::is_directory(kFashion)) GTEST_SKIP() << kFashion << " is not installed";
  TempDir tmp;
  const std::string model_path = tmp.file("m.safetensors");
  const std::vector<std::string> common = {"train",  "--limit", "3000", "--epochs",        "2",
                                           "--json", "--seed",  "3",    "--bench-repeats", "1"};
  std::vector<std::string> args1 = common;
  for (const char* a : {"--threads", "1", "--save"}) args1.push_back(a);
  args1.push_back(model_path);
  const Result r1 = run_cli(args1);
  ASSERT_TRUE(r1.exited) << r1;
  ASSERT_EQ(r1.code, 0) << r1;
  const json j = parse_single_json(r1);
  for (const char* key :
       {"model", "width", "leaf_width", "depth", "epochs_run", "train_accuracy", "val_accuracy",
        "test_accuracy", "seconds_per_epoch", "leaves_used", "inference"})
    EXPECT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
  ASSERT_TRUE(j.contains("inference") && j["inference"].is_object()) << j.dump();
  ASSERT_TRUE(j["inference"].contains("speedup")) << j.dump();
  EXPECT_GT(j["inference"]["speedup"].get<double>(), 0.0);
  EXPECT_EQ(j["model"], "leaf-fff");
  EXPECT_EQ(j["width"], 128);
  EXPECT_EQ(j["leaf_width"], 8);
  EXPECT_EQ(j["depth"], 4);
  EXPECT_GE(j["epochs_run"].get<int64_t>(), 1);
  EXPECT_LE(j["epochs_run"].get<int64_t>(), 2 + 3);  // 2 soft epochs, then 2 x 5 / 3 hardened
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.5) << j.dump();
  EXPECT_LE(j["test_accuracy"].get<double>(), 1.0);
  EXPECT_GE(j["val_accuracy"].get<double>(), 0.0);
  EXPECT_GE(j["seconds_per_epoch"].get<double>(), 0.0);
  EXPECT_GE(j["leaves_used"].get<int64_t>(), 1);
  EXPECT_LE(j["leaves_used"].get<int64_t>(), 16);
  EXPECT_EQ(j["train_rows"], 2700);  // 9:1 split of the first 3000 rows
  ASSERT_TRUE(fs::exists(model_path)) << r1;

  const Result re = run_cli({"eval", model_path, "--json", "--limit", "1000", "--threads", "1"});
  ASSERT_TRUE(re.exited) << re;
  ASSERT_EQ(re.code, 0) << re;
  const json je = parse_single_json(re);
  EXPECT_EQ(je["model"], j["model"]);
  EXPECT_EQ(je["depth"], j["depth"]);
  EXPECT_EQ(je["leaf_width"], j["leaf_width"]);
  EXPECT_GT(je["test_accuracy"].get<double>(), 0.5) << je.dump();
  EXPECT_EQ(je["epochs_run"].get<double>(), j["epochs_run"].get<double>());
  // M_A on the training split as training saw it (same first 3000 rows, same seeded 9:1 split):
  // the same rows and weights, so exactly the accuracy training reported.
  EXPECT_EQ(je["train_rows"], 2700) << je.dump();
  EXPECT_EQ(je["train_accuracy"].get<double>(), j["train_accuracy"].get<double>()) << je.dump();
  EXPECT_TRUE(je["train_file_accuracy"].is_null()) << je.dump();

  const Result ri = run_cli({"info", model_path, "--json"});
  ASSERT_TRUE(ri.exited) << ri;
  ASSERT_EQ(ri.code, 0) << ri;
  const json ji = parse_single_json(ri);
  EXPECT_EQ(ji["model"], j["model"]);
  EXPECT_EQ(ji["depth"], j["depth"]);
  ASSERT_TRUE(ji.contains("metadata")) << ji.dump();
  EXPECT_EQ(ji["metadata"]["format"], "fff-classifier");
  EXPECT_EQ(ji["metadata"]["seed"], "3");

  // Plain-text info and eval work too.
  const Result rt = run_cli({"info", model_path});
  ASSERT_TRUE(rt.exited) << rt;
  EXPECT_EQ(rt.code, 0) << rt;
  EXPECT_TRUE(contains(rt.out, "leaf FFF")) << rt;

  // Same seed with two threads: identical results.
  std::vector<std::string> args2 = common;
  for (const char* a : {"--threads", "2", "--no-compare"}) args2.push_back(a);
  const Result r2 = run_cli(args2);
  ASSERT_TRUE(r2.exited) << r2;
  ASSERT_EQ(r2.code, 0) << r2;
  const json j2 = parse_single_json(r2);
  EXPECT_EQ(j2["test_accuracy"].get<double>(), j["test_accuracy"].get<double>());
  EXPECT_EQ(j2["val_accuracy"].get<double>(), j["val_accuracy"].get<double>());
  EXPECT_EQ(j2["train_accuracy"].get<double>(), j["train_accuracy"].get<double>());
  const std::vector<double> l1 = history_losses(j), l2 = history_losses(j2);
  EXPECT_FALSE(l1.empty());
  EXPECT_EQ(l1, l2);

  // All three leaf shape flags, consistent: trained as given.
  const Result r3 =
      run_cli({"train", "--width", "64", "--leaf-width", "4", "--depth", "4", "--limit", "300",
               "--epochs", "1", "--no-compare", "--json", "--threads", "1"});
  ASSERT_EQ(r3.code, 0) << r3;
  const json j3 = parse_single_json(r3);
  EXPECT_EQ(j3["width"], 64);
  EXPECT_EQ(j3["leaf_width"], 4);
  EXPECT_EQ(j3["depth"], 4);
}

// ---------------------------------------------------------------------------------------------
// fff routes

// An IDX file of unsigned bytes: magic 0x0000 08 <dims>, the dimensions big-endian, the values.
void write_idx(const std::string& path, const std::vector<int64_t>& dims,
               const std::vector<uint8_t>& values) {
  std::string bytes = {0, 0, 8, static_cast<char>(dims.size())};
  for (int64_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>((d >> shift) & 0xff);
  bytes.append(values.begin(), values.end());
  std::ofstream(path, std::ios::binary) << bytes;
}

// A small image data set in `dir` (IDX files): h x w grey images of 4 classes, class c a bright
// block in quadrant c over noise; 400 training and 150 test rows. (n, h * w) files instead of
// (n, h, w) with flat = true: the same pixels, not known to be images.
std::string write_image_data(const TempDir& tmp, const std::string& name, int64_t h = 10,
                             int64_t w = 10, bool flat = false) {
  const std::string dir = tmp.file(name);
  fs::create_directories(dir);
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  for (const auto& [prefix, n] : {std::pair<std::string, int64_t>{"train", 400}, {"t10k", 150}}) {
    std::vector<uint8_t> pixels, labels;
    for (int64_t i = 0; i < n; ++i) {
      const int c = static_cast<int>(next() % 4);
      labels.push_back(static_cast<uint8_t>(c));
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          const bool block = (y < h / 2) == (c < 2) && (x < w / 2) == (c % 2 == 0);
          pixels.push_back(static_cast<uint8_t>((block ? 150 : 0) + next() % 100));
        }
    }
    const std::vector<int64_t> dims =
        flat ? std::vector<int64_t>{n, h * w} : std::vector<int64_t>{n, h, w};
    write_idx(dir + "/" + prefix + "-images-idx3-ubyte", dims, pixels);
    write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", {n}, labels);
  }
  return dir;
}

// Trains a small model of `kind` on `data` and saves it to `path`.
void train_small(const std::string& data, const std::string& path,
                 const std::vector<std::string>& shape) {
  std::vector<std::string> args = {"train", "--data", data, "--epochs",     "2",      "--threads",
                                   "1",     "--seed", "2",  "--no-compare", "--save", path};
  args.insert(args.end(), shape.begin(), shape.end());
  const Result r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r;
}

bool has_png_signature(const std::string& path) {
  const std::string bytes = read_text(path);
  return bytes.size() > 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

bool gnuplot_on_path() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((dir + "/gnuplot").c_str(), X_OK) == 0) return true;
  return false;
}

// The report's counts add up and agree with fff eval, for a leaf FFF and a neuron FFF of two
// trees: leaf shares sum to 1 (per tree), leaf rows to the test rows, class histograms to their
// leaf's rows, accuracy weighted by rows to the overall accuracy (fff eval's test accuracy), the
// leaves used to the leaves with rows, and each node's rows split into its children's.
TEST(CliRoutes, ReportsAddUpAndAgreeWithEval) {
  TempDir tmp;
  const std::string data = write_image_data(tmp, "data");
  const std::vector<std::pair<std::string, std::vector<std::string>>> models = {
      {"leaf", {"--model", "leaf-fff", "--width", "32", "--leaf-width", "4"}},
      {"neuron", {"--model", "neuron-fff", "--trees", "2", "--depth", "2"}}};
  for (const auto& [name, shape] : models) {
    SCOPED_TRACE(name);
    const std::string model = tmp.file(name + ".safetensors");
    train_small(data, model, shape);
    const Result r = run_cli({"routes", model, "--data", data, "--json", "--threads", "1"});
    ASSERT_EQ(r.code, 0) << r;
    const json j = parse_single_json(r);
    const int64_t rows = j.at("rows").get<int64_t>(), trees = j.at("tree_count").get<int64_t>();
    const int64_t per_tree = j.at("leaves_per_tree").get<int64_t>();
    EXPECT_EQ(rows, 150);
    EXPECT_EQ(trees, name == "leaf" ? 1 : 2);
    EXPECT_EQ(per_tree, name == "leaf" ? 8 : 4);
    EXPECT_EQ(j.at("leaf_count"), trees * per_tree);
    EXPECT_EQ(j.at("leaf_entropy_max_bits").get<double>(), name == "leaf" ? 3.0 : 2.0);
    EXPECT_EQ(j.at("class_names"), json({"0", "1", "2", "3"}));
    const json& leaves = j.at("leaves");
    ASSERT_EQ(static_cast<int64_t>(leaves.size()), trees * per_tree);
    std::vector<double> share_sum(trees, 0.0), correct_sum(trees, 0.0);
    std::vector<int64_t> row_sum(trees, 0);
    int64_t used = 0;
    std::map<std::pair<int64_t, int64_t>, int64_t> leaf_rows;  // (tree, heap index) -> rows
    for (const json& l : leaves) {
      const int64_t t = l.at("tree").get<int64_t>(), n = l.at("rows").get<int64_t>();
      share_sum[t] += l.at("share").get<double>();
      row_sum[t] += n;
      used += n > 0;
      leaf_rows[{t, l.at("node").get<int64_t>()}] = n;
      int64_t hist = 0;
      for (const json& c : l.at("class_rows")) hist += c.get<int64_t>();
      EXPECT_EQ(hist, n) << l.dump();
      if (n > 0) {
        correct_sum[t] += l.at("accuracy").get<double>() * static_cast<double>(n);
        const int64_t dom = l.at("dominant_class").get<int64_t>();
        EXPECT_NEAR(l.at("dominant_share").get<double>(),
                    l.at("class_rows")[dom].get<double>() / static_cast<double>(n), 1e-12);
        for (const json& c : l.at("class_rows"))
          EXPECT_LE(c.get<int64_t>(), l.at("class_rows")[dom].get<int64_t>());
      } else {
        EXPECT_TRUE(l.at("accuracy").is_null()) << l.dump();
        EXPECT_TRUE(l.at("dominant_class").is_null()) << l.dump();
      }
    }
    const double accuracy = j.at("accuracy").get<double>();
    for (int64_t t = 0; t < trees; ++t) {
      EXPECT_NEAR(share_sum[t], 1.0, 1e-9) << t;
      EXPECT_EQ(row_sum[t], rows) << t;
      EXPECT_NEAR(correct_sum[t] / static_cast<double>(rows), accuracy, 1e-9) << t;
    }
    EXPECT_EQ(j.at("leaves_used").get<int64_t>(), used);
    EXPECT_GE(j.at("leaf_entropy_bits").get<double>(), 0.0);
    EXPECT_LE(j.at("leaf_entropy_bits").get<double>(), j.at("leaf_entropy_max_bits").get<double>());

    // Nodes: left + right = rows, and each child (node or leaf) has its parent's share that way.
    std::map<std::pair<int64_t, int64_t>, int64_t> node_rows;
    for (const json& nd : j.at("nodes"))
      node_rows[{nd.at("tree").get<int64_t>(), nd.at("node").get<int64_t>()}] =
          nd.at("rows").get<int64_t>();
    ASSERT_EQ(static_cast<int64_t>(node_rows.size()), trees * (per_tree - 1));
    auto rows_at = [&](int64_t t, int64_t heap) {
      return heap < per_tree - 1 ? node_rows.at({t, heap}) : leaf_rows.at({t, heap});
    };
    for (const json& nd : j.at("nodes")) {
      const int64_t t = nd.at("tree").get<int64_t>(), i = nd.at("node").get<int64_t>();
      const int64_t n = nd.at("rows").get<int64_t>(), left = nd.at("left").get<int64_t>();
      const int64_t right = nd.at("right").get<int64_t>();
      EXPECT_EQ(left + right, n) << nd.dump();
      EXPECT_EQ(rows_at(t, 2 * i + 1), left) << nd.dump();
      EXPECT_EQ(rows_at(t, 2 * i + 2), right) << nd.dump();
      if (i == 0) {
        EXPECT_EQ(n, rows);
      }
      if (n > 0) {
        EXPECT_NEAR(nd.at("left_share").get<double>() + nd.at("right_share").get<double>(), 1.0,
                    1e-12);
        EXPECT_GE(nd.at("mean_entropy_bits").get<double>(), 0.0);
        EXPECT_LE(nd.at("mean_entropy_bits").get<double>(), 1.0);
        EXPECT_GE(nd.at("mean_abs_logit").get<double>(), 0.0);
      }
    }

    // The overall accuracy is fff eval's.
    const Result e = run_cli({"eval", model, "--data", data, "--json", "--no-compare"});
    ASSERT_EQ(e.code, 0) << e;
    EXPECT_EQ(parse_single_json(e).at("test_accuracy").get<double>(), accuracy);

    // --limit: the first rows only, still adding up; the table names what it shows.
    const Result lim = run_cli({"routes", model, "--data", data, "--json", "--limit", "40"});
    ASSERT_EQ(lim.code, 0) << lim;
    const json jl = parse_single_json(lim);
    EXPECT_EQ(jl.at("rows"), 40);
    int64_t lim_rows = 0;
    for (const json& l : jl.at("leaves")) lim_rows += l.at("rows").get<int64_t>();
    EXPECT_EQ(lim_rows, 40 * trees);
    const Result text = run_cli({"routes", model, "--data", data});
    ASSERT_EQ(text.code, 0) << text;
    EXPECT_TRUE(contains(text.out, "leaves used: " + std::to_string(used) + " of " +
                                       std::to_string(trees * per_tree)))
        << text;
    EXPECT_TRUE(contains(text.out, "accuracy")) << text;
  }
}

TEST(CliRoutes, DenseModelHasNoTree) {
  TempDir tmp;
  const std::string data = write_image_data(tmp, "data");
  const std::string model = tmp.file("dense.safetensors");
  train_small(data, model, {"--model", "ff", "--width", "8"});
  const Result r = run_cli({"routes", model, "--data", data});
  ASSERT_TRUE(r.exited) << r;
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(contains(r.err, model + ": a dense ff classifier has no tree")) << r;
  EXPECT_TRUE(r.out.empty()) << r;
}

TEST(CliRoutes, PlotAndImagesArePngFiles) {
  if (!gnuplot_on_path()) GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  TempDir tmp;
  const std::string data = write_image_data(tmp, "data");
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"leaf", {"--model", "leaf-fff", "--width", "32", "--leaf-width", "4"}},
           {"neuron", {"--model", "neuron-fff", "--trees", "2", "--depth", "2"}}}) {
    SCOPED_TRACE(name);
    const std::string model = tmp.file(name + ".safetensors");
    train_small(data, model, shape);
    const std::string plot = tmp.file(name + "-tree.png"), images = tmp.file(name + "-img.png");
    const Result r =
        run_cli({"routes", model, "--data", data, "--plot", plot, "--images", images, "--json"});
    ASSERT_EQ(r.code, 0) << r;
    EXPECT_TRUE(has_png_signature(plot)) << plot;
    EXPECT_TRUE(has_png_signature(images)) << images;
    const json j = parse_single_json(r);
    EXPECT_EQ(j.at("plot"), plot);
    EXPECT_EQ(j.at("images"), images);
  }
  // Nothing but the data, the models and the pictures is left in the directory (no temporary).
  int files = 0;
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    const std::string f = e.path().filename().string();
    EXPECT_TRUE(f == "data" || contains(f, ".safetensors") || contains(f, ".png")) << f;
    EXPECT_FALSE(contains(f, ".tmp")) << f;
    ++files;
  }
  EXPECT_EQ(files, 7);
}

// Without gnuplot the pictures fail before any work, saying what to install; the report itself
// still works.
TEST(CliRoutes, PicturesWithoutGnuplotSayWhatToInstall) {
  TempDir tmp;
  const std::string data = write_image_data(tmp, "data");
  const std::string model = tmp.file("m.safetensors");
  train_small(data, model, {"--model", "leaf-fff", "--width", "16", "--leaf-width", "4"});
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  ::setenv("PATH", tmp.path().c_str(), 1);  // a directory without gnuplot
  const Result plot = run_cli({"routes", model, "--data", data, "--plot", tmp.file("t.png")});
  const Result images = run_cli({"routes", model, "--data", data, "--images", tmp.file("i.png")});
  const Result report = run_cli({"routes", model, "--data", data, "--json"});
  ::setenv("PATH", saved.c_str(), 1);
  for (const Result* r : {&plot, &images}) {
    EXPECT_EQ(r->code, 1) << *r;
    EXPECT_TRUE(contains(r->err, "apt-get install gnuplot-nox")) << *r;
    EXPECT_TRUE(r->out.empty()) << *r;
  }
  EXPECT_TRUE(contains(plot.err, "--plot")) << plot;
  EXPECT_TRUE(contains(images.err, "--images")) << images;
  EXPECT_FALSE(fs::exists(tmp.file("t.png")));
  EXPECT_EQ(report.code, 0) << report;
  EXPECT_EQ(parse_single_json(report).at("rows"), 150);
}

// Bad input: clear errors naming the file or flag, exit status 1 (CLI11's own status for a flag
// it refuses), never a crash.
TEST(CliRoutes, BadInputNamesTheFileOrFlag) {
  TempDir tmp;
  const std::string data = write_image_data(tmp, "data");
  const std::string other = write_image_data(tmp, "other", 6, 7);        // 42 features
  const std::string flat = write_image_data(tmp, "flat", 10, 10, true);  // not images
  const std::string model = tmp.file("m.safetensors");
  train_small(data, model, {"--model", "leaf-fff", "--width", "16", "--leaf-width", "4"});
  const std::string garbage = tmp.file("garbage.safetensors");
  std::ofstream(garbage) << "not a model";
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"routes", tmp.file("missing.safetensors"), "--data", data},
       tmp.file("missing.safetensors")},
      {{"routes", garbage, "--data", data}, garbage},
      {{"routes", model, "--data", other}, "--data " + other + " has 42 features"},
      {{"routes", model, "--data", tmp.file("nowhere")}, tmp.file("nowhere")},
      {{"routes", model, "--data", data, "--limit", "-1"}, "--limit"},
      {{"routes", model, "--data", data, "--plot", tmp.file("no/dir/t.png")}, "--plot"},
      {{"routes", model, "--data", data, "--plot", tmp.path()}, "is a directory"},
      {{"routes", model, "--data", data, "--images", tmp.file("no/dir/i.png")}, "--images"},
  };
  for (const Case& c : cases) {
    const Result r = run_cli(c.args);
    ASSERT_TRUE(r.exited) << r;
    EXPECT_NE(r.code, 0) << r;
    EXPECT_LT(r.code, 128) << r;
    EXPECT_TRUE(contains(r.err, c.needle)) << "expected '" << c.needle << "' in\n" << r;
    EXPECT_TRUE(r.out.empty()) << r;
  }
  // Rows that are not images cannot be drawn (the report works on them).
  const std::string flat_model = tmp.file("flat.safetensors");
  train_small(flat, flat_model, {"--model", "leaf-fff", "--width", "16", "--leaf-width", "4"});
  if (gnuplot_on_path()) {
    const Result r = run_cli({"routes", flat_model, "--data", flat, "--images", tmp.file("i.png")});
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(contains(r.err, "--images")) << r;
    EXPECT_TRUE(contains(r.err, "not known to be images")) << r;
  }
  EXPECT_EQ(run_cli({"routes", flat_model, "--data", flat}).code, 0);
}

// On Fashion-MNIST the classes have their names.
TEST(CliRoutes, FashionMnistClassNames) {
  if (!fs::is_directory(kFashion)) GTEST_SKIP() << kFashion << " is not installed";
  TempDir tmp;
  const std::string model = tmp.file("m.safetensors");
  const Result t =
      run_cli({"train", "--limit", "500", "--epochs", "1", "--width", "16", "--leaf-width", "4",
               "--threads", "1", "--no-compare", "--save", model});
  ASSERT_EQ(t.code, 0) << t;
  const Result r = run_cli({"routes", model, "--limit", "300", "--json", "--threads", "1"});
  ASSERT_EQ(r.code, 0) << r;
  const json j = parse_single_json(r);
  EXPECT_EQ(j.at("data"), "fashion-mnist");
  EXPECT_EQ(j.at("rows"), 300);
  ASSERT_EQ(j.at("class_names").size(), 10u);
  EXPECT_EQ(j.at("class_names")[0], "T-shirt/top");
  EXPECT_EQ(j.at("class_names")[9], "Ankle boot");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// fff lm

namespace {

std::string write_corpus(const TempDir& dir) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "A fortune " + std::to_string(i) + " for you.\n%\n";
  const std::string path = dir.file("corpus.txt");
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(CliLm, TrainSavesResumesAndSamples) {
  TempDir dir;
  const std::string corpus = write_corpus(dir), ckpt = dir.file("lm.safetensors");
  const std::vector<std::string> common = {
      "--text", corpus, "--dim",   "8", "--width",      "16", "--leaf-width", "4",
      "--seq",  "8",    "--batch", "2", "--eval-every", "2",  "--threads",    "1"};
  std::vector<std::string> args = {"lm", "train", "--steps", "3", "--save", ckpt, "--json"};
  args.insert(args.end(), common.begin(), common.end());
  const Result r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r;
  const json j = json::parse(r.out);
  for (const char* key : {"val_bpc", "train_bpc", "steps", "ff_flops_per_token",
                          "dense_ff_flops_per_token", "tokens_per_second"})
    EXPECT_TRUE(j.contains(key)) << key << "\n" << r;
  EXPECT_EQ(j["steps"], 3);
  EXPECT_GT(j["ff_flop_reduction"].get<double>(), 1.0);
  // Resume to step 5; a model flag conflicts with the checkpoint.
  const Result resumed = run_cli({"lm", "train", "--text", corpus, "--resume", ckpt, "--steps", "5",
                                  "--threads", "1", "--json"});
  ASSERT_EQ(resumed.code, 0) << resumed;
  EXPECT_EQ(json::parse(resumed.out)["steps"], 5);
  const Result conflict =
      run_cli({"lm", "train", "--text", corpus, "--resume", ckpt, "--dim", "16"});
  EXPECT_EQ(conflict.code, 1) << conflict;
  EXPECT_TRUE(contains(conflict.err, "--dim")) << conflict;
  // Sampling: the prompt, then the requested bytes; the same seed gives the same text.
  const Result s1 =
      run_cli({"lm", "sample", ckpt, "--prompt", "A fo", "--tokens", "12", "--seed", "3"});
  const Result s2 =
      run_cli({"lm", "sample", ckpt, "--prompt", "A fo", "--tokens", "12", "--seed", "3"});
  ASSERT_EQ(s1.code, 0) << s1;
  EXPECT_EQ(s1.out, s2.out);
  EXPECT_EQ(s1.out.rfind("A fo", 0), 0u) << s1;
  EXPECT_EQ(s1.out.size(), 4u + 12u + 1u) << s1;  // prompt, 12 bytes, newline
}

TEST(CliLm, ClearErrorsForBadText) {
  TempDir dir;
  const std::string empty = dir.file("empty.txt");
  std::ofstream(empty) << "";
  const Result r = run_cli({"lm", "train", "--text", empty, "--steps", "1"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(contains(r.err, empty)) << r;
  const Result missing = run_cli({"lm", "train", "--text", dir.file("nope"), "--steps", "1"});
  EXPECT_EQ(missing.code, 1) << missing;
  EXPECT_TRUE(contains(missing.err, "no such file")) << missing;
  const Result bad_model = run_cli({"lm", "sample", empty});
  EXPECT_EQ(bad_model.code, 1) << bad_model;
  // A library error that names option fields reaches the user with the flags' names.
  const std::string tiny = dir.file("tiny.txt");
  std::ofstream(tiny) << std::string(200, 'a');
  const Result short_text =
      run_cli({"lm", "train", "--text", tiny, "--batch", "32", "--seq", "64", "--steps", "1"});
  EXPECT_EQ(short_text.code, 1) << short_text;
  EXPECT_TRUE(contains(short_text.err, "too short for --batch 32 streams of --seq 64"))
      << short_text;
  EXPECT_FALSE(contains(short_text.err, "LmTrainOptions")) << short_text;
}

// ---- fff bert ----

namespace {

// A small random fff-bert file with a made-up vocabulary, written through the library.
std::string write_bert_model(const TempDir& dir, bool with_vocab) {
  fff::BertConfig c;
  c.hidden = 32, c.layers = 2, c.heads = 4, c.vocab = 40, c.max_seq = 24;
  c.ff.kind = fff::FFKind::neuron_fff, c.ff.trees = 1, c.ff.depth = 3;
  fff::BertModel m = fff::make_random_bert(c, 3);
  if (with_vocab) {
    std::string v = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncapital\nof\nfrance\nis\nparis\n.";
    for (int i = 12; i < 40; ++i) v += "\ntok" + std::to_string(i);
    m.vocab_text = v;
  }
  const std::string path = dir.file(with_vocab ? "bert.safetensors" : "novocab.safetensors");
  fff::save_bert(m, path);
  return path;
}

}  // namespace

TEST(CliBert, FillMaskReportsTheModelsTopTokens) {
  fff::Context ectx(2);
  TempDir dir;
  const std::string model = write_bert_model(dir, true);
  const Result r = run_cli({"bert", "fill-mask", model, "--text",
                            "The capital of France is [MASK].", "--top-k", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["masks"].size(), 1u) << r;
  const json& mask = j["masks"][0];
  EXPECT_EQ(mask["position"], 6);  // [CLS] the capital of france is [MASK] . [SEP]
  ASSERT_EQ(mask["predictions"].size(), 3u);
  // The same prediction computed in process, through the library.
  const fff::BertModel m = fff::load_bert(model);
  const std::vector<int32_t> ids = {2, 5, 6, 7, 8, 9, 4, 11, 3};
  std::vector<float> hidden(ids.size() * 32), logits(40);
  fff::bert_encode(ectx, m, ids.data(), nullptr, 1, static_cast<int64_t>(ids.size()),
                   hidden.data());
  fff::bert_mlm_logits(ectx, m, hidden.data() + 6 * 32, 1, logits.data());
  const int64_t best = std::max_element(logits.begin(), logits.end()) - logits.begin();
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - logits[best]));
  EXPECT_EQ(mask["predictions"][0]["id"], best);
  EXPECT_NEAR(mask["predictions"][0]["probability"].get<double>(), 1.0 / sum, 1e-5);
  EXPECT_GE(mask["predictions"][0]["probability"], mask["predictions"][1]["probability"]);
  EXPECT_GE(mask["predictions"][1]["probability"], mask["predictions"][2]["probability"]);
}

TEST(CliBert, FillMaskWithHalfFffWeightsMatchesTheLibrary) {
  fff::Context ectx(2);
  TempDir dir;
  const std::string model = write_bert_model(dir, true);
  const Result r = run_cli({"bert", "fill-mask", model, "--text", "the capital [MASK]", "--top-k",
                            "1", "--json", "--fff-weights", "half"});
  ASSERT_EQ(r.code, 0) << r;
  const json j = json::parse(r.out);
  fff::BertModel m = fff::load_bert(model);
  fff::bert_use_half_fff(m);
  const std::vector<int32_t> ids = {2, 5, 6, 4, 3};  // [CLS] the capital [MASK] [SEP]
  std::vector<float> hidden(ids.size() * 32), logits(40);
  fff::bert_encode(ectx, m, ids.data(), nullptr, 1, static_cast<int64_t>(ids.size()),
                   hidden.data());
  fff::bert_mlm_logits(ectx, m, hidden.data() + 3 * 32, 1, logits.data());
  const int64_t best = std::max_element(logits.begin(), logits.end()) - logits.begin();
  EXPECT_EQ(j["masks"][0]["predictions"][0]["id"], best) << r;
}

TEST(CliBert, EmbedWritesOneVectorPerTextAsJsonOrBinary) {
  TempDir dir;
  const std::string model = write_bert_model(dir, true);
  const std::string texts = dir.file("texts.txt");
  std::ofstream(texts) << "the capital of france\nparis is the capital\n\n";
  const Result j = run_cli({"bert", "embed", model, "--file", texts, "--batch", "2"});
  ASSERT_EQ(j.code, 0) << j;
  std::vector<json> rows;
  std::istringstream lines(j.out);
  for (std::string line; std::getline(lines, line);) rows.push_back(json::parse(line));
  ASSERT_EQ(rows.size(), 3u) << j;  // the empty line is a text too ([CLS] [SEP])
  const std::string bin = dir.file("e.f32");
  const Result b = run_cli({"bert", "embed", model, "--file", texts, "--format", "binary",
                            "--output", bin, "--threads", "2"});
  ASSERT_EQ(b.code, 0) << b;
  const std::string raw = read_text(bin);
  ASSERT_EQ(raw.size(), 3u * 32u * sizeof(float));
  const float* v = reinterpret_cast<const float*>(raw.data());
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < 32; ++k)
      EXPECT_NEAR(rows[i][k].get<double>(), v[i * 32 + k], 1e-5) << i << " " << k;
  EXPECT_FALSE(fs::exists(bin + ".tmp"));
}

TEST(CliBert, ClearErrors) {
  TempDir dir;
  const std::string model = write_bert_model(dir, true);
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"bert", "fill-mask", "/nonexistent/m.safetensors", "--text", "a [MASK]"},
       "/nonexistent/m.safetensors"},
      {{"bert", "fill-mask", model, "--text", "no mask here"}, "[MASK]"},
      {{"bert", "embed", model, "--text", "x", "--format", "xml"}, "--format"},
      {{"bert", "embed", model, "--text", "x", "--format", "binary"}, "--output"},
      {{"bert", "embed", write_bert_model(dir, false), "--text", "x"}, "--vocab"},
      {{"bert", "embed", model, "--file", "/nonexistent/texts"}, "/nonexistent/texts"},
      {{"bert", "fill-mask", model, "--text", "a [MASK]", "--fff-weights", "int8"},
       "--fff-weights"},
  };
  for (const Case& c : cases) {
    const Result r = run_cli(c.args);
    EXPECT_TRUE(r.exited) << r;
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(contains(r.err, c.needle)) << "expected '" << c.needle << "' in\n" << r;
  }
}

// A small original (post-norm) BERT, as all-MiniLM-L6-v2 is, whose file asks for L2-normalised
// embeddings of at most 6 tokens.
std::string write_post_norm_model(const TempDir& dir) {
  const fff::BertModel m = fff_test::small_sentence_model(32, 4, 24, 48, 6, 4);
  const std::string path = dir.file("post_norm.safetensors");
  fff::save_bert(m, path);
  return path;
}

TEST(CliBert, PostNormModelEmbedsNormalisedTokenizesTruncatedAndRefusesFillMask) {
  TempDir dir;
  const std::string model = write_post_norm_model(dir);
  const Result t =
      run_cli({"bert", "tokenize", model, "--text", "the capital of france is paris ."});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_EQ(json::parse(t.out), json::parse("[2,5,6,7,8,3]"));  // truncated at 6 by the file
  const Result e = run_cli({"bert", "embed", model, "--text", "the capital", "--text", "paris"});
  ASSERT_EQ(e.code, 0) << e;
  std::istringstream lines(e.out);
  for (std::string line; std::getline(lines, line);) {
    double norm = 0.0;
    for (const json& x : json::parse(line)) norm += x.get<double>() * x.get<double>();
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
  // --normalize no gives the plain mean, the same direction.
  const Result raw =
      run_cli({"bert", "embed", model, "--text", "the capital", "--normalize", "no"});
  ASSERT_EQ(raw.code, 0) << raw;
  const json r = json::parse(raw.out), n = json::parse(e.out.substr(0, e.out.find('\n')));
  double norm = 0.0;
  for (const json& x : r) norm += x.get<double>() * x.get<double>();
  norm = std::sqrt(norm);
  EXPECT_GT(std::fabs(norm - 1.0), 1e-3);
  for (size_t k = 0; k < r.size(); ++k)
    EXPECT_NEAR(r[k].get<double>() / norm, n[k].get<double>(), 1e-6);
  const Result f = run_cli({"bert", "fill-mask", model, "--text", "the [MASK]"});
  EXPECT_EQ(f.code, 1) << f;
  EXPECT_TRUE(contains(f.err, "no MLM head")) << f;
  const Result bad = run_cli({"bert", "embed", model, "--text", "x", "--normalize", "maybe"});
  EXPECT_EQ(bad.code, 1) << bad;
  EXPECT_TRUE(contains(bad.err, "--normalize")) << bad;
}

TEST(CliBert, ConvertMakesALeafFffModelThatEmbedsAndReportsPerLayerFigures) {
  TempDir dir;
  const std::string model = write_post_norm_model(dir);
  const std::string texts = dir.file("texts.txt"), out = dir.file("leaf.safetensors");
  {
    std::ofstream f(texts);
    for (int i = 0; i < 60; ++i)
      f << "the capital of france is paris tok" << 12 + i % 28 << " tok" << 12 + (i * 7) % 28
        << "\n";
  }
  const Result r = run_cli({"bert", "convert", model, out, "--depth", "2", "--texts", texts,
                            "--samples", "300", "--json"});
  ASSERT_EQ(r.code, 0) << r;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["method"], "token-split");  // the default
  EXPECT_EQ(j["depth"], 2);
  EXPECT_EQ(j["leaf_width"], 12);
  ASSERT_EQ(j["layers"].size(), 2u);
  for (const json& l : j["layers"]) {
    EXPECT_EQ(l["tokens"], 300);
    EXPECT_GE(l["best_leaf_fraction"].get<double>(), 0.0);
    EXPECT_LE(l["best_leaf_fraction"].get<double>(), 1.0);
    EXPECT_TRUE(std::isfinite(l["relative_error"].get<double>()));
  }
  EXPECT_TRUE(contains(r.err, "ETA")) << r;
  const fff::BertModel m = fff::load_bert(out);
  EXPECT_EQ(m.cfg.ff.kind, fff::FFKind::leaf_fff);
  EXPECT_EQ(m.cfg.ff.depth, 2);
  EXPECT_TRUE(m.normalize_embeddings);  // the dense file's sentence settings are kept
  EXPECT_EQ(m.sentence_max_len, 6);
  const Result e = run_cli({"bert", "embed", out, "--text", "the capital"});
  ASSERT_EQ(e.code, 0) << e;
  EXPECT_EQ(json::parse(e.out).size(), 32u);
  // A leaf model cannot be converted again, and a bad depth is named.
  const Result again = run_cli({"bert", "convert", out, dir.file("x"), "--texts", texts});
  EXPECT_EQ(again.code, 1) << again;
  EXPECT_TRUE(contains(again.err, "dense ff")) << again;
  const Result deep =
      run_cli({"bert", "convert", model, dir.file("y"), "--texts", texts, "--depth", "5"});
  EXPECT_EQ(deep.code, 1) << deep;
  EXPECT_TRUE(contains(deep.err, "not divisible")) << deep;
  // The other method, and an unknown one named.
  const Result co = run_cli({"bert", "convert", model, dir.file("co"), "--texts", texts,
                             "--samples", "300", "--method", "coactivation", "--json"});
  ASSERT_EQ(co.code, 0) << co;
  EXPECT_EQ(json::parse(co.out)["method"], "coactivation");
  const Result moe = run_cli(
      {"bert", "convert", model, dir.file("z"), "--texts", texts, "--method", "moefication"});
  EXPECT_EQ(moe.code, 1) << moe;
  EXPECT_TRUE(contains(moe.err, "--method")) << moe;
}

TEST(CliBert, BenchBertTimesAModelFile) {
  TempDir dir;
  const std::string model = write_post_norm_model(dir);
  const Result r = run_cli({"bench", "bert", "--model", model, "--seq", "8", "--batches", "1,2",
                            "--threads", "1", "--repeats", "1", "--python", "none", "--json"});
  ASSERT_EQ(r.code, 0) << r;
  std::istringstream lines(r.out);
  int rows = 0;
  for (std::string line; std::getline(lines, line); ++rows) {
    const json j = json::parse(line);
    EXPECT_EQ(j["arch"], "bert");
    EXPECT_GT(j["fff_tokens_per_s"].get<double>(), 0.0);
    EXPECT_TRUE(j["pytorch_tokens_per_s"].is_null());
  }
  EXPECT_EQ(rows, 2) << r;
  const Result bad =
      run_cli({"bench", "bert", "--model", model, "--seq", "25", "--python", "none"});
  EXPECT_EQ(bad.code, 1) << bad;
  EXPECT_TRUE(contains(bad.err, "--seq")) << bad;
}

// The ONNX Runtime baseline's own run is tested against the real model in
// tests/reference/test_ort_bench.py (it needs onnxruntime); here its flag checks, which fail
// before anything is timed.
TEST(CliBert, BenchBertOnnxFlagErrorsNameTheProblem) {
  TempDir dir;
  const std::string model = write_post_norm_model(dir);
  const std::string onnx = dir.file("model.onnx");
  std::ofstream(onnx) << "not an onnx model";
  const Result no_model = run_cli({"bench", "bert", "--onnx", onnx, "--python", "none"});
  EXPECT_EQ(no_model.code, 1) << no_model;
  EXPECT_TRUE(contains(no_model.err, "--onnx needs --model")) << no_model;
  const Result no_python = run_cli(
      {"bench", "bert", "--seq", "8", "--model", model, "--onnx", onnx, "--python", "none"});
  EXPECT_EQ(no_python.code, 1) << no_python;
  EXPECT_TRUE(contains(no_python.err, "needs --python")) << no_python;
  const Result missing = run_cli({"bench", "bert", "--seq", "8", "--model", model, "--onnx",
                                  dir.file("absent.onnx"), "--python", "/usr/bin/python3"});
  EXPECT_EQ(missing.code, 1) << missing;
  EXPECT_TRUE(contains(missing.err, "absent.onnx: no such file")) << missing;
  const Result no_script =
      run_cli({"bench", "bert", "--seq", "8", "--model", model, "--onnx", onnx, "--python",
               "/usr/bin/python3", "--ort-script", dir.file("absent.py")});
  EXPECT_EQ(no_script.code, 1) << no_script;
  EXPECT_TRUE(contains(no_script.err, "--ort-script")) << no_script;
}

TEST(CliBert, BenchBertJsonHasEveryFieldOnTinyShapes) {
  const Result r =
      run_cli({"bench",         "bert", "--layers",  "1",   "--hidden",  "32",   "--heads", "2",
               "--seq",         "8",    "--batches", "1,2", "--threads", "1",    "--depth", "3",
               "--dense-width", "64",   "--repeats", "1",   "--python",  "none", "--json"});
  ASSERT_EQ(r.code, 0) << r;
  std::istringstream lines(r.out);
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const json j = json::parse(line);
    for (const char* k :
         {"fff_tokens_per_s", "dense_tokens_per_s", "speedup", "fff_share", "dense_share",
          "pytorch_dense_tokens_per_s", "batch", "threads", "seq", "fff_half_tokens_per_s",
          "speedup_half", "fff_half_share", "half_max_rel_diff", "half_tokens_moved"})
      EXPECT_TRUE(j.contains(k)) << k << " in " << line;
    EXPECT_GT(j["fff_tokens_per_s"].get<double>(), 0.0);
    const json& s = j["fff_share"];
    EXPECT_NEAR(s["attention"].get<double>() + s["ff"].get<double>() + s["other"].get<double>() +
                    s["embedding"].get<double>(),
                1.0, 1e-9);
  }
  EXPECT_EQ(n, 2) << r;
}

// FFF_SIMD limits the kernels' instruction set (here to AVX2, if the CPU has it); a bad name is
// a clear error before any work.
TEST(CliSimd, EnvironmentRestrictsTheInstructionSetAndRefusesUnknownNames) {
  ::setenv("FFF_SIMD", "neon", 1);
  const Result bad = run_cli({"info", "missing.safetensors"});
  EXPECT_EQ(bad.code, 1) << bad;
  EXPECT_TRUE(contains(bad.err, "FFF_SIMD: unknown SIMD target 'neon'")) << bad;
  ::setenv("FFF_SIMD", "avx2", 1);
  const Result r =
      run_cli({"bench", "bert", "--python", "none", "--layers", "1", "--hidden", "32", "--heads",
               "2", "--seq", "8", "--batches", "1", "--threads", "1", "--repeats", "1", "--json"});
  ::unsetenv("FFF_SIMD");
  if (r.code == 0)
    EXPECT_TRUE(contains(r.out, "\"simd\":\"AVX2\"")) << r;
  else
    EXPECT_TRUE(contains(r.err, "FFF_SIMD: SIMD target 'avx2' is not supported")) << r;
}
