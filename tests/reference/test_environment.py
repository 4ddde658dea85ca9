"""The reference environment is what the other checks here rely on."""

import json
import os

import pytest


def test_reference_packages_and_model_files(minilm_dir):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    assert transformers.__version__ == "4.38.2"
    assert tokenizers.__version__.startswith("0.15")
    with open(os.path.join(minilm_dir, "config.json")) as f:
        config = json.load(f)
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == \
        (6, 384, 1536)
    for name in ("vocab.txt", "tokenizer.json", os.path.join("1_Pooling", "config.json")):
        assert os.path.exists(os.path.join(minilm_dir, name)), name
