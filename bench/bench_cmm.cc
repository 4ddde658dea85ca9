// Benchmark of the CMM engine's paths for neuron FFF inference (batched with its tuning knobs,
// row at a time), beside the memory floor of the same batch: reading the inputs and writing the
// outputs once. Median of repeats after a warm-up; every call takes a different batch of tokens.
// Usage: bench_cmm [--dim 768] [--trees 1] [--depth 11] [--batch 16384] [--threads 1|1,2]
//                  [--band 6] [--tile 0] [--pack -1] [--repeats 11] [--no-rowwise]
//                  [--simd all|avx2,avx3_dl,...]
// --simd times each path once per listed instruction set (Highway target), interleaved in the
// same rounds: the side-by-side way to compare, say, the AVX2 kernels with the AVX-512 ones on
// one machine. A list of thread counts likewise times each path per count in the same rounds (the
// scaling, measured side by side).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/engine/cmm.h"
#include "harness/list_args.h"
#include "harness/simd_targets.h"
#include "harness/timing.h"

int main(int argc, char** argv) {
  int64_t dim = 768, trees = 1, depth = 11, batch = 16384, band = 6, tile = 0, pack = -1;
  int repeats = 11;
  std::vector<int64_t> threads = {1};
  bool rowwise = true;
  std::vector<int64_t> targets = {0};  // 0: the CPU's own choice
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-rowwise") {
      rowwise = false;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_cmm: unknown flag or missing value: %s\n", a.c_str());
      return 1;
    }
    if (a == "--simd" || a == "--threads") {
      try {
        if (a == "--simd")
          targets = fff::bench::simd_targets(argv[++i]);
        else
          threads = fff::bench::positive_list(a, argv[++i]);
      } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "bench_cmm: %s\n", e.what());
        return 1;
      }
      continue;
    }
    const int64_t v = std::stoll(argv[++i]);
    if (a == "--dim")
      dim = v;
    else if (a == "--trees")
      trees = v;
    else if (a == "--depth")
      depth = v;
    else if (a == "--batch")
      batch = v;
    else if (a == "--band")
      band = v;
    else if (a == "--tile")
      tile = v;
    else if (a == "--pack")
      pack = v;
    else if (a == "--repeats")
      repeats = static_cast<int>(v);
    else {
      std::fprintf(stderr, "bench_cmm: unknown flag %s\n", a.c_str());
      return 1;
    }
  }
  std::vector<std::unique_ptr<fff::Context>> contexts;
  for (int64_t t : threads) contexts.push_back(std::make_unique<fff::Context>(static_cast<int>(t)));
  fff::Rng rng(1);
  const fff::NeuronFFF m =
      fff::make_neuron_fff({dim, dim, trees, depth, fff::Activation::gelu, false}, rng);
  // Two distinct batches alternate, so no call finds its inputs in cache from the previous one
  // when the batch exceeds the cache.
  const int64_t pool = std::max<int64_t>(2, std::min<int64_t>(1024, 16384 / batch));
  fff::Tensor x({pool * batch, dim}), y({batch, dim});
  for (float& v : x.data) v = rng.normal();
  int64_t call = 0;
  auto input = [&] { return x.row((call++ % pool) * batch); };
  const double per = 1.0 / static_cast<double>(batch);
  fff::CmmOptions opt;
  opt.band_levels = band;
  opt.tile_rows = tile;
  opt.pack_rows = pack;
  std::vector<std::string> names = {"memory floor (copy x to y)"};
  std::vector<std::function<void()>> fs = {
      [&] { std::memcpy(y.ptr(), input(), sizeof(float) * batch * dim); }};
  for (size_t c = 0; c < contexts.size(); ++c)
    for (int64_t t : targets) {
      fff::Context& ctx = *contexts[c];
      std::string tag;
      if (t) tag += std::string(" [") + hwy::TargetName(t) + "]";
      if (threads.size() > 1) (tag += " threads ") += std::to_string(threads[c]);
      names.push_back("batched" + tag);
      fs.push_back(fff::bench::on_target(
          t, [&] { fff::neuron_fff_infer_batched(ctx, m, input(), batch, y.ptr(), opt); }));
      if (rowwise) {
        names.push_back("row at a time" + tag);
        fs.push_back(fff::bench::on_target(
            t, [&] { fff::neuron_fff_infer_rowwise(ctx, m, input(), batch, y.ptr()); }));
      }
    }
  // Every variant once per round, after one warm-up round, so that the machine's drift hits all
  // variants alike.
  std::vector<double> us;
  for (const fff::bench::Stats& s : fff::bench::time_interleaved(fs, repeats))
    us.push_back(s.median * 1e6);
  std::printf("simd %s  dim %ld  %ldx%ld  batch %ld  band %ld  tile %ld  pack %ld\n",
              fff::cmm_simd_target(), dim, trees, depth, batch, band, tile, pack);
  for (size_t k = 0; k < fs.size(); ++k)
    std::printf("%-36s %8.3f us/token  %5.2fx floor\n", names[k].c_str(), us[k] * per,
                us[k] / us[0]);
  return 0;
}
