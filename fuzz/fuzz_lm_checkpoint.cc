// The language-model checkpoint loader (`fff lm sample`, resumed `fff lm train`): model,
// optimizer state and carried recurrent state checked against the config; a checkpoint that
// loads must then run a few tokens.
#include <vector>

#include "fff/core/context.h"
#include "fff/training/lm_train.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data, size));
  fff_fuzz::expect_only_fff_errors([&] {
    fff::LmTrainer tr = fff::load_lm_checkpoint(path);
    fff::Context ctx(1);
    const int32_t tokens[3] = {0, 'a', 255};
    fff::LmState state;
    fff::LmContext cache;
    std::vector<float> logits(3 * fff::LmConfig::kVocab);
    fff::lm_forward(ctx, tr.model, tokens, 3, 1, state, false, logits.data(), cache);
  });
  return 0;
}
