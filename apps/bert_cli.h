// The `fff bert` commands (fill-mask, embed) and `fff bench bert`: UltraFastBERT / crammedBERT
// encoder inference from fff-bert model files, and its benchmark against dense FF and PyTorch.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace fff_cli {

struct BertRunArgs {
  std::string model, vocab, file, format = "json", output;
  std::vector<std::string> texts;
  std::string fff_weights = "fp32";
  std::string normalize = "auto";  // embed: auto (as the model file says), yes, no
  int64_t top_k = 5, batch = 8, max_len = 0;
  int threads = 1;
  bool json = false;
};

struct BertBenchArgs {
  int64_t layers = 16, hidden = 768, heads = 12, seq = 128, trees = 1, depth = 11;
  int64_t dense_width = 3072, repeats = 5;
  std::vector<int64_t> batches = {1, 8};
  std::vector<int> threads = {1, 2};
  std::string python = "/usr/bin/python3", torch_script;
  std::string model;  // time this model file instead of random FFF and dense models
  // With --model: also time ONNX Runtime on this exported model (scripts/export_onnx.py), run by
  // --python with bert_ort_bench.py (--ort-script, or found as the PyTorch script is).
  std::string onnx, ort_script;
  bool json = false;
};

struct BertConvertArgs {
  std::string dense, out, to = "leaf-fff", texts, method = "token-split";
  int64_t depth = 3, samples = 32768;
  int64_t distill_steps = 0, distill_batch = 256;
  float distill_lr = 1e-4f, hardening = 0.1f;
  std::string distill_mode = "soft";
  uint64_t seed = 1;
  int threads = 1;
  bool json = false;
};

struct BertCommands {
  CLI::App* bert = nullptr;
  CLI::App* fill_mask = nullptr;
  CLI::App* embed = nullptr;
  CLI::App* tokenize = nullptr;
  CLI::App* bench = nullptr;
  CLI::App* convert = nullptr;
  BertRunArgs fill_args, embed_args, tokenize_args;
  BertConvertArgs convert_args;
  BertBenchArgs bench_args;
};

// Registers `fff bert fill-mask`, `fff bert embed`, `fff bert tokenize`, `fff bert convert` on app
// and `bert` under the bench command.
void add_bert_commands(CLI::App& app, CLI::App& bench, BertCommands& cmds);
// Runs whichever was parsed (returns -1 if none). Throws fff::Error on bad input.
int run_bert(const BertCommands& cmds);

}  // namespace fff_cli
