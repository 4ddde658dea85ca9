// The safetensors reader on arbitrary bytes: the header length, the JSON header, every entry's
// dtype/shape/offsets and the metadata map.
#include "fff/io/safetensors.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data, size));
  fff_fuzz::expect_only_fff_errors([&] { fff::load_safetensors(path); });
  fff_fuzz::expect_only_fff_errors([&] { fff::load_safetensors_metadata(path); });
  return 0;
}
