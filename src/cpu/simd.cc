#include "fff/cpu/simd.h"

#include <hwy/targets.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "fff/core/common.h"
#include "fff/engine/cmm.h"

namespace fff {

const char* simd_target() {
  return cmm_simd_target();
}

void restrict_simd(const std::string& name) {
  // x86 targets only; a better target has a lower bit (hwy/detect_targets.h).
  static const std::pair<const char*, int64_t> kTargets[] = {{"avx3_dl", HWY_AVX3_DL},
                                                             {"avx3", HWY_AVX3},
                                                             {"avx2", HWY_AVX2},
                                                             {"sse4", HWY_SSE4},
                                                             {"ssse3", HWY_SSSE3}};
  for (const auto& [n, bit] : kTargets) {
    if (name != n) continue;
    const std::vector<int64_t> usable = hwy::SupportedAndGeneratedTargets();
    if (std::find(usable.begin(), usable.end(), bit) == usable.end())
      throw Error("SIMD target '" + name + "' is not supported by this CPU or build");
    hwy::DisableTargets(bit - 1);  // every better target
    return;
  }
  throw Error("unknown SIMD target '" + name + "' (expected avx3_dl, avx3, avx2, sse4 or ssse3)");
}

}  // namespace fff
