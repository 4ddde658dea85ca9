// The CIFAR-10 binary reader: records of a label byte and 3072 pixels.
#include "fff/io/data.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data, size));
  fff_fuzz::expect_only_fff_errors([&] { fff::load_cifar10_file(path); });
  return 0;
}
