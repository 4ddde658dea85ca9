#include "cpu/cache_size.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace fff::cpu {

int64_t parse_cache_size(const char* text) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || v <= 0) return 0;
  switch (*end) {
    case 'K':
      return v << 10;
    case 'M':
      return v << 20;
    case '\0':
    case '\n':
      return v;
    default:
      return 0;
  }
}

namespace {

int64_t read_l2_bytes() {
  // sysfs first: glibc's sysconf decodes cpuid itself and is wrong on some virtual machines
  // (it reported a 320 MB L3 for a 32 MB one on an AMD EPYC guest).
  for (int index = 0; index < 8; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    std::ifstream level(dir + "/level"), type(dir + "/type"), size(dir + "/size");
    int l = 0;
    std::string t, s;
    if (!(level >> l) || !(type >> t) || !(size >> s)) continue;
    if (l == 2 && (t == "Unified" || t == "Data"))
      if (const int64_t bytes = parse_cache_size(s.c_str()); bytes > 0) return bytes;
  }
#ifdef _SC_LEVEL2_CACHE_SIZE
  if (const long v = ::sysconf(_SC_LEVEL2_CACHE_SIZE); v > 0) return v;
#endif
  return int64_t{1} << 20;
}

}  // namespace

int64_t l2_cache_bytes() {
  static const int64_t bytes = read_l2_bytes();
  return bytes;
}

}  // namespace fff::cpu
