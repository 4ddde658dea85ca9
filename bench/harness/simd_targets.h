// The Highway targets a benchmark's --simd flag names, for timing one kernel per instruction set
// side by side in one process (dispatch forced with hwy::SetSupportedTargetsForTest).
#pragma once

// The library's Highway settings (CMakeLists.txt), so that the list holds the targets it compiled.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

#include <hwy/targets.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fff::bench {

// The targets of a comma-separated list of names, any case ("avx2,avx3_dl"; "all": every one this
// build and CPU support, best first). Throws std::invalid_argument naming an unknown or
// unsupported one.
inline std::vector<int64_t> simd_targets(const std::string& list) {
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  const std::vector<int64_t> usable = hwy::SupportedAndGeneratedTargets();
  if (list == "all") return usable;
  std::vector<int64_t> out;
  size_t begin = 0;
  while (begin <= list.size()) {
    const size_t end = std::min(list.find(',', begin), list.size());
    const std::string name = lower(list.substr(begin, end - begin));
    const auto it = std::find_if(usable.begin(), usable.end(),
                                 [&](int64_t t) { return lower(hwy::TargetName(t)) == name; });
    if (it == usable.end())
      throw std::invalid_argument("--simd: '" + name +
                                  "' is not a target this CPU and build support");
    out.push_back(*it);
    begin = end + 1;
  }
  return out;
}

// f wrapped so that each call runs with dispatch forced to `target` (0: the CPU's own choice).
template <class F>
auto on_target(int64_t target, F f) {
  return [target, f] {
    hwy::SetSupportedTargetsForTest(target);
    f();
    hwy::SetSupportedTargetsForTest(0);
  };
}

}  // namespace fff::bench
