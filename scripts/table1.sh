#!/usr/bin/env bash
# Reproduces the FashionMNIST grid of Table 1 of "Fast Feedforward Networks" (FF and leaf FFF,
# w in {16,32,64,128}, leaf width in {1,2,4,8}, d = log2(w / leaf width); SGD lr 0.2, batch 256,
# h = 3, 9:1 split, best-validation model) and writes docs/results/fashion-mnist-table1.md.
# Usage: scripts/table1.sh [SEEDS...]       (default seeds: 0 1 2; each run uses one thread)
#        JOBS=2 scripts/table1.sh 0 1 2 3  (accuracy runs in parallel)
#        STAGES="timing report" scripts/table1.sh   (reuse the accuracy runs already recorded)
#        RECIPES=best STAGES=grid scripts/table1.sh (the grid with `fff train --recipe best` only)
#        FFF=/tmp/fff scripts/table1.sh             (another binary than build/fff)
#        LEAF_WIDTHS="2 1" RECIPES=best STAGES=grid scripts/table1.sh   (some rows: 0 is the FF;
#          the grid stage then writes only those runs: merge them into the file yourself)
# RECIPES (default "paper best"): the grid runs with the paper's recipe go to
# fashion-mnist-table1.jsonl, those with fff's best recipe (same data, split and protocol) to
# fashion-mnist-table1-best.jsonl; the report shows both.
# Stages: grid (the accuracy runs), timing (3 epochs of each config, one at a time, for the
# s/epoch column: run it on an otherwise idle machine), report (the Markdown table).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
jobs=${JOBS:-1}
out=docs/results
mkdir -p "$out"
runs="$out/fashion-mnist-table1.jsonl"
best_runs="$out/fashion-mnist-table1-best.jsonl"
recipes=${RECIPES:-paper best}
leaf_widths=${LEAF_WIDTHS:-0 8 4 2 1}  # 0: the dense FF; a subset reruns only those rows
export FFF=${FFF:-build/fff}  # the binary (a copy lets a long grid run while build/ is rebuilt)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

configs=()
for recipe in $recipes; do
  for seed in "${seeds[@]}"; do
    for w in 16 32 64 128; do
      [[ " $leaf_widths " == *" 0 "* ]] && configs+=("$recipe ff $w 0 $seed")
      for l in $leaf_widths; do [ "$l" = 0 ] || configs+=("$recipe leaf-fff $w $l $seed"); done
    done
  done
done

# One accuracy run, its JSON line on stdout. The paper's recipe is spelled out in full.
run_one() {
  read -r recipe model w l seed <<<"$1"
  local args=(--recipe "$recipe" --data fashion-mnist --model "$model" --width "$w" --seed "$seed"
              --threads 1 --json --bench-repeats 3)
  [ "$recipe" = paper ] && args+=(--optimizer sgd --lr 0.2 --batch 256 --hardening 3 --epochs 100
                                  --patience 10)
  [ "$model" = leaf-fff ] && args+=(--leaf-width "$l")
  "$FFF" train "${args[@]}" 2>/dev/null
}
export -f run_one

stages=${STAGES:-grid timing report}
timing="$out/fashion-mnist-table1-timing.jsonl"
elapsed_file="$out/.table1-elapsed"

if [[ $stages == *grid* ]]; then
  start=$(date +%s)
  printf '%s\n' "${configs[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@" >> '"$tmp"'/$(cut -d" " -f1 <<<"$1").jsonl' _ {}
  for recipe in $recipes; do
    if [ "$recipe" = paper ]; then
      echo $(( $(date +%s) - start )) > "$elapsed_file"
      cp "$tmp/paper.jsonl" "$runs"
    else
      cp "$tmp/best.jsonl" "$best_runs"
    fi
  done
fi
if [[ $stages == *timing* ]]; then
  : > "$tmp/timing.jsonl"
  for w in 16 32 64 128; do
    for l in 0 8 4 2 1; do
      if [ "$l" = 0 ]; then model=(--model ff); else model=(--model leaf-fff --leaf-width "$l"); fi
      "$FFF" train --recipe paper --data fashion-mnist "${model[@]}" --width "$w" --lr 0.2 --batch 256 \
        --epochs 3 --patience 3 --seed 0 --threads 1 --no-compare --json 2>/dev/null >> "$tmp/timing.jsonl"
    done
  done
  cp "$tmp/timing.jsonl" "$timing"
fi
if [[ $stages == *report* ]]; then
  /usr/bin/python3 scripts/table1_report.py "$runs" "$timing" "$(cat "$elapsed_file" 2>/dev/null || echo 0)" "$jobs" "$best_runs" \
    > "$out/fashion-mnist-table1.md"
  echo "wrote $out/fashion-mnist-table1.md" >&2
fi
