#!/usr/bin/env bash
# Compares the default (portable) build against -DFFF_NATIVE=ON on the workloads whose speed the
# portable default must keep: leaf FFF training, `fff bench` 1x11 at batch 1 and 16384, and the
# QRNN scans forward and backward. Builds build/ (default options) and build-native/
# (-DFFF_NATIVE=ON), both Release with ccache, where missing; then runs the two binaries in
# alternation (portable, native, native, portable, ...) so that drifting load hits both alike,
# and prints the median of each side and their ratio (first / second time; above 1: the first is slower).
# Usage: scripts/native_vs_portable.sh            (REPEATS=5 by default; an idle machine is best)
#        REPEATS=9 EPOCHS=3 scripts/native_vs_portable.sh
#        RAW=runs.tsv scripts/native_vs_portable.sh   (also keep every single measurement)
#        A=old/build B=build scripts/native_vs_portable.sh   (any two built trees, e.g. an older
#                                                       commit's against this one; nothing is built)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${REPEATS:-5}
epochs=${EPOCHS:-3}
raw=${RAW:-}

build_tree() {  # dir, extra cmake options...
  local dir=$1
  shift
  if [[ ! -f $dir/build.ninja ]]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
      "$@" > /dev/null
  fi
  cmake --build "$dir" --target fff_cli bench_scan > /dev/null
}
simd() { "$1/fff" bench --depth 1 --batch 1 --min-seconds 0.01 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["simd"])'; }
if [[ -n ${A:-} || -n ${B:-} ]]; then
  side_a=${A:?set both A and B}
  side_b=${B:?set both A and B}
  name_a=$side_a
  name_b=$side_b
else
  side_a=build
  side_b=build-native
  name_a=portable
  name_b=native
  build_tree build
  build_tree build-native -DFFF_NATIVE=ON
  for dir in build build-native; do
    native=$(grep -E '^FFF_NATIVE:BOOL=' "$dir/CMakeCache.txt" | cut -d= -f2)
    want=$([[ $dir == build ]] && echo OFF || echo ON)
    if [[ $native != "$want" ]]; then
      echo "native_vs_portable: $dir has FFF_NATIVE=$native, expected $want (reconfigure it)" >&2
      exit 1
    fi
  done
fi
for dir in "$side_a" "$side_b"; do echo "$dir: kernels dispatch to $(simd "$dir")"; done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Each workload prints one number (seconds or microseconds: lower is better).
w_train() {  # its progress lines are kept out of the table, and shown if it fails
  # --model fff: the old spelling of leaf-fff, which older binaries need too.
  "$1/fff" train --data fashion-mnist --model fff --width 128 --leaf-width 8 --threads 1 \
    --epochs "$epochs" --json 2> "$tmp/train.log" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds_per_epoch"])' ||
    { cat "$tmp/train.log" >&2; return 1; }
}
w_bench1() {
  "$1/fff" bench --depth 11 --batch 1 --threads 1 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["fff_us_per_token"])'
}
w_bench16k() {
  "$1/fff" bench --depth 11 --batch 16384 --threads 1 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["fff_us_per_token"])'
}
scan_seconds() {  # build dir, algo, extra flags...
  local dir=$1 algo=$2
  shift 2
  "$dir/bench_scan" --features 256 --min-log 16 --max-log 16 --threads 1 --repeats 3 \
    --algos "$algo" --json "$@" | python3 -c '
import json, sys
print(sum(json.loads(l)["seconds"] for l in sys.stdin if l.strip()))'
}
w_scan_seq() { scan_seconds "$1" sequential,chunked; }
w_scan_seq_bwd() { scan_seconds "$1" sequential,chunked --backward; }
w_scan_blelloch() { scan_seconds "$1" blelloch,hillis-steele --min-log 12 --max-log 12; }

workloads=(train bench1 bench16k scan_seq scan_seq_bwd scan_blelloch)
declare -A label=(
  [train]="train fashion-mnist leaf FFF 128/8, s/epoch"
  [bench1]="fff bench 1x11 batch 1, us/token"
  [bench16k]="fff bench 1x11 batch 16384, us/token"
  [scan_seq]="scan T=2^16 C=256 seq+chunked fwd, s"
  [scan_seq_bwd]="scan T=2^16 C=256 seq+chunked bwd, s"
  [scan_blelloch]="scan T=2^12 C=256 blelloch+H-S fwd, s"
)
for w in "${workloads[@]}"; do
  for ((i = 1; i <= repeats; ++i)); do
    # A B, B A, A B, ...: which of a pair runs first matters on a busy machine (seen for the
    # short scans), so each side goes first in half of the rounds.
    order="$side_a $side_b"
    ((i % 2 == 0)) && order="$side_b $side_a"
    for side in $order; do
      v=$("w_$w" "$side")
      echo "$v" >> "$tmp/$w.${side//\//_}"
      [[ -n $raw ]] && printf '%s\t%s\t%d\t%s\n' "$w" "$side" "$i" "$v" >> "$raw"
    done
  done
done

median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
printf '%-42s %12s %12s %9s\n' "workload ($repeats runs each, medians)" "$name_a" "$name_b" ratio
for w in "${workloads[@]}"; do
  p=$(median "$tmp/$w.${side_a//\//_}")
  n=$(median "$tmp/$w.${side_b//\//_}")
  printf '%-42s %12.4g %12.4g %9.3f\n' "${label[$w]}" "$p" "$n" "$(awk -v p="$p" -v n="$n" 'BEGIN {print p / n}')"
done
