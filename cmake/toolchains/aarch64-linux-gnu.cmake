# Cross-compiles fff for 64-bit Arm Linux with Debian's cross toolchain (g++-aarch64-linux-gnu) and
# its multiarch arm64 packages (libhwy-dev:arm64 and so on, in /usr/lib/aarch64-linux-gnu), and runs
# what it builds (gtest_discover_tests, ctest) under qemu-user. scripts/cross_aarch64.sh installs
# all of it and uses this file:
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(FFF_CROSS_TRIPLET aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${FFF_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${FFF_CROSS_TRIPLET}-g++)
# Debian multiarch: the arm64 libraries and their CMake packages are in
# /usr/lib/aarch64-linux-gnu, beside the build machine's own in /usr/lib/x86_64-linux-gnu, under
# the same root; the cross C library is in /usr/aarch64-linux-gnu. Naming the architecture makes
# find_library, find_path and find_package look in the arm64 folders (lib/aarch64-linux-gnu,
# include/aarch64-linux-gnu) and never in the x86 ones.
set(CMAKE_LIBRARY_ARCHITECTURE ${FFF_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH /usr/${FFF_CROSS_TRIPLET} /)
# Programs (cmake, python, the emulator) are the build machine's; libraries, headers and packages
# only the target's (the root paths above).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config (cpp-httplib for fff serve) must read the arm64 .pc files, not the build machine's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${FFF_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)

# Test programs run under user-mode emulation. -L makes qemu take the dynamic loader from the cross
# toolchain's C library (/usr/aarch64-linux-gnu/lib, which the programs were linked against), and
# LD_LIBRARY_PATH makes that loader take libc, libstdc++ and libgomp from there too: the other arm64
# libraries (libhwy, OpenBLAS, ...) come from /usr/lib/aarch64-linux-gnu, and without it so would
# libc (Debian's libc6:arm64, which they depend on), a different build from the cross loader's;
# that mix hangs in the first pthread_create. The emulated CPU is qemu's default ("max": NEON,
# SVE and SVE2) unless QEMU_CPU says otherwise (e.g. QEMU_CPU=cortex-a72 ctest ...), which qemu
# reads from the environment.
find_program(FFF_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${FFF_QEMU_AARCH64} -L /usr/${FFF_CROSS_TRIPLET} -E
                                  LD_LIBRARY_PATH=/usr/${FFF_CROSS_TRIPLET}/lib)
