// A program that uses fff from another CMake project (see CMakeLists.txt next to this file):
// classifies a batch of random inputs with hard inference and prints each row's class.
//   fff_consumer MODEL.safetensors   a classifier written by `fff train --save`
//   fff_consumer                     a small random leaf FFF
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <vector>

#include "fff/core/context.h"
#include "fff/models/classifier.h"
#include "fff/version.h"

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: %s [MODEL.safetensors]\n", argv[0]);
    return 2;
  }
  std::printf("fff %s\n", FFF_VERSION_STRING);
  try {
    fff::Rng rng(1);
    std::unique_ptr<fff::Model> model;
    if (argc == 2) {
      model = fff::load_model(argv[1]).model;  // validates the file; throws fff::Error
    } else {
      fff::ModelConfig random_cfg;  // 16 inputs, a tree of 2^3 leaves of 4 neurons, 5 classes
      random_cfg.kind = fff::ModelKind::leaf_fff;
      random_cfg.in = 16;
      random_cfg.out = 5;
      random_cfg.depth = 3;
      random_cfg.leaf_width = 4;
      model = fff::make_model(random_cfg, rng);
    }
    const fff::ModelConfig& cfg = model->config();
    std::printf("model: %s, %lld inputs, %lld classes\n", fff::model_kind_name(cfg.kind),
                static_cast<long long>(cfg.in), static_cast<long long>(cfg.out));

    // Random inputs in [0, 1), as pixel intensities would be, standardised as in training: the
    // model stores the mean and deviation, the caller applies them.
    const int64_t batch = 8;
    std::vector<float> x(batch * cfg.in);
    for (float& v : x) v = (rng.uniform() - cfg.input_norm.mean) / cfg.input_norm.std;

    // Hard inference: each row takes one root-to-leaf path of the tree.
    std::vector<float> logits(batch * cfg.out);
    // Every computing call takes an execution context: the threads it may use, the floating-point
    // mode it runs in (set for the call, restored after) and its scratch memory.
    fff::Context ctx(2);
    model->prepare_inference();
    model->predict(ctx, x.data(), batch, logits.data(), /*routes=*/nullptr);

    for (int64_t r = 0; r < batch; ++r) {
      const float* row = &logits[r * cfg.out];
      int64_t best = 0;
      for (int64_t c = 1; c < cfg.out; ++c)
        if (row[c] > row[best]) best = c;
      std::printf("row %lld: class %lld, logits", static_cast<long long>(r),
                  static_cast<long long>(best));
      for (int64_t c = 0; c < cfg.out; ++c) std::printf(" %.6g", row[c]);
      std::printf("\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
