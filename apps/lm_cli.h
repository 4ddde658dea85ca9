// The `fff lm` commands: train a byte-level QRNN + FFF language model, and sample from one.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace fff_cli {

struct LmTrainArgs {
  std::string text, save, resume, mixer = "leaf-fff", scan = "sequential";
  double val_fraction = 0.05;
  int64_t dim = 128, layers = 2, window = 2, width = 512, leaf_width = 32, trees = 1, depth = 6;
  int64_t seq = 64, batch = 32, steps = 2000, eval_every = 250, checkpoint_every = 250;
  double lr = 2e-3, hardening = 1.0, harden_after = 0.5;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false;
};

struct LmSampleArgs {
  std::string model, prompt;
  int64_t tokens = 200;
  double temperature = 0.8;
  uint64_t seed = 0;
  int threads = 1;
};

struct LmCommands {
  CLI::App* lm = nullptr;
  CLI::App* train = nullptr;
  CLI::App* sample = nullptr;
  LmTrainArgs train_args;
  LmSampleArgs sample_args;
};

// Registers `fff lm train` and `fff lm sample` on app; the args live in cmds.
void add_lm_commands(CLI::App& app, LmCommands& cmds);
// Runs whichever was parsed. Throws fff::Error on bad input.
int run_lm(const LmCommands& cmds);

}  // namespace fff_cli
