#!/usr/bin/env bash
# Uses fff the two ways another CMake project can, and runs examples/consumer each time:
#   install       `cmake --install` the fff build into a prefix; checks the installed files, that
#                 each installed header compiles with nothing but the prefix's include folder,
#                 and the installed `fff --version` (when the build installs the CLI); builds
#                 examples/consumer with find_package(fff) and runs it on a random model and,
#                 when Fashion-MNIST and the CLI are installed, on a model trained by the
#                 installed `fff train`.
#   subdirectory  tests/cmake/subdirectory: add_subdirectory(fff) and the same consumer; only the
#                 library is built, and fff's flags stay on fff's targets.
# Run by ctest (see CMakeLists.txt), in a folder of its own under the build folder:
#   package_test.sh MODE SOURCE_DIR BUILD_DIR VERSION CMAKE GENERATOR MAKE_PROGRAM CONFIG CXX LAUNCHER
#                   WITH_CLI
# LAUNCHER (e.g. ccache) may be empty, or several words. WITH_CLI: ON when the build installs
# the fff tool (FFF_CLI).
set -euo pipefail
usage="MODE SOURCE_DIR BUILD_DIR VERSION CMAKE GENERATOR MAKE_PROGRAM CONFIG CXX LAUNCHER WITH_CLI"
[ $# -eq 11 ] || { echo "usage: $0 $usage" >&2; exit 2; }
mode=$1 src=$2 build=$3 version=$4 cmake=$5 generator=$6 make_program=$7 config=$8 cxx=$9
launcher=${10} with_cli=${11}

work=$build/package-tests/$mode
rm -rf "$work"
mkdir -p "$work"
cd "$work"

configure_args=(-G "$generator" -DCMAKE_MAKE_PROGRAM="$make_program" -DCMAKE_CXX_COMPILER="$cxx"
                -DCMAKE_BUILD_TYPE="$config")
if [ -n "$launcher" ]; then configure_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="${launcher// /;}"); fi

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Checks the consumer's output in file $1 for a model of $2 classes: the version, then 8 rows
# whose class is one of the largest of its $2 finite logits.
check_consumer_output() {
  local out=$1 classes=$2
  cat "$out"
  [ "$(sed -n 1p "$out")" = "fff $version" ] || fail "the consumer's first line is not 'fff $version'"
  grep -q "^model: .*, $classes classes\$" "$out" || fail "no 'model: ..., $classes classes' line"
  awk -v classes="$classes" '
    function bad(why) { print "FAIL: " why ": " $0 > "/dev/stderr"; failed = 1; exit 1 }
    /^row / {
      if ($2 != (rows + 0) ":") bad("rows out of order")
      rows++
      cls = $4; sub(/,$/, "", cls)
      if ($3 != "class" || cls !~ /^[0-9]+$/ || cls + 0 >= classes) bad("no class in [0, " classes ")")
      if ($5 != "logits" || NF - 5 != classes) bad("not " classes " logits")
      for (i = 6; i <= NF; i++) {
        if ($i !~ /^-?[0-9.]+(e[-+][0-9]+)?$/) bad("a logit is not a finite number")
        if ($i + 0 > $(6 + cls) + 0) bad("the class is not the largest logit")
      }
    }
    END { if (!failed && rows != 8) { print "FAIL: " rows + 0 " rows, not 8" > "/dev/stderr"; exit 1 } }
  ' "$out" || fail "the consumer's predictions"
}

case $mode in
  install)
    prefix=$work/prefix
    "$cmake" --install "$build" --prefix "$prefix" --config "$config" > install.log
    echo "installed files:"
    (cd "$prefix" && find . -type f | sort)
    cmakedir=$(dirname "$(find "$prefix" -name fffConfig.cmake)")
    for f in fffConfig.cmake fffConfigVersion.cmake fffTargets.cmake Findutf8proc.cmake; do
      [ -f "$cmakedir/$f" ] || fail "$f is not installed"
    done
    [ -f "$prefix/include/fff/version.h" ] || fail "fff/version.h is not installed"
    [ -n "$(find "$prefix" -name libfff.a)" ] || fail "libfff.a is not installed"

    # The public headers need only the standard library: each compiles on its own with the
    # prefix's include folder alone.
    n=0
    while IFS= read -r header; do
      echo "#include \"${header#"$prefix/include/"}\"" > one_header.cc
      "$cxx" -std=c++20 -fsyntax-only -I"$prefix/include" one_header.cc ||
        fail "${header#"$prefix/"} does not compile on its own"
      n=$((n + 1))
    done < <(find "$prefix/include/fff" -name '*.h' | sort)
    echo "$n installed headers compile on their own"

    if [ "$with_cli" = ON ]; then
      [ "$("$prefix/bin/fff" --version)" = "fff $version" ] || fail "fff --version is not 'fff $version'"
    else
      [ ! -e "$prefix/bin/fff" ] || fail "bin/fff is installed with FFF_CLI off"
    fi

    "$cmake" -S "$src/examples/consumer" -B consumer "${configure_args[@]}" \
      -DCMAKE_PREFIX_PATH="$prefix" > configure.log || { cat configure.log; fail "configure"; }
    # find_package found this prefix's package, not another fff installed on the machine.
    grep -qx "fff_DIR:PATH=$cmakedir" consumer/CMakeCache.txt || fail "fff_DIR is not $cmakedir"
    "$cmake" --build consumer --config "$config"

    consumer/fff_consumer > random.out
    check_consumer_output random.out 5

    data=/usr/share/datasets/fashion-mnist  # Debian's dataset-fashion-mnist
    if [ -d "$data" ] && [ "$with_cli" = ON ]; then
      "$prefix/bin/fff" train --data "$data" --limit 1000 --epochs 1 --width 16 --leaf-width 4 \
        --threads 1 --bench-repeats 1 --save trained.safetensors > train.log 2>&1 ||
        { cat train.log; fail "fff train"; }
      consumer/fff_consumer trained.safetensors > trained.out
      check_consumer_output trained.out 10
      grep -qx "model: leaf-fff, 784 inputs, 10 classes" trained.out || fail "not the trained model"
    else
      echo "$data or the fff tool is not installed: the consumer runs only on a random model"
    fi
    ;;

  subdirectory)
    # What this mode checks is how fff behaves as a subproject, not its speed: unoptimised and
    # without debug information (Debug with no flags), fff compiles in about half the time.
    "$cmake" -S "$src/tests/cmake/subdirectory" -B parent "${configure_args[@]}" \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG= \
      -DFFF_SOURCE_DIR="$src" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON > configure.log ||
      { cat configure.log; fail "configure"; }
    "$cmake" --build parent --config Debug

    built=$(find parent -type f -perm -u+x \( -name 'test_*' -o -name 'bench_*' -o -name fff \))
    [ -z "$built" ] || fail "fff's programs were built in a parent project: $built"

    # -Wall and -march=native (FFF_NATIVE is on by default) are fff's, not the parent's.
    commands=parent/compile_commands.json
    if [ -f "$commands" ]; then
      grep -q '"command": .*-Wall.*src/core/common\.cc"' "$commands" ||
        fail "fff's own sources are not compiled with -Wall"
      consumer_command=$(grep '"command": .*examples/consumer/main\.cc"' "$commands") ||
        fail "no compile command for the consumer"
      case $consumer_command in
        *-Wall* | *-march=native*) fail "fff's flags reached the parent's target: $consumer_command" ;;
      esac
    fi

    parent/fff_consumer > random.out
    check_consumer_output random.out 5
    ;;

  *) fail "unknown mode $mode" ;;
esac
echo "PASS: $mode"
