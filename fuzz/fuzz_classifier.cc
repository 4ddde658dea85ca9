// The classifier loader (`fff eval`, `fff info`): metadata checked against the tensors' shapes
// and values; a model that loads must then run.
#include <vector>

#include "fff/core/context.h"
#include "fff/models/classifier.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data, size));
  fff_fuzz::expect_only_fff_errors([&] {
    fff::LoadedModel m = fff::load_model(path);
    const fff::ModelConfig& c = m.model->config();
    fff::Context ctx(1);
    std::vector<float> x(2 * c.in, 0.5f), logits(2 * c.out);
    x[0] = -1.0f;
    m.model->predict(ctx, x.data(), 2, logits.data(), nullptr);
  });
  return 0;
}
