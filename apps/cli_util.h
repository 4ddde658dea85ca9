// Small helpers shared by the fff command-line tool's commands: clocks, thread defaults and
// human-readable durations.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

namespace fff_cli {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline int default_threads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// "42s", "3m07s", "1h05m"; "?" when unknown.
inline std::string duration_string(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt("%.0fs", s);
  if (s < 3600)
    return std::to_string(static_cast<int>(s) / 60) + "m" + fmt("%02.0fs", std::fmod(s, 60));
  return std::to_string(static_cast<int>(s) / 3600) + "h" + fmt("%02.0fm", std::fmod(s / 60, 60));
}

}  // namespace fff_cli
