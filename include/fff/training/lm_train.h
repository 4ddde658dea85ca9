// Training, evaluation, checkpoints and sampling of the byte-level language model
// (fff/models/lm.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/models/lm.h"
#include "fff/training/optimizer.h"

namespace fff {

struct TextSplit {
  std::vector<int32_t> train, val;  // bytes as tokens 0..255
};

// The default corpus: the plain-text fortune files of Debian's `fortunes` package.
inline constexpr const char* kDefaultLmText = "/usr/share/games/fortunes";

// Reads a text file, or every plain file of a directory (sorted by name; the .dat and .u8 index
// files of fortune collections are skipped), and keeps the last val_fraction as validation.
// Throws fff::Error naming the path if it is missing, unreadable, empty or too short to split.
TextSplit load_text(const std::string& path, double val_fraction);

struct LmTrainOptions {
  int64_t seq = 64;        // T: steps per segment (truncated backpropagation)
  int64_t batch = 32;      // B: parallel streams of text
  int64_t steps = 2000;    // total optimizer steps (a resumed run continues up to this)
  float lr = 2e-3f;        // Adam
  float hardening = 1.0f;  // leaf FFF: weight of the mean node entropy
  // leaf FFF: after this share of the steps, train with hardened (0/1) decisions, as inference
  // runs them (1: never).
  double harden_after = 0.5;
  int64_t eval_every = 250;
  int64_t checkpoint_every = 250;  // with a save path
  std::string save_path;           // checkpoint file (written atomically), or empty
};

struct LmProgress {
  int64_t step = 0, steps = 0;
  double train_bpc = 0.0;  // mean over the steps since the last report
  double val_bpc = -1.0;   // when evaluated at this step
  double seconds = 0.0;
};

struct LmTrainResult {
  int64_t steps = 0;
  double train_bpc = 0.0, val_bpc = 0.0, best_val_bpc = 0.0;
  double seconds = 0.0, tokens_per_second = 0.0;
};

// Everything training carries from step to step; a checkpoint saves all of it, so a resumed run
// continues exactly as an uninterrupted one would (on the same thread count).
struct LmTrainer {
  LmModel model;
  Optimizer opt;
  LmState state;  // carried across segments of the training streams
  int64_t step = 0;
  double best_val_bpc = 0.0;  // 0: not evaluated yet
  LmTrainOptions options;

  LmTrainer(LmModel m, const LmTrainOptions& o);
};

// Runs steps until options.steps on ctx's threads, evaluating and checkpointing on the way.
LmTrainResult train_lm(Context& ctx, LmTrainer& tr, const TextSplit& text,
                       const std::function<void(const LmProgress&)>& on_progress = {});

// Bits per character on `text` with hard inference, in `streams` parallel streams of segments of
// `seq` bytes with the state carried.
double evaluate_bpc(Context& ctx, LmModel& m, const std::vector<int32_t>& text,
                    int64_t streams = 16, int64_t seq = 256);

void save_lm_checkpoint(const std::string& path, LmTrainer& tr);
// Throws fff::Error naming the path if the file is not an fff-lm checkpoint or is inconsistent.
LmTrainer load_lm_checkpoint(const std::string& path);

// Feeds the prompt, then draws n bytes from softmax(logits / temperature) (greedy if the
// temperature is 0). The same seed gives the same text.
std::string sample_lm(Context& ctx, LmModel& m, const std::string& prompt, int64_t n,
                      float temperature, uint64_t seed);

}  // namespace fff
