#!/usr/bin/env bash
# The whole test suite once more, built with AddressSanitizer and UndefinedBehaviorSanitizer
# (FFF_SANITIZE) in build-asan/: the C++ tests, the CLI tests, the Python package's tests (the
# extension run with the sanitizer runtime preloaded) and the replay of every fuzz corpus and
# regression input (ctest fuzz.replay.*). Undefined behaviour, a memory error or a leak fails the
# test it happens in. Only the package-build tests (label `package`: pip install, the CMake
# package built by another project) are left out: they compile fff again, unsanitized.
# Usage: scripts/sanitize.sh (after scripts/setup.sh, which installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-asan
if [ ! -f $build/build.ninja ]; then
  # -g1: line numbers in the reports; asserts on. The library at -O1, where the tests spend their
  # time; the tests, the tool and the Python extension at -O0, which compiles in half the time of
  # -O1 under the sanitizers (docs/reliability.md, "CI time").
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" \
    -DFFF_LIBRARY_COMPILE_OPTIONS=-O1 -DFFF_SANITIZE=ON -DFFF_BENCH=OFF -DFFF_INSTALL=OFF \
    -DPython_EXECUTABLE=/usr/bin/python3 >&2
fi
cmake --build $build >&2
# One kill of each kind per writer in cli.crash_safety (the normal run does the many kills; here
# the point is the sanitizers on the write paths).
FFF_CRASH_KILLS=${FFF_CRASH_KILLS:-1} FFF_CRASH_TARGETED=${FFF_CRASH_TARGETED:-1} \
  ctest --test-dir $build --output-on-failure -j2 --timeout 900 -LE package
