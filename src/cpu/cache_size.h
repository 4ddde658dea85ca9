// The per-core L2 size of the machine (internal header): the engine sizes its tiles from it
// instead of from a constant measured on one machine.
#pragma once

#include <cstdint>

namespace fff::cpu {

// Bytes of the L2 cache of CPU 0, as Linux reports it in sysfs (the level-2 data or unified
// cache), else as the C library reports it, else 1 MB. Read once per process.
int64_t l2_cache_bytes();

// Parses a sysfs cache size such as "1024K", "2048K" or "1M" (0 if it is not one).
int64_t parse_cache_size(const char* text);

}  // namespace fff::cpu
