"""all-MiniLM-L6-v2 converted to leaf FFF blocks (`fff bert convert`, depth 2, no training), end to
end through scripts/minilm_quality.py on few samples: conversion on some fortune files, embeddings
of 200 held-out sentences from the others. Floors are the values measured on 2026-12-07 with the
token-split method (mean cosine 0.783, Spearman 0.731 with these settings; the coactivation method
gave 0.757 and 0.717) less a margin; for scale, two different sentences' dense embeddings have a
mean cosine of about 0.10."""

import json
import os
import subprocess
import sys

import pytest

MEAN_COSINE_FLOOR = 0.75
SPEARMAN_FLOOR = 0.70


@pytest.fixture(scope="module")
def dense_model(minilm_fff_file):
    return minilm_fff_file


def test_depth_2_conversion_keeps_embeddings_close(dense_model, fff_cli, fortunes, tmp_path):
    cli = fff_cli
    source = os.environ.get("FFF_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    out = tmp_path / "quality.json"
    r = subprocess.run([sys.executable, os.path.join(source, "scripts", "minilm_quality.py"),
                        "--dense", dense_model, "--fff", cli, "--depths", "2", "--sentences", "200",
                        "--samples", "2000", "--threads", "2", "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    q = json.loads(out.read_text())
    row = q["depths"][0]
    print(r.stdout)
    assert row["depth"] == 2 and row["leaf_width"] == 384 and row["method"] == "token-split"
    assert len(row["layers"]) == 6
    assert row["mean_cosine"] > MEAN_COSINE_FLOOR, row
    assert row["spearman_similarities"] > SPEARMAN_FLOOR, row
    # The converted model is far closer to dense than unrelated sentences are to each other.
    assert row["p5_cosine"] > q["dense_mean_pair_cosine"] + 0.3, (row, q["dense_mean_pair_cosine"])
