// When the engine and the scans write their outputs with non-temporal (streaming) stores
// (internal header): one threshold for the one decision.
#pragma once

#include <cstdint>

namespace fff::cpu {

// Outputs of at least this many bytes, written once and not read back soon, bypass the caches:
// writing them through the caches would evict the weights or states the next steps read. About
// the size of a core's share of L3 on the machines measured (docs/performance.md, docs/qrnn.md).
inline constexpr int64_t kStreamingStoreBytes = int64_t{4} << 20;

}  // namespace fff::cpu
