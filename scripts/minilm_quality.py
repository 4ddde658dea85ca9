#!/usr/bin/env python3
"""Quality of dense -> leaf FFF conversion (`fff bert convert`, no training) of all-MiniLM-L6-v2 on
held-out real text (docs/minilm.md).

Debian's fortune files are split by name: the EVAL_FILES below give the evaluation sentences
(lines of 30+ characters, distinct, a seeded sample of --sentences), every other plain file gives
the conversion texts. For each depth the dense model is converted on the conversion texts, and
both models embed the evaluation sentences with `fff bert embed`. Reported per depth: the mean
and 5th percentile of the cosine between each sentence's FFF and dense embeddings, the Spearman
correlation between the two models' pairwise cosine-similarity matrices (upper triangles), the
conversion time and the per-layer figures `fff bert convert --json` prints.

With --models FILE ... it converts nothing and compares those fff-bert files (e.g. distilled by
scripts/distill_bert.py) with the dense model on the same evaluation sentences instead.

Usage: scripts/minilm_quality.py [--dense models/all-MiniLM-L6-v2.safetensors] [--fff build/fff]
       [--depths 2,3,4 | --models FILE ...] [--sentences 1000] [--samples 32768] [--threads 2]
       [--json OUT]
Needs only numpy (Spearman by numpy ranks)."""

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

FORTUNES = "/usr/share/games/fortunes"
EVAL_FILES = ("literature", "people", "politics", "science", "wisdom")


def fortune_files():
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path):
            continue
        out.append(name)
    return out


def lines_of(name):
    with open(os.path.join(FORTUNES, name), "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    return [r.strip() for r in text.split("\n") if r.strip() and r.strip() != "%" and "\r" not in r]


def split_texts(n_eval, seed):
    """(conversion lines, evaluation sentences): disjoint files, so disjoint texts."""
    files = fortune_files()
    missing = [f for f in EVAL_FILES if f not in files]
    if missing:
        sys.exit(f"error: fortune files {missing} are missing from {FORTUNES}")
    conv = [l for f in files if f not in EVAL_FILES for l in lines_of(f)]
    pool = sorted({l for f in EVAL_FILES for l in lines_of(f) if len(l) >= 30})
    held = set(conv)
    pool = [l for l in pool if l not in held]  # a line also in a conversion file is not held out
    random.Random(seed).shuffle(pool)
    if len(pool) < n_eval:
        sys.exit(f"error: only {len(pool)} evaluation sentences, {n_eval} asked")
    return conv, pool[:n_eval]


def embed(cli, model, texts_file, out, threads):
    subprocess.run([cli, "bert", "embed", model, "--file", texts_file, "--format", "binary",
                    "--output", out, "--batch", "32", "--threads", str(threads)],
                   check=True, capture_output=True, text=True)
    e = np.fromfile(out, dtype=np.float32)
    return e.reshape(-1, 384)


def ranks(x):
    """Ranks 0..n-1 (ties, which float similarities practically never have, broken by order)."""
    r = np.empty(len(x), dtype=np.float64)
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)))


def unit(e):
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def compare(dense, fff):
    d, f = unit(dense.astype(np.float64)), unit(fff.astype(np.float64))
    cos = np.sum(d * f, axis=1)
    iu = np.triu_indices(len(d), k=1)
    sim_d, sim_f = (d @ d.T)[iu], (f @ f.T)[iu]
    return {"mean_cosine": float(cos.mean()), "p5_cosine": float(np.percentile(cos, 5)),
            "min_cosine": float(cos.min()), "spearman_similarities": spearman(sim_d, sim_f)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    ap.add_argument("--dense", default=os.path.join(root, "models", "all-MiniLM-L6-v2.safetensors"))
    ap.add_argument("--fff", default=os.environ.get("FFF_CLI", os.path.join(root, "build", "fff")))
    ap.add_argument("--depths", default="2,3,4")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=32768, help="token rows per layer for conversion")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--models", nargs="+", metavar="FILE",
                    help="compare these model files with the dense one instead of converting")
    ap.add_argument("--write-conversion-texts", metavar="FILE",
                    help="only write the conversion texts (the fortune files that are not "
                         "evaluation files), one per line, to FILE and exit: the --texts of "
                         "`fff bert convert` for a model evaluated here")
    ap.add_argument("--convert-args", default="",
                    help="more `fff bert convert` options, e.g. '--distill-steps 300'")
    a = ap.parse_args()
    if not os.path.exists(a.dense):
        sys.exit(f"error: {a.dense} is missing (scripts/get_minilm.sh makes it)")
    conv, sentences = split_texts(a.sentences, a.seed)
    if a.write_conversion_texts:
        tmp = a.write_conversion_texts + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(conv) + "\n")
        os.replace(tmp, a.write_conversion_texts)  # atomic: no half-written texts file
        print(f"wrote {len(conv)} conversion texts to {a.write_conversion_texts}")
        return 0
    results = {"dense": a.dense, "convert_args": a.convert_args, "eval_files": list(EVAL_FILES), "sentences": len(sentences),
               "conversion_lines": len(conv), "samples": a.samples, "threads": a.threads,
               "depths": []}
    with tempfile.TemporaryDirectory() as tmp:
        conv_file, eval_file = os.path.join(tmp, "conv.txt"), os.path.join(tmp, "eval.txt")
        with open(conv_file, "w") as f:
            f.write("\n".join(conv) + "\n")
        with open(eval_file, "w") as f:
            f.write("\n".join(sentences) + "\n")
        dense = embed(a.fff, a.dense, eval_file, os.path.join(tmp, "dense.bin"), a.threads)
        d = unit(dense.astype(np.float64))
        iu = np.triu_indices(len(d), k=1)
        results["dense_mean_pair_cosine"] = float((d @ d.T)[iu].mean())
        for i, model in enumerate(a.models or []):
            fff = embed(a.fff, model, eval_file, os.path.join(tmp, f"model{i}.bin"), a.threads)
            row = {"model": model, **compare(dense, fff)}
            results.setdefault("models", []).append(row)
            print(f"{model}: mean cosine {row['mean_cosine']:.4f}, 5th pct {row['p5_cosine']:.4f}, "
                  f"Spearman {row['spearman_similarities']:.4f}", flush=True)
        for depth in [] if a.models else [int(x) for x in a.depths.split(",")]:
            out = os.path.join(tmp, f"leaf{depth}.safetensors")
            t0 = time.monotonic()
            r = subprocess.run([a.fff, "bert", "convert", a.dense, out, "--depth", str(depth),
                                "--texts", conv_file, "--samples", str(a.samples),
                                "--seed", str(a.seed), "--threads", str(a.threads), "--json"]
                               + shlex.split(a.convert_args),
                               check=True, capture_output=True, text=True)
            seconds = time.monotonic() - t0
            summary = json.loads(r.stdout)
            fff = embed(a.fff, out, eval_file, os.path.join(tmp, f"leaf{depth}.bin"), a.threads)
            row = {"depth": depth, "method": summary["method"], "leaf_width": summary["leaf_width"],
                   "convert_seconds": seconds, **compare(dense, fff), "layers": summary["layers"]}
            results["depths"].append(row)
            print(f"D={depth} (leaf width {row['leaf_width']}): mean cosine {row['mean_cosine']:.4f}, "
                  f"5th pct {row['p5_cosine']:.4f}, Spearman {row['spearman_similarities']:.4f}, "
                  f"conversion {seconds:.1f} s{' (' + a.convert_args + ')' if a.convert_args else ''}; "
                  f"per layer routed-to-best / rel. error: "
                  + ", ".join(f"{l['best_leaf_fraction']:.2f}/{l['relative_error']:.3f}"
                              for l in summary["layers"]), flush=True)
    print(f"(dense: mean cosine between different sentences {results['dense_mean_pair_cosine']:.4f})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
