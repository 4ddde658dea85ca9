// The one timing helper of the benchmarks and the CLI: warm-up runs, timed repeats, median (with
// min and max), and the same-process side-by-side pattern that alternates the contenders in every
// round so that the machine's drift (clock boost, other load, cache state) hits them alike.
// Times are in seconds; results are plain structs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace fff::bench {

// Summary of timed samples (seconds unless a caller says otherwise).
struct Stats {
  double median = 0.0;  // of an even count: the mean of the two middle samples
  double min = 0.0, max = 0.0;
  int runs = 0;
};

// Median, min and max of samples (all zero for none).
inline Stats summarize(std::vector<double> samples) {
  Stats s;
  s.runs = static_cast<int>(samples.size());
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  s.median = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

// Wall-clock seconds of one call of fn (steady clock).
template <class F>
double time_once(F&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct RepeatOptions {
  int warmup = 1;            // untimed runs first (caches, page faults, thread start)
  int repeats = 5;           // at least this many timed runs
  double min_seconds = 0.0;  // and go on until the timed runs add up to this long
};

// Runs fn opt.warmup times untimed, then times it until opt.repeats runs are done and they add
// up to opt.min_seconds. `before` (if given) runs ahead of every timed run, outside the timing.
template <class F>
Stats time_repeated(F&& fn, const RepeatOptions& opt, const std::function<void()>& before = {}) {
  for (int i = 0; i < opt.warmup; ++i) fn();
  std::vector<double> t;
  double total = 0.0;
  while (static_cast<int>(t.size()) < std::max(opt.repeats, 1) || total < opt.min_seconds) {
    if (before) before();
    t.push_back(time_once(fn));
    total += t.back();
  }
  return summarize(std::move(t));
}

// The same-process side-by-side pattern: `warmup` untimed rounds, then `rounds` timed rounds,
// each running every contender once in the given order; `before` (if given) runs ahead of every
// timed call, outside the timing (e.g. to read the inputs, so every contender meets them equally
// warm). Returns one Stats per contender.
inline std::vector<Stats> time_interleaved(const std::vector<std::function<void()>>& fns,
                                           int rounds, int warmup = 1,
                                           const std::function<void()>& before = {}) {
  std::vector<std::vector<double>> t(fns.size());
  for (int round = -warmup; round < std::max(rounds, 1); ++round)
    for (size_t k = 0; k < fns.size(); ++k) {
      if (before) before();
      const double s = time_once(fns[k]);
      if (round >= 0) t[k].push_back(s);
    }
  std::vector<Stats> out;
  for (auto& v : t) out.push_back(summarize(std::move(v)));
  return out;
}

// Two contenders, A then B in each round.
struct SideBySide {
  Stats a, b;
};

inline SideBySide time_side_by_side(const std::function<void()>& a, const std::function<void()>& b,
                                    int rounds, int warmup = 1,
                                    const std::function<void()>& before = {}) {
  const std::vector<Stats> s = time_interleaved({a, b}, rounds, warmup, before);
  return {s[0], s[1]};
}

}  // namespace fff::bench
