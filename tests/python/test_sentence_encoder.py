"""fff.SentenceEncoder on a small random model (bert_files.py) against `fff bert embed` on the
same sentences: shapes, the single-string form, normalisation, batch sizes, threads and errors."""

import json
import os
import subprocess
import threading

import numpy as np
import pytest

import fff
from bert_files import random_sentence, write_random_bert

CLI = os.environ.get("FFF_CLI", "build/fff")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_random_bert(tmp_path_factory.mktemp("enc") / "tiny-bert.safetensors", seed=3)


def cli_embed(model, texts, tmp_path, *args):
    path = tmp_path / "texts.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    out = subprocess.run([CLI, "bert", "embed", model, "--file", str(path), *args],
                         capture_output=True, text=True, check=True).stdout
    return np.array([json.loads(line) for line in out.splitlines()], dtype=np.float32)


def test_encode_equals_fff_bert_embed(model, tmp_path):
    rng = np.random.default_rng(1)
    texts = [random_sentence(rng) for _ in range(20)] + ["", "Paris, FRANCE!"]
    enc = fff.SentenceEncoder(model, threads=2)
    assert enc.get_sentence_embedding_dimension() == 32 and enc.max_seq_length == 12
    got = enc.encode(texts, batch_size=8)
    assert got.shape == (22, 32) and got.dtype == np.float32
    # The same batches (8 texts) on the same C++ path: the same floats, bit for bit.
    want = cli_embed(model, texts, tmp_path, "--batch", "8")
    assert np.array_equal(got, want)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # Other batch sizes pad differently: only the encoder's rounding may change.
    assert np.abs(enc.encode(texts, batch_size=1) - want).max() <= 1e-6
    assert np.abs(enc.encode(texts) - want).max() <= 1e-6
    # A single string gives one vector, as sentence-transformers does.
    one = enc.encode(texts[3], batch_size=8)
    assert one.shape == (32,)
    assert np.abs(one - want[3]).max() <= 1e-6
    assert enc.encode([]).shape == (0, 32)
    assert enc.encode(t for t in texts[:2]).shape == (2, 32)  # any iterable of str


def test_the_models_normalize_wins_as_in_sentence_transformers(model, tmp_path):
    enc = fff.SentenceEncoder(model, threads=1)
    texts = ["the cat sat", "a red house"]
    # The file says sentence.normalize = 1 (a Normalize module): rows are unit length either way.
    plain = enc.encode(texts, normalize_embeddings=False)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1, atol=1e-5)
    raw = cli_embed(model, texts, tmp_path, "--normalize", "no")
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    assert np.abs(plain - raw / np.linalg.norm(raw, axis=1, keepdims=True)).max() <= 1e-6


def test_threads_give_the_same_vectors_and_calls_may_overlap(model):
    rng = np.random.default_rng(2)
    texts = [random_sentence(rng) for _ in range(40)]
    one = fff.SentenceEncoder(model, threads=1)
    two = fff.SentenceEncoder(model, threads=2)
    assert one.threads == 1 and two.threads == 2
    want = one.encode(texts, batch_size=16)
    assert np.array_equal(two.encode(texts, batch_size=16), want)
    results = [None] * 4

    def run(k):
        results[k] = two.encode(texts, batch_size=16)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, want) for r in results)


def test_errors(model, tmp_path):
    with pytest.raises(fff.Error, match="missing.safetensors"):
        fff.SentenceEncoder(tmp_path / "missing.safetensors")
    enc = fff.SentenceEncoder(model, threads=1)
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        enc.encode(["ok", 3])
    with pytest.raises(fff.Error, match="batch_size"):
        enc.encode(["ok"], batch_size=0)
    with pytest.raises(fff.Error, match="threads"):
        fff.SentenceEncoder(model, threads=-1)
    assert "tiny-bert.safetensors" in repr(enc)
