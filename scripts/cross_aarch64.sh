#!/usr/bin/env bash
# Cross-builds fff's SIMD kernel tests for 64-bit Arm (Debian's g++-aarch64-linux-gnu) and runs
# them under qemu-user on several emulated CPUs, so that Highway's Arm targets (NEON, SVE, SVE2
# and the fixed-length SVE_256 and SVE2_128) are checked for correctness on an x86 machine. The
# kernel tests run every target the CPU supports (tests/hwy_targets.h), so each CPU below covers
# NEON and whichever SVE targets its vector length selects. Times under emulation say nothing
# about speed. Run by hand (minutes of emulation; not part of .ci/run), from anywhere:
#   scripts/cross_aarch64.sh [--no-install] [-j N] [--cpu SPEC]...
# Builds in build-aarch64/ with cmake/toolchains/aarch64-linux-gnu.cmake; logs go to
# build-aarch64/qemu/. Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/cross_aarch64.sh [--no-install] [-j N] [--cpu SPEC]...
  --no-install  do not install missing Debian packages (fail, naming them, instead)
  -j N          build jobs (default: the number of CPUs)
  --cpu SPEC    a qemu -cpu value to run the tests on, repeatable (default: the list below)
  -h, --help    this text
Default CPUs (qemu 7.2): cortex-a72 (NEON), a64fx (SVE, 512-bit), max,sve-max-vq=1 (SVE2,
128-bit: SVE2_128), max,sve-max-vq=2 (SVE2, 256-bit: SVE_256), max (SVE2, 512-bit),
max,sve-default-vector-length=256 (SVE2, 2048-bit, the architecture's longest).
EOF
}

install=1
jobs=$(nproc)
cpus=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) install=0 ;;
    -j)
      [ $# -ge 2 ] || { echo "-j needs a number" >&2; exit 2; }
      jobs=$2
      shift
      ;;
    -j*) jobs=${1#-j} ;;
    --cpu)
      [ $# -ge 2 ] || { echo "--cpu needs a qemu CPU (qemu-aarch64 -cpu help)" >&2; exit 2; }
      cpus+=("$2")
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "-j needs a positive number, not '$jobs'" >&2; exit 2; }
if [ ${#cpus[@]} -eq 0 ]; then
  # One NEON-only core, then SVE at each vector length that selects a different Highway target
  # (128: SVE2_128, 256: SVE_256, 512: SVE2) or stresses lane-count assumptions (2048 bits,
  # 64 floats a vector), and SVE without SVE2 (A64FX).
  cpus=(cortex-a72 a64fx 'max,sve-max-vq=1' 'max,sve-max-vq=2' max
        'max,sve-default-vector-length=256')
fi

triplet=aarch64-linux-gnu
# The cross toolchain's C library: qemu -L takes the dynamic loader from it, LD_LIBRARY_PATH the
# libraries that must match the loader (see cmake/toolchains/aarch64-linux-gnu.cmake).
sysroot=/usr/$triplet
emulator_args=(-L "$sysroot" -E "LD_LIBRARY_PATH=$sysroot/lib")
build="build-aarch64"
# The kernel tests: the dense and training kernels, the scan kernels and the CMM engine's.
tests=(test_kernels test_scan test_cmm)

# --- Packages -----------------------------------------------------------------------------------
host_packages=("g++-$triplet" cmake ninja-build libcli11-dev nlohmann-json3-dev)
arm_packages=(libhwy-dev:arm64 libgtest-dev:arm64 libopenblas-dev:arm64 zlib1g-dev:arm64
              libutf8proc-dev:arm64)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${host_packages[@]}" "${arm_packages[@]}"; do installed "$p" || missing+=("$p"); done
qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
[ -n "$qemu" ] || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$install" -eq 0 ] || [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "  sudo dpkg --add-architecture arm64 && sudo apt-get update &&" \
      "sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  # The arm64 -dev packages are Debian multiarch packages: dpkg must accept the architecture.
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # No recommends: qemu-user would bring qemu-user-binfmt, which registers qemu system-wide for
  # Arm executables; this script calls qemu by name.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
fi

# --- Build --------------------------------------------------------------------------------------
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  # The tests need the CLI's target to exist (its path is compiled into them), not built; no
  # Python package, benchmarks or install rules.
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/$triplet.cmake \
    -DFFF_TESTS=ON -DFFF_PYTHON=OFF -DFFF_BENCH=OFF -DFFF_INSTALL=OFF >&2
fi
cmake --build "$build" -j "$jobs" --target "${tests[@]}" >&2

# --- Run ----------------------------------------------------------------------------------------
logs=$build/qemu
mkdir -p "$logs"
failed=0
total_tests=0
start_all=$(date +%s)
summary=()
for cpu in "${cpus[@]}"; do
  tag=${cpu//[^A-Za-z0-9_.=-]/_}
  targets=""
  for t in "${tests[@]}"; do
    log=$logs/$tag.$t.log
    start=$(date +%s.%N)
    rc=0
    GTEST_COLOR=no "$qemu" "${emulator_args[@]}" -cpu "$cpu" "$build/$t" >"$log" 2>&1 || rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    # gtest's summary: "[  PASSED  ] N tests." and, when some fail, "[  FAILED  ] N tests".
    passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?\..*/\1/p' "$log")
    nfailed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\?, listed below.*/\1/p' "$log")
    [ -n "$targets" ] || targets=$(sed -n 's/^Highway targets: *//p' "$log")
    total_tests=$((total_tests + ${passed:-0} + ${nfailed:-0}))
    if [ "$rc" -eq 0 ] && [ -n "$passed" ] && [ -z "$nfailed" ]; then
      line=$(printf '%-36s %-13s %4s passed  %7s s' "$cpu" "$t" "$passed" "$secs")
    else
      failed=1
      line=$(printf '%-36s %-13s FAILED (exit %s, %s passed, %s failed)  %7s s  log: %s' "$cpu" \
        "$t" "$rc" "${passed:-0}" "${nfailed:-?}" "$secs" "$log")
      grep -E '^\[  FAILED  \]|Failure$|^Google Test trace:|^.*: error:' "$log" | head -40 >&2 ||
        tail -20 "$log" >&2
    fi
    echo "$line"
    summary+=("$line")
  done
  summary+=("$(printf '%-36s Highway targets: %s' "$cpu" "${targets:-?}")")
  echo "${summary[-1]}"
done
elapsed=$(($(date +%s) - start_all))

echo
echo "aarch64 kernel tests under $("$qemu" --version | head -1)"
printf '%s\n' "${summary[@]}"
echo "$total_tests test runs on ${#cpus[@]} emulated CPUs in ${elapsed} s (emulated: times say nothing about speed)"
if [ "$failed" -ne 0 ]; then
  echo "FAILED: see the logs in $logs" >&2
  exit 1
fi
echo "all passed"
