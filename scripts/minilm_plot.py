#!/usr/bin/env python3
"""Plots the dense -> leaf FFF conversion results of docs/minilm.md with gnuplot (Debian's
gnuplot-nox): left, the held-out cosine to the dense embeddings during distillation
(scripts/distill_bert.py), from the converted model and from a random start; right, the quality
on the 1,000 evaluation sentences (scripts/minilm_quality.py) against the feedforward neurons a
token uses (1536 / 2^D), converted only, distilled, and from a random start.

Usage: scripts/minilm_plot.py [--results docs/results/minilm-distill.json] [--out docs/minilm-distill.png]

The results file: {"runs": [{"depth", "init" ("converted" | "random"), "heldout": [{"step",
"cosine"}, ...], "quality": {"mean_cosine", "spearman_similarities", ...}}, ...],
"converted_only": [{"depth", "mean_cosine", "spearman_similarities"}, ...]}. A run may also
carry "series" (its name in the quality plot, instead of one named by its init), "label" (its
curve's title) and "curve": false (left out of the curves).
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
                                                      "minilm-distill.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "minilm-distill.png"))
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        sys.exit("error: gnuplot is not installed (apt-get install gnuplot-nox)")
    with open(a.results) as f:
        r = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        curves = []
        for i, run in enumerate(r["runs"]):
            if not run.get("curve", True):
                continue
            path = os.path.join(tmp, f"curve{i}.dat")
            with open(path, "w") as f:
                f.writelines(f"{h['step']} {h['cosine']}\n" for h in run["heldout"])
            start = "from conversion" if run["init"] == "converted" else "from a random start"
            title = run.get("label") or f"D = {run['depth']}, {start}"
            curves.append(f"'{path}' using 1:2 with linespoints title '{title}'")
        series = {"converted, no training": sorted(
            (c["depth"], c["mean_cosine"], c["spearman_similarities"])
            for c in r["converted_only"])}
        default_names = {"converted": "converted + distilled",
                         "random": "random start, same training"}
        for run in r["runs"]:
            if "quality" in run:
                name = run.get("series") or default_names[run["init"]]
                series.setdefault(name, []).append(
                    (run["depth"], run["quality"]["mean_cosine"],
                     run["quality"]["spearman_similarities"]))
        series = {name: sorted(rows) for name, rows in series.items()}
        points = []
        for i, (name, rows) in enumerate(series.items()):
            if not rows:
                continue
            path = os.path.join(tmp, f"quality{i}.dat")
            with open(path, "w") as f:
                f.writelines(f"{1536 >> d} {cos} {rho}\n" for d, cos, rho in rows)
            points.append(f"'{path}' using 1:2 with linespoints title '{name}: mean cosine'")
            points.append(f"'{path}' using 1:3 with linespoints dashtype 2 title "
                          f"'{name}: Spearman'")
        script = f"""
set terminal pngcairo size 1400,560 font ',11'
set output '{a.out}.tmp'
set multiplot layout 1,2 title 'all-MiniLM-L6-v2 with leaf FFF blocks: embeddings against the dense model (held-out text)'
set grid
set key bottom right
set xlabel 'distillation step (32 sentences each)'
set ylabel 'held-out mean cosine to the dense embeddings'
plot {', '.join(curves)}
set xlabel 'feedforward neurons per token (1536 / 2^D; dense: 1536)'
set ylabel 'quality on 1,000 evaluation sentences'
set logscale x 2
set xtics (96, 192, 384)
set yrange [0.4:1]
set key bottom right font ',9'
plot {', '.join(points)}
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
