// How fast one core reads scattered weight rows, by the size of the pool they are drawn from:
// the bound under the CMM engine once a tree's rows are beyond the cache. Each trial reads
// random rows of a pool through the engine's own dot kernel (cmm_dot_rows), with or without its
// request of the next row, beside a sequential read of the same bytes. Median of repeats.
// Usage: bench_row_reads [--pools-mb 1,8,32,128,400] [--row-floats 768] [--read-mb 64]
//                        [--repeats 5] [--json]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/cmm_kernels.h"
#include "fff/core/common.h"
#include "harness/list_args.h"
#include "harness/timing.h"

namespace {

// The values of a list flag; exits with the message on a bad one.
std::vector<int64_t> parse_list(const std::string& flag, const std::string& text) {
  try {
    return fff::bench::positive_list(flag, text);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "bench_row_reads: %s\n", e.what());
    std::exit(1);
  }
}

// Reads rows start[0..n) of `floats` each; next row requested ahead if `request_next`.
float read_rows(const std::vector<const float*>& start, int64_t floats, const float* ones,
                bool request_next) {
  float sum = 0.0f;
  const int64_t n = static_cast<int64_t>(start.size());
  for (int64_t i = 0; i < n; ++i) {
    const float* next = i + 1 < n ? start[i + 1] : nullptr;
    float z;
    fff::cpu::cmm_dot_rows(&ones, 1, start[i], floats, &z, &next, request_next && next ? 1 : 0);
    sum += z;
  }
  return sum;
}

volatile float g_sink;  // the sums, kept so that no read can be dropped

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> pools_mb = {1, 8, 32, 128, 400};
  int64_t row_floats = 768, read_mb = 64, repeats = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::printf(
          "bench_row_reads: one core's read speed for scattered weight rows, by pool size\n"
          "  --pools-mb LIST   pool sizes in MB (default 1,8,32,128,400)\n"
          "  --row-floats N    floats per row (default 768: a 1x11 FFF row at d = 768)\n"
          "  --read-mb N       MB read per trial (default 64)\n"
          "  --repeats N       trials per variant, median reported (default 5)\n"
          "  --json            one JSON object per pool on stdout\n");
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_row_reads: unknown flag or missing value: %s\n", a.c_str());
      return 1;
    }
    const std::string v = argv[++i];
    if (a == "--pools-mb") {
      pools_mb = parse_list(a, v);
    } else if (a == "--row-floats" || a == "--read-mb" || a == "--repeats") {
      const int64_t x = parse_list(a, v).at(0);
      (a == "--row-floats" ? row_floats : a == "--read-mb" ? read_mb : repeats) = x;
    } else {
      std::fprintf(stderr, "bench_row_reads: unknown flag: %s\n", a.c_str());
      return 1;
    }
  }
  const double row_bytes = static_cast<double>(row_floats) * sizeof(float);
  const std::vector<float> ones(static_cast<size_t>(row_floats), 1.0f);
  if (!json)
    std::printf("%8s %10s %12s %14s %12s\n", "pool MB", "row bytes", "random GB/s",
                "+next row GB/s", "seq GB/s");
  fff::Rng rng(1);
  float sink = 0.0f;
  for (const int64_t mb : pools_mb) {
    const int64_t pool_rows = std::max<int64_t>(1, (mb << 20) / static_cast<int64_t>(row_bytes));
    const fff::Tensor pool({pool_rows, row_floats}, 1.0f);  // huge pages from 4 MB on
    const int64_t reads = std::max<int64_t>(1, (read_mb << 20) / static_cast<int64_t>(row_bytes));
    std::vector<double> random_s, next_s, seq_s;
    std::vector<const float*> start(static_cast<size_t>(reads)), seq(start.size());
    for (int64_t i = 0; i < reads; ++i) seq[i] = pool.ptr() + (i % pool_rows) * row_floats;
    for (int64_t rep = -1; rep < repeats; ++rep) {  // the first round warms up
      for (auto& s : start)
        s = pool.ptr() + static_cast<int64_t>(rng.below(pool_rows)) * row_floats;
      auto time = [&](const std::vector<const float*>& rows, bool request_next) {
        return fff::bench::time_once(
            [&] { sink += read_rows(rows, row_floats, ones.data(), request_next); });
      };
      const double a = time(start, false), b = time(start, true), c = time(seq, false);
      if (rep < 0) continue;
      random_s.push_back(a);
      next_s.push_back(b);
      seq_s.push_back(c);
    }
    const double bytes = static_cast<double>(reads) * row_bytes;
    using fff::bench::summarize;
    const double g_random = bytes / summarize(random_s).median * 1e-9,
                 g_next = bytes / summarize(next_s).median * 1e-9,
                 g_seq = bytes / summarize(seq_s).median * 1e-9;
    if (json)
      std::printf(
          "{\"benchmark\":\"row_reads\",\"pool_mb\":%lld,\"row_bytes\":%.0f,\"random_gbps\":%.2f,"
          "\"random_next_row_gbps\":%.2f,\"sequential_gbps\":%.2f,\"repeats\":%lld}\n",
          static_cast<long long>(mb), row_bytes, g_random, g_next, g_seq,
          static_cast<long long>(repeats));
    else
      std::printf("%8lld %10.0f %12.1f %14.1f %12.1f\n", static_cast<long long>(mb), row_bytes,
                  g_random, g_next, g_seq);
  }
  g_sink = sink;
  return 0;
}
