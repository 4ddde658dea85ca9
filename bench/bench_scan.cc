// Benchmark: the four linear-recurrence scans (the QRNN's f-pooling), forward and
// forward+backward, on 1 and 2 threads, beside the memory floor measured in the same run: a
// plain memcpy (glibc's, split over the same threads), scaled to the bytes the scan must move
// (a forward scan reads f and x and writes h: 12 bytes per token and feature; the backward
// moves twice that again). Also shown: one pass h = f + x over the same arrays.
// Usage: bench_scan [--features 256] [--min-log 10] [--max-log 21] [--threads 1,2]
//                   [--algos sequential,hillis-steele,blelloch,chunked] [--repeats 3]
//                   [--backward] [--max-gb 14] [--gate-min 0.5] [--json]
//        Gates are spread evenly over [gate-min, 1); --gate-min 1 sets them all to 1, the chunked
//        scan's worst case (its fix-up then runs through every chunk).
//        bench_scan --features 1 --min-log 24 --max-log 24 --threads 2   (one long channel)
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/cpu/scan.h"
#include "harness/timing.h"

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

// One warm-up run, then the median of `repeats` timed runs.
double median_seconds(int repeats, const std::function<void()>& f) {
  return fff::bench::time_repeated(f, {.warmup = 1, .repeats = repeats}).median;
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Array = std::unique_ptr<float[], FreeDeleter>;

// 64-byte aligned floats (as fff's tensors are), first touched by the threads that use them.
Array make_array(int64_t n, float base, float span) {
  const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
  Array p(static_cast<float*>(std::aligned_alloc(64, bytes)));
  if (!p) throw fff::Error("bench_scan: out of memory");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    p[i] = base + span * static_cast<float>((static_cast<uint64_t>(i) * 2654435761u) % 1024) / 1024;
  return p;
}

// One streaming pass over the same bytes as a forward scan: read two arrays, write one.
void stream_pass(const float* a, const float* b, float* out, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void parallel_memcpy(float* dst, const float* src, int64_t n, int threads) {
#pragma omp parallel num_threads(threads)
  {
    const int64_t k = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t i0 = n * k / nt, i1 = n * (k + 1) / nt;
    std::memcpy(dst + i0, src + i0, sizeof(float) * static_cast<size_t>(i1 - i0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  int64_t features = 256, min_log = 10, max_log = 21;
  int repeats = 3;
  double max_gb = 14.0, gate_min = 0.5;
  bool backward = false, json = false;
  std::vector<std::string> threads_list = {"1", "2"};
  std::vector<std::string> algo_names = {"sequential", "hillis-steele", "blelloch", "chunked"};
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--backward") {
        backward = true;
        continue;
      }
      if (a == "--json") {
        json = true;
        continue;
      }
      if (i + 1 >= argc) throw fff::Error("bench_scan: " + a + " needs a value");
      const std::string v = argv[++i];
      if (a == "--features")
        features = std::stoll(v);
      else if (a == "--min-log")
        min_log = std::stoll(v);
      else if (a == "--max-log")
        max_log = std::stoll(v);
      else if (a == "--threads")
        threads_list = split_list(v);
      else if (a == "--algos")
        algo_names = split_list(v);
      else if (a == "--repeats")
        repeats = std::stoi(v);
      else if (a == "--max-gb")
        max_gb = std::stod(v);
      else if (a == "--gate-min")
        gate_min = std::stod(v);
      else
        throw fff::Error("bench_scan: unknown flag " + a);
    }
    if (features <= 0 || min_log < 0 || max_log > 30 || min_log > max_log || repeats <= 0)
      throw fff::Error("bench_scan: need --features > 0, 0 <= --min-log <= --max-log <= 30");
    if (!(gate_min >= 0.0 && gate_min <= 1.0))
      throw fff::Error("bench_scan: --gate-min must be in [0, 1]");
    std::vector<fff::ScanAlgo> algos;
    for (const auto& n : algo_names) algos.push_back(fff::parse_scan_algo(n));
    if (!json)
      std::printf("%-14s %9s %5s %3s %-17s %10s %12s %8s %10s %8s %11s %10s\n", "scan", "T", "C",
                  "thr", "pass", "seconds", "tok*feat/s", "GB/s", "floor s", "x floor",
                  "memcpy GB/s", "f+x pass s");
    for (int64_t L = min_log; L <= max_log; ++L) {
      const int64_t T = int64_t{1} << L, n = T * features;
      const double array_gb = 4.0 * static_cast<double>(n) / 1e9;
      auto f = make_array(n, static_cast<float>(gate_min), static_cast<float>(1.0 - gate_min)),
           x = make_array(n, -1.0f, 2.0f), h = make_array(n, 0, 0);
      Array dh, dx, df;
      if (backward)
        dh = make_array(n, -1.0f, 2.0f), dx = make_array(n, 0, 0), df = make_array(n, 0, 0);
      const double arrays = backward ? 6.0 : 3.0;
      for (const auto& ts : threads_list) {
        const int threads = std::stoi(ts);
        // Flushes subnormals (the default): products of many gates fall below 1e-38.
        fff::Context ctx(threads);
        const double pass_s =
            median_seconds(repeats, [&] { stream_pass(f.get(), x.get(), h.get(), n, threads); });
        const double copy_s =
            median_seconds(repeats, [&] { parallel_memcpy(h.get(), x.get(), n, threads); });
        const double memcpy_gbps = 2.0 * array_gb / copy_s;  // bytes read + written
        for (fff::ScanAlgo algo : algos) {
          // Working arrays: Hillis-Steele double-buffers the (gate, value) pairs, Blelloch keeps
          // one copy; skip sizes that do not fit the memory budget.
          const double temps = algo == fff::ScanAlgo::hillis_steele ? 4.0
                               : algo == fff::ScanAlgo::blelloch    ? 2.0
                                                                    : 0.0;
          const double need_gb = (arrays + temps) * array_gb;
          const char* pass = backward ? "forward+backward" : "forward";
          if (need_gb > max_gb) {
            if (!json)
              std::printf("%-14s %9lld %5lld %3d %-17s skipped: needs %.1f GB (--max-gb %.1f)\n",
                          fff::scan_algo_name(algo), static_cast<long long>(T),
                          static_cast<long long>(features), threads, pass, need_gb, max_gb);
            continue;
          }
          const double s = median_seconds(repeats, [&] {
            fff::scan_forward(ctx, algo, f.get(), x.get(), T, features, nullptr, h.get());
            if (backward)
              fff::scan_backward(ctx, algo, f.get(), h.get(), dh.get(), T, features, nullptr,
                                 dx.get(), df.get(), nullptr);
          });
          const double bytes = (backward ? 9.0 : 3.0) * array_gb * 1e9;
          const double floor_s = bytes / (memcpy_gbps * 1e9);
          const double pass_floor_s = pass_s * (backward ? 3.0 : 1.0);
          const double rate = static_cast<double>(n) / s;
          if (json) {
            std::printf(
                "{\"scan\":\"%s\",\"T\":%lld,\"features\":%lld,\"threads\":%d,\"pass\":\"%s\","
                "\"gate_min\":%g,\"seconds\":%.6g,\"tokens_features_per_second\":%.6g,\"gbps\":%."
                "4g,"
                "\"floor_seconds\":%.6g,\"ratio_to_floor\":%.4g,\"memcpy_gbps\":%.4g,"
                "\"stream_pass_seconds\":%.6g}\n",
                fff::scan_algo_name(algo), static_cast<long long>(T),
                static_cast<long long>(features), threads, pass, gate_min, s, rate, bytes / s / 1e9,
                floor_s, s / floor_s, memcpy_gbps, pass_floor_s);
          } else {
            std::printf(
                "%-14s %9lld %5lld %3d %-17s %10.4f %12.4g %8.2f %10.4f %7.2fx %11.2f %10.4f\n",
                fff::scan_algo_name(algo), static_cast<long long>(T),
                static_cast<long long>(features), threads, pass, s, rate, bytes / s / 1e9, floor_s,
                s / floor_s, memcpy_gbps, pass_floor_s);
          }
          std::fflush(stdout);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
