// Benchmark: hard leaf FFF inference against the dense FF of the same training width, side by
// side in one process (median of repeats after warm-up), plus a memory-read floor.
// Usage: bench_leaf_fff [--in 784] [--out 10] [--leaf-width 8] [--depth 4] [--batch 10000]
//                       [--threads 1] [--repeats 15] [--json]
//        bench_leaf_fff --model FILE [--data fashion-mnist] ...   (a trained leaf FFF on the
//                       data set's test rows instead of random weights and inputs)
// FFF_SIMD=avx2 (as for fff) restricts the kernels' instruction set.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/cpu/simd.h"
#include "fff/io/data.h"
#include "fff/io/safetensors.h"
#include "fff/layers/ff/dense_ff.h"
#include "fff/layers/ff/leaf_fff.h"
#include "fff/models/classifier.h"
#include "harness/timing.h"

namespace {

// The leaf FFF inside a model file written by `fff train --model fff --save`.
fff::LeafFFF load_leaf_fff(const std::string& path) {
  fff::LoadedModel loaded = fff::load_model(path);
  const fff::ModelConfig& c = loaded.model->config();
  if (c.kind != fff::ModelKind::leaf_fff) throw fff::Error(path + ": not a leaf FFF model");
  fff::LeafFFF m{{c.in, c.out, c.depth, c.leaf_width, c.act}, {}, {}, {}, {}, {}, {}};
  std::vector<fff::Param*> dst = m.params(), src = loaded.model->params();
  for (size_t k = 0; k < dst.size(); ++k) *dst[k] = *src[k];
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t in = 784, out = 10, leaf_width = 8, depth = 4, batch = 10000;
  int threads = 1, repeats = 15;
  bool json = false;
  std::string model_path, data = "fashion-mnist";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_leaf_fff: %s needs a value\n", a.c_str());
        std::exit(1);
      }
      return std::stoll(argv[++i]);
    };
    if (a == "--in")
      in = next();
    else if (a == "--out")
      out = next();
    else if (a == "--leaf-width")
      leaf_width = next();
    else if (a == "--depth")
      depth = next();
    else if (a == "--batch")
      batch = next();
    else if (a == "--threads")
      threads = static_cast<int>(next());
    else if (a == "--repeats")
      repeats = static_cast<int>(next());
    else if (a == "--json")
      json = true;
    else if (a == "--model" && i + 1 < argc)
      model_path = argv[++i];
    else if (a == "--data" && i + 1 < argc)
      data = argv[++i];
    else {
      std::fprintf(stderr, "bench_leaf_fff: unknown flag %s\n", a.c_str());
      return 1;
    }
  }
  try {
    if (const char* simd = std::getenv("FFF_SIMD"); simd && *simd) fff::restrict_simd(simd);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_leaf_fff: FFF_SIMD: %s\n", e.what());
    return 1;
  }
  fff::Context ectx(threads);
  fff::Rng rng(7);
  fff::LeafFFF leaf;
  fff::Tensor x;
  if (model_path.empty()) {
    leaf = fff::make_leaf_fff({in, out, depth, leaf_width, fff::Activation::relu}, rng);
    x = fff::Tensor({batch, in});
    for (float& v : x.data) v = rng.normal();
  } else {
    try {
      leaf = load_leaf_fff(model_path);
      fff::TrainTest d = fff::load_dataset(data);
      const auto& meta = fff::load_safetensors(model_path).metadata;
      const fff::Standardization s{std::stof(meta.at("input_mean")),
                                   std::stof(meta.at("input_std"))};
      fff::apply_standardization(d.test.x, s);
      batch = std::min(batch, d.test.size());
      x = fff::take_rows(d.test, batch).x;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_leaf_fff: %s\n", e.what());
      return 1;
    }
  }
  const fff::LeafFFFConfig cfg = leaf.cfg;
  in = cfg.in, out = cfg.out, depth = cfg.depth, leaf_width = cfg.leaf_width;
  const fff::LeafFFFPacked packed = fff::pack_leaf_fff(leaf);
  const fff::DenseFFConfig dcfg{in, cfg.training_width(), out, fff::Activation::relu};
  const fff::DenseFF dense = fff::make_dense_ff(dcfg, rng);
  fff::Tensor y1({batch, out}), y2({batch, out});
  fff::DenseFFContext ctx;
  std::vector<float> sink(static_cast<size_t>(batch * in));

  auto run_fff = [&] { fff::leaf_fff_infer(ectx, packed, x.ptr(), batch, y1.ptr(), nullptr); };
  auto run_dense = [&] { fff::dense_ff_forward(ectx, dense, x.ptr(), batch, y2.ptr(), &ctx); };
  auto run_copy = [&] { std::memcpy(sink.data(), x.ptr(), sink.size() * sizeof(float)); };
  volatile float read_sink = 0.0f;
  auto run_read = [&] {  // the floor for any kernel that must read every input once
    float acc[16] = {};
    const float* p = x.ptr();
    const int64_t n = x.size() / 16 * 16;
    for (int64_t i = 0; i < n; i += 16)
      for (int k = 0; k < 16; ++k) acc[k] += p[i + k];
    float s = 0.0f;
    for (float a : acc) s += a;
    read_sink = s;
  };
  // One warm-up round, then the four alternate; each run starts right after a read of the
  // inputs, so all meet them equally warm.
  const std::vector<fff::bench::Stats> t =
      fff::bench::time_interleaved({run_fff, run_dense, run_copy, run_read}, repeats,
                                   /*warmup=*/1, run_read);
  const double per_row = 1e6 / static_cast<double>(batch);
  const double f_us = t[0].median * per_row, d_us = t[1].median * per_row;
  const double c_us = t[2].median * per_row, r_us = t[3].median * per_row;
  const double f_flops = fff::leaf_fff_inference_flops_per_row(cfg);
  const double d_flops = fff::dense_ff_flops_per_row(dcfg);
  if (json) {
    std::printf(
        "{\"in\":%lld,\"out\":%lld,\"depth\":%lld,\"leaf_width\":%lld,\"batch\":%lld,"
        "\"threads\":%d,\"repeats\":%d,\"fff_us_per_row\":%.5f,\"dense_us_per_row\":%.5f,"
        "\"speedup\":%.3f,\"flop_ratio\":%.3f,\"fff_gflops\":%.2f,\"dense_gflops\":%.2f,"
        "\"copy_us_per_row\":%.5f,\"read_us_per_row\":%.5f}\n",
        (long long)in, (long long)out, (long long)depth, (long long)leaf_width, (long long)batch,
        threads, repeats, f_us, d_us, d_us / f_us, d_flops / f_flops, f_flops / f_us * 1e-3,
        d_flops / d_us * 1e-3, c_us, r_us);
  } else {
    std::printf(
        "leaf FFF in=%lld out=%lld depth=%lld leaf=%lld, batch %lld, %d thread(s), median of %d\n",
        (long long)in, (long long)out, (long long)depth, (long long)leaf_width, (long long)batch,
        threads, repeats);
    std::printf("  FFF       %8.4f us/row  %7.2f GFLOP/s\n", f_us, f_flops / f_us * 1e-3);
    std::printf("  dense FF  %8.4f us/row  %7.2f GFLOP/s (width %lld)\n", d_us,
                d_flops / d_us * 1e-3, (long long)dcfg.width);
    std::printf("  memcpy of the input rows %8.4f us/row, one read of them %8.4f us/row\n", c_us,
                r_us);
    std::printf("  speedup %.2fx (FLOP ratio %.2fx)\n", d_us / f_us, d_flops / f_flops);
  }
  return 0;
}
