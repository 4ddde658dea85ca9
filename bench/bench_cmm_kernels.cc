// Throughput of the CMM engine's SIMD kernels on data that stays in L1/L2, per instruction set:
// what the kernels' register blocking reaches when memory does not bind (the engine's own
// benchmarks, bench_cmm and fff bench, include the misses). Each case runs once per target of
// --simd in the same rounds (median of repeats after a warm-up) and prints GFLOP/s.
// Usage: bench_cmm_kernels [--simd all|avx2,avx3_dl,...] [--n 768] [--repeats 15]
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/cmm_kernels.h"
#include "fff/core/common.h"
#include "harness/simd_targets.h"
#include "harness/timing.h"

namespace {

struct Case {
  std::string name;
  double flops;  // per call
  std::function<void()> run;
};

volatile float g_sink;  // keeps each case's last output alive

}  // namespace

int main(int argc, char** argv) {
  std::string simd = "all";
  int64_t n = 768;
  int repeats = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_cmm_kernels: unknown flag or missing value: %s\n", a.c_str());
      return 1;
    }
    const std::string v = argv[++i];
    if (a == "--simd")
      simd = v;
    else if (a == "--n")
      n = std::stoll(v);
    else if (a == "--repeats")
      repeats = std::stoi(v);
    else {
      std::fprintf(stderr, "bench_cmm_kernels: unknown flag %s\n", a.c_str());
      return 1;
    }
  }
  std::vector<int64_t> targets;
  try {
    targets = fff::bench::simd_targets(simd);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "bench_cmm_kernels: %s\n", e.what());
    return 1;
  }
  // 64 input rows and 128 weight rows of n floats: 0.6 MB at n = 768, within L2.
  constexpr int64_t kRows = 64, kWeights = 128, kTerms = 12;
  fff::Rng rng(1);
  // Vector-aligned, as the engine's tensors are.
  fff::FloatVector xs(kRows * n), ws(kWeights * n), out(kRows * kWeights), ys(kRows * n);
  for (float& v : xs) v = rng.normal();
  for (float& v : ws) v = rng.normal();
  std::vector<const float*> x(kRows), w(kWeights);
  std::vector<float*> y(kRows);
  for (int64_t r = 0; r < kRows; ++r) x[r] = &xs[r * n], y[r] = &ys[r * n];
  for (int64_t k = 0; k < kWeights; ++k) w[k] = &ws[k * n];
  std::vector<float> a(kRows * kTerms);
  for (float& v : a) v = rng.normal();

  const double dn = static_cast<double>(n);
  std::vector<Case> cases;
  // Rows of one node's group against its weight row (deep nodes: a few rows; shallow: many).
  for (int64_t rows : {1, 4, 16, 64})
    cases.push_back(
        {"dot_rows      rows " + std::to_string(rows), 2.0 * rows * dn * kWeights, [&, rows] {
           for (int64_t k = 0; k < kWeights; ++k)
             fff::cpu::cmm_dot_rows(x.data(), rows, w[k], n, &out[k * kRows]);
         }});
  // Rows alone at their nodes, each with its own weight row.
  cases.push_back({"dot_pairs     rows 8", 2.0 * 8 * dn * kWeights, [&] {
                     for (int64_t k = 0; k + 8 <= kWeights; k += 8)
                       for (int64_t r = 0; r + 8 <= kRows; r += 8)
                         fff::cpu::cmm_dot_pairs(&x[r], &w[k], 8, n, &out[k]);
                   }});
  // Rows sharing a path of 12 output rows (a tree's levels), 16 paths.
  for (int64_t rows : {1, 4, 16})
    cases.push_back({"combine_rows  rows " + std::to_string(rows) + " terms 12",
                     2.0 * rows * kTerms * dn * 8, [&, rows] {
                       for (int64_t p = 0; p < 8; ++p)
                         fff::cpu::cmm_combine_rows(a.data(), kTerms, kTerms, &w[p * kTerms], n,
                                                    nullptr, false, false, y.data(), rows);
                     }});
  // Gathered rows against a block of weight rows (leaf FFF: nodes and a leaf's hidden neurons).
  for (int64_t nw : {8, 32})
    cases.push_back(
        {"dot_matrix    rows 64 nw " + std::to_string(nw), 2.0 * kRows * nw * dn * 4, [&, nw] {
           for (int64_t b = 0; b < 4; ++b)
             fff::cpu::cmm_dot_matrix(x.data(), kRows, ws.data() + b * nw * n, n, n, nw, out.data(),
                                      kWeights);
         }});

  std::vector<std::function<void()>> fs;
  for (const Case& c : cases)
    for (int64_t t : targets) fs.push_back(fff::bench::on_target(t, c.run));
  const std::vector<fff::bench::Stats> st = fff::bench::time_interleaved(fs, repeats, 2);
  g_sink = out[0] + ys[0];
  std::printf("n %lld, GFLOP/s (median of %d)\n%-34s", static_cast<long long>(n), repeats,
              "kernel");
  for (int64_t t : targets) std::printf(" %9s", hwy::TargetName(t));
  std::printf("\n");
  size_t k = 0;
  for (const Case& c : cases) {
    std::printf("%-34s", c.name.c_str());
    for (size_t j = 0; j < targets.size(); ++j, ++k)
      std::printf(" %9.1f", c.flops / st[k].median * 1e-9);
    std::printf("\n");
  }
  return 0;
}
