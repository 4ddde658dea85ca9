// The packed-weight products of the BERT encoder (fff/cpu/packed_gemm.h) at MiniLM's shapes:
// GFLOP/s against the number of rows, with the weights warm (one 384 x 1536 matrix, again and
// again: it stays in L2/L3) and cold (24 such matrices in turn, 57 MB: more than an L3 of 32 MB,
// as an encoder's weights are), alternating in every round (median of the repeats).
// Usage: bench_packed_gemm [--threads 1] [--repeats 15]
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/cpu/packed_gemm.h"
#include "harness/timing.h"

namespace {

volatile float g_sink;  // keeps the outputs alive

fff::Tensor normal_tensor(std::vector<int64_t> shape, float scale, fff::Rng& rng) {
  fff::Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t.ptr()[i] = scale * rng.normal();
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc || (a != "--threads" && a != "--repeats")) {
      std::fprintf(stderr, "bench_packed_gemm: unknown flag or missing value: %s\n", a.c_str());
      return 1;
    }
    (a == "--threads" ? threads : repeats) = std::stoi(argv[++i]);
  }
  constexpr int64_t H = 384, F = 1536, kMatrices = 24;
  fff::Rng rng(1);
  fff::Context ctx(threads);

  std::vector<fff::PackedMatrix> mats;
  for (int64_t i = 0; i < kMatrices; ++i) {
    const fff::Tensor b = normal_tensor({H, F}, 0.05f, rng);
    mats.push_back(fff::pack_matrix(b.ptr(), F, false, H, F));
  }
  const fff::Tensor a = normal_tensor({2048, F}, 1.0f, rng);
  fff::Tensor c({2048, F});

  std::printf("products x (M, %lld) W (%lld, %lld), %d thread(s), GFLOP/s (median of %d)\n",
              static_cast<long long>(H), static_cast<long long>(H), static_cast<long long>(F),
              threads, repeats);
  std::printf("%6s %14s %16s %18s\n", "M", "weights warm", "weights cold", "cold weights GB/s");
  for (int64_t M : {1, 6, 16, 32, 96, 512}) {
    auto warm = [&, M] {
      for (int64_t i = 0; i < kMatrices; ++i)
        fff::gemm_packed(ctx, M, a.ptr(), H, mats[0], nullptr, false, c.ptr(), F);
    };
    auto cold = [&, M] {
      for (const fff::PackedMatrix& m : mats)
        fff::gemm_packed(ctx, M, a.ptr(), H, m, nullptr, false, c.ptr(), F);
    };
    const auto st = fff::bench::time_interleaved({warm, cold}, repeats, 2);
    const double flops = 2.0 * static_cast<double>(M * H * F * kMatrices);
    const double bytes = 4.0 * static_cast<double>(H * F * kMatrices);
    std::printf("%6lld %14.1f %16.1f %18.1f\n", static_cast<long long>(M),
                flops / st[0].median * 1e-9, flops / st[1].median * 1e-9,
                bytes / st[1].median * 1e-9);
  }

  g_sink = c.ptr()[0];
  return 0;
}
