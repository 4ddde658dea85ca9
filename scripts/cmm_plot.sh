#!/usr/bin/env bash
# Runs `fff bench` over the UltraFastBERT shapes (d = 768, batch 1, 128, 16384, one thread) and
# plots FFF's speedup over dense FF-3072 against tree depth, one line per batch size.
# Writes docs/results/cmm-bench.jsonl and docs/results/cmm-speedup.png (needs gnuplot:
# apt-get install gnuplot-nox).
# Usage: scripts/cmm_plot.sh            (about a minute; run it on an otherwise idle machine)
#        STAGES=plot scripts/cmm_plot.sh   (re-plot the recorded runs)
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/results
runs="$out/cmm-bench.jsonl"
mkdir -p "$out"
if [[ " ${STAGES:-bench plot} " == *" bench "* ]]; then
  bash scripts/setup.sh
  build/fff bench --threads 1 --json > "$runs.tmp"
  mv "$runs.tmp" "$runs"
fi
command -v gnuplot > /dev/null || { echo "cmm_plot: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One table per batch size: depth, speedup, shape label.
python3 - "$runs" "$tmp" <<'PY'
import json, sys
runs, tmp = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(runs) if line.strip()]
for batch in sorted({r["batch"] for r in rows}):
    with open(f"{tmp}/batch{batch}.dat", "w") as f:
        for r in sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["depth"]):
            f.write(f'{r["depth"]} {r["speedup"]:.3f} {r["trees"]}x{r["depth"]}\n')
PY
simd=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["simd"])' "$runs")
gnuplot <<GP
set terminal pngcairo size 900,560 font ",11"
set output "$out/cmm-speedup.png"
set title "Neuron FFF (CMM engine) vs dense FF-3072, d = 768, 1 thread ($simd)" noenhanced
set xlabel "tree depth D (shape K x D, K 2^{D+1} = 4096 neurons)"
set ylabel "speedup per token (dense time / FFF time)"
set logscale y
set grid ytics mytics xtics
set key top left
set xrange [3.5:11.5]
plot for [b in "1 128 16384"] "$tmp/batch".b.".dat" using 1:2 with linespoints lw 2 pt 7 title "batch ".b, \
     "$tmp/batch16384.dat" using 1:2:3 with labels offset 0,-1 notitle
GP
echo "wrote $runs and $out/cmm-speedup.png"
