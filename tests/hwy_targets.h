// Runs a kernel test once per SIMD target: a portable build's targets are all checked, not only
// the one this machine would pick.
#pragma once

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cstdint>

namespace fff_test {

// Runs f once per target that this build compiled and the CPU supports (the test is compiled
// with the library's Highway settings, so its target list is the library's), with dispatch
// forced to it.
template <class F>
void for_each_target(F f) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    f();
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the CPU's own choice
}

}  // namespace fff_test
