// Cost of one parallel region of fff (core/parallel.h's parallel_for on a Context): `regions`
// regions of trivial work, each followed by `gap` microseconds of serial busy work on the calling
// thread (as a layer's serial code between two of its regions), timed on 1 and on N threads. The
// difference per region is what a region costs beyond its work: waking the workers and waiting
// for them. Run it with OMP_WAIT_POLICY=PASSIVE and without, to see that fff's regions no longer
// depend on it.
//   bench_region [--threads N] [--regions R] [--gaps 0,20,100,300] [--repeats K]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "fff/core/context.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Serial work of about `us` microseconds (a spin on the clock, as the C reproduction does).
void busy(double us) {
  if (us <= 0) return;
  const auto t0 = Clock::now();
  while (seconds_since(t0) * 1e6 < us) {
  }
}

// Seconds for `regions` regions with `gap` microseconds of serial work after each.
double run(fff::Context& ctx, int regions, double gap) {
  std::vector<float> sink(64, 0.0f);
  const auto t0 = Clock::now();
  for (int i = 0; i < regions; ++i) {
    fff::parallel_for(ctx, ctx.threads, [&](int64_t k) { sink[k * 8] += 1.0f; });
    busy(gap);
  }
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, regions = 2000, repeats = 5;
  std::string gaps = "0,20,100,300";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--regions"))
      regions = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--gaps"))
      gaps = argv[i + 1];
    else if (!std::strcmp(argv[i], "--repeats"))
      repeats = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_region: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (threads < 2 || threads > 8 || regions < 1 || repeats < 1) {
    std::fprintf(stderr, "bench_region: need 2 <= threads <= 8, regions >= 1, repeats >= 1\n");
    return 2;
  }
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  std::printf("OMP_WAIT_POLICY=%s, %d regions, %d threads, median of %d\n",
              policy ? policy : "(unset)", regions, threads, repeats);
  std::printf("%8s %14s %14s %16s\n", "gap_us", "1 thread us", "N threads us", "region cost us");
  std::stringstream ss(gaps);
  for (std::string g; std::getline(ss, g, ',');) {
    const double gap = std::atof(g.c_str());
    fff::Context one(1), many(threads);
    run(many, 100, gap);  // start the workers
    std::vector<double> t1, tn;
    for (int r = 0; r < repeats; ++r) {
      t1.push_back(run(one, regions, gap) / regions * 1e6);
      tn.push_back(run(many, regions, gap) / regions * 1e6);
    }
    std::sort(t1.begin(), t1.end());
    std::sort(tn.begin(), tn.end());
    const double m1 = t1[t1.size() / 2], mn = tn[tn.size() / 2];
    std::printf("%8.0f %14.2f %14.2f %16.2f\n", gap, m1, mn, mn - m1);
  }
  return 0;
}
