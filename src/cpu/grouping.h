// Counting sort of row indices by a small integer key, shared by the tree inference engines
// (internal header): rows that visit the same node or leaf become one contiguous group.
#pragma once

#include <cstdint>
#include <vector>

namespace fff::cpu {

// Sorts rows[0..n) (or 0..n-1 when rows is null) by key[row] - key_offset, which must lie in
// [0, keys), stably, into out[0..n); group g is out[start[g] .. start[g + 1]).
inline void group_by_key(const int32_t* rows, int64_t n, const int32_t* key, int32_t key_offset,
                         int64_t keys, int32_t* out, std::vector<int32_t>& start) {
  start.assign(static_cast<size_t>(keys + 1), 0);
  for (int64_t i = 0; i < n; ++i) ++start[key[rows ? rows[i] : i] - key_offset + 1];
  for (int64_t k = 0; k < keys; ++k) start[k + 1] += start[k];
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = rows ? rows[i] : static_cast<int32_t>(i);
    out[start[key[r] - key_offset]++] = r;
  }
  // start[k] now holds the end of group k; shift back to starts.
  for (int64_t k = keys; k > 0; --k) start[k] = start[k - 1];
  start[0] = 0;
}

}  // namespace fff::cpu
