// The text corpus reader of `fff lm train` (bytes as tokens, split into training and validation).
#include "fff/training/lm_train.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the validation share, including the invalid 0 and 1.
  const double val_fraction = data[0] / 255.0;
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data + 1, size - 1));
  fff_fuzz::expect_only_fff_errors([&] {
    const fff::TextSplit s = fff::load_text(path, val_fraction);
    if (s.train.size() + s.val.size() != size - 1) __builtin_trap();  // every byte kept, once
  });
  return 0;
}
