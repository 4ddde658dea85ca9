#!/usr/bin/env python3
"""Plots `fff bench bert --json` runs of a dense model and its conversion (docs/embeddings.md)
with gnuplot (Debian's gnuplot-nox): tokens per second of fff's dense and converted models,
ONNX Runtime and PyTorch (both on the dense model) for each shape (batch x tokens), one panel per
thread count.

Usage: scripts/embeddings_plot.py [--results docs/results/bench-bert-minilm-ort.jsonl]
                                  [--out docs/embeddings-speed.png] [--run N] [--title TEXT]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "docs", "results",
                                                      "bench-bert-minilm-ort.jsonl"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "embeddings-speed.png"))
    ap.add_argument("--run", type=int,
                    help="plot only the records whose \"run\" field is N (files holding several "
                         "runs of the same shapes)")
    ap.add_argument("--title", default="", help="added to the plot's title (e.g. the machine)")
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        sys.exit("error: gnuplot is not installed (apt-get install gnuplot-nox)")
    with open(a.results) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if a.run is not None:
        rows = [r for r in rows if r.get("run") == a.run]
    if not rows:
        sys.exit(f"error: {a.results}: no records" + (f" of run {a.run}" if a.run is not None else ""))
    dense = [r for r in rows if "leaf" not in r["describe"].lower()]
    converted = {(r["threads"], r["batch"], r["seq"]): r for r in rows
                 if "leaf" in r["describe"].lower()}
    threads = sorted({r["threads"] for r in rows})
    with tempfile.TemporaryDirectory() as tmp:
        plots = []
        for t in threads:
            path = os.path.join(tmp, f"t{t}.dat")
            with open(path, "w") as f:
                for r in sorted((r for r in dense if r["threads"] == t),
                                key=lambda r: (r["batch"], r["seq"])):
                    c = converted.get((t, r["batch"], r["seq"]))
                    f.write(f"\"{r['batch']}x{r['seq']}\" {r['fff_tokens_per_s']:.0f} "
                            f"{c['fff_tokens_per_s'] if c else 0:.0f} "
                            f"{r.get('ort_tokens_per_s') or 0:.0f} "
                            f"{r.get('pytorch_tokens_per_s') or 0:.0f}\n")
            plots.append((t, path))
        script = f"""
set terminal pngcairo size 1400,520 font ',11'
set output '{a.out}.tmp'
set multiplot layout 1,{len(plots)} title 'all-MiniLM-L6-v2: tokens per second (higher is better); converted = leaf FFF D = 3, distilled{(' ' + a.title) if a.title else ''}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
set key top left
set xlabel 'batch x tokens'
set ylabel 'tokens / s'
set yrange [0:*]
"""
        for t, path in plots:
            script += (f"set title '{t} thread{'s' if t > 1 else ''}'\n"
                       f"plot '{path}' using 3:xtic(1) title 'fff, converted (D = 3)', "
                       f"'' using 2 title 'fff, dense', '' using 4 title 'ONNX Runtime, dense', "
                       f"'' using 5 title 'PyTorch, dense'\n")
        script += "unset multiplot\n"
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
