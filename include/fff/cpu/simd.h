// Which SIMD instruction set fff's kernels run (Highway's run-time dispatch), and a way for an
// application to restrict it: e.g. to time the AVX2 kernels on an AVX-512 CPU (`FFF_SIMD=avx2
// fff bench ...`).
#pragma once

#include <string>

namespace fff {

// The instruction set the dispatched kernels use now, e.g. "AVX3_DL", "AVX2".
const char* simd_target();

// Process-wide, so only an application calls it, before any fff work: dispatch may use `name`
// ("avx3_dl", "avx3", "avx2", "sse4", "ssse3") and older sets, none newer. Throws fff::Error for
// an unknown name or one the CPU (or this build) does not support.
void restrict_simd(const std::string& name);

}  // namespace fff
