// Comma-separated lists of positive integers in the benchmarks' flags ("1,2", "1,8,32,128").
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace fff::bench {

// The values of `text`; throws std::invalid_argument naming `flag` and the first bad item.
inline std::vector<int64_t> positive_list(const std::string& flag, const std::string& text) {
  std::vector<int64_t> out;
  size_t p = 0;
  while (p <= text.size()) {
    const size_t q = std::min(text.find(',', p), text.size());
    const std::string item = text.substr(p, q - p);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0)
      throw std::invalid_argument(flag + ": '" + item + "' is not a positive integer");
    out.push_back(v);
    p = q + 1;
  }
  return out;
}

}  // namespace fff::bench
