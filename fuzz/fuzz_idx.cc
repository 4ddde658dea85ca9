// The IDX (MNIST-style) readers, raw or gzipped: one input holds an images file and a labels
// file (fuzz_input.h's split_input); read_idx reads each, load_idx_pair pairs them.
#include "fff/io/data.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [images, labels] = fff_fuzz::split_input(data, size);
  const std::string images_path = fff_fuzz::input_file(images, "images");
  const std::string labels_path = fff_fuzz::input_file(labels, "labels");
  fff_fuzz::expect_only_fff_errors([&] { fff::read_idx(images_path); });
  fff_fuzz::expect_only_fff_errors([&] { fff::load_idx_pair(images_path, labels_path); });
  return 0;
}
