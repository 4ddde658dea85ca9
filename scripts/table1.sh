#!/usr/bin/env bash
# Reproduces the FashionMNIST grid of Table 1 of "Fast Feedforward Networks" (FF and leaf FFF,
# w in {16,32,64,128}, leaf width in {1,2,4,8}, d = log2(w / leaf width); SGD lr 0.2, batch 256,
# h = 3, 9:1 split, best-validation model) and writes docs/results/fashion-mnist-table1.md.
# Usage: scripts/table1.sh [SEEDS...]       (default seeds: 0 1 2; each run uses one thread)
#        JOBS=2 scripts/table1.sh 0 1 2 3  (runs in parallel; timings then share the cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
jobs=${JOBS:-1}
out=docs/results
mkdir -p "$out"
runs="$out/fashion-mnist-table1.jsonl"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

configs=()
for seed in "${seeds[@]}"; do
  for w in 16 32 64 128; do
    configs+=("ff $w 0 $seed")
    for l in 8 4 2 1; do configs+=("fff $w $l $seed"); done
  done
done

run_one() {
  read -r model w l seed <<<"$1"
  local args=(--data fashion-mnist --model "$model" --width "$w" --optimizer sgd --lr 0.2
              --batch 256 --hardening 3 --epochs 100 --patience 10 --seed "$seed" --threads 1
              --json --bench-repeats 3)
  [ "$model" = fff ] && args+=(--leaf-width "$l")
  build/fff train "${args[@]}" 2>/dev/null
}
export -f run_one

start=$(date +%s)
printf '%s\n' "${configs[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@" >> '"$tmp"'/runs.jsonl' _ {}
elapsed=$(( $(date +%s) - start ))
cp "$tmp/runs.jsonl" "$runs"
/usr/bin/python3 scripts/table1_report.py "$runs" "$elapsed" "$jobs" > "$out/fashion-mnist-table1.md"
echo "wrote $out/fashion-mnist-table1.md and $runs (${elapsed}s)" >&2
