"""fff.bert: encoder files as PyTorch modules. A random post-norm BERT (scripts/bert_reference.py,
converted by scripts/convert_bert.py) and its leaf FFF conversion (`fff bert convert`) give, in
eval(), the sentence embeddings `fff bert embed` gives; train() with hardened decisions computes
the same function and its gradients reach the leaves; save writes files the CLI reads; bad
files and NaN weights give clear errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fff  # noqa: E402
import fff.bert  # noqa: E402
import fff.torch as ft  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_numpy_api import CLI  # noqa: E402

SOURCE = os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPTS = os.path.join(SOURCE, "scripts")
sys.path.insert(0, SCRIPTS)
from bert_reference import WORDS  # noqa: E402  (the random model's vocabulary)

TEXTS = ["the capital of france is paris .", "water flows", "a small river in italy !",
         "many people live there , and it was fast", "rome", "the network tree leaf node ? ?"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    ckpt, dense, leaf = d / "ckpt", d / "dense.safetensors", d / "leaf.safetensors"
    subprocess.run(["/usr/bin/python3", os.path.join(SCRIPTS, "bert_reference.py"), "--out",
                    str(ckpt), "--arch", "bert", "--hidden", "32", "--heads", "2", "--layers",
                    "2", "--width", "64", "--seed", "5"], check=True, capture_output=True)
    subprocess.run(["/usr/bin/python3", os.path.join(SCRIPTS, "convert_bert.py"), str(ckpt),
                    str(dense)], check=True, capture_output=True)
    rng = np.random.default_rng(0)
    texts = d / "texts.txt"
    texts.write_text("\n".join(" ".join(rng.choice(WORDS[:40], size=rng.integers(3, 12)))
                               for _ in range(300)) + "\n")
    subprocess.run([CLI, "bert", "convert", str(dense), str(leaf), "--to", "leaf-fff", "--depth",
                    "2", "--texts", str(texts), "--samples", "1500", "--threads", "1"],
                   check=True, capture_output=True)
    return dense, leaf


def cli_embed(path, texts, out):
    args = [CLI, "bert", "embed", str(path), "--format", "binary", "--output", str(out)]
    for t in texts:
        args += ["--text", t]
    subprocess.run(args, check=True, capture_output=True)
    return np.fromfile(out, dtype=np.float32).reshape(len(texts), -1)


def ids_of(path, texts):
    import json
    args = [CLI, "bert", "tokenize", str(path)]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    seqs = [json.loads(line) for line in out.splitlines()]
    S = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), S, dtype=torch.long)
    mask = torch.zeros(len(seqs), S, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    return ids, mask


@pytest.mark.parametrize("which", ["dense", "leaf"])
def test_eval_embeddings_match_the_cli(models, which, tmp_path):
    path = models[0] if which == "dense" else models[1]
    model = fff.bert.load(path, threads=1).eval()
    assert isinstance(model.ff_blocks()[0], ft.DenseFF if which == "dense" else ft.LeafFFF)
    ids, mask = ids_of(path, TEXTS)  # different lengths: padding in the batch
    with torch.no_grad():
        emb = model.embed(ids, mask).numpy()
    want = cli_embed(path, TEXTS, tmp_path / "e.bin")
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(emb, want, atol=2e-6, rtol=0)
    # Each text alone (no padding) gives its row of the padded batch.
    with torch.no_grad():
        for i in (0, 4):
            n = int(mask[i].sum())
            alone = model.embed(ids[i:i + 1, :n]).numpy()[0]
            np.testing.assert_allclose(alone, emb[i], atol=2e-6, rtol=0)


def test_hardened_training_is_the_inference_function_and_reaches_the_leaves(models):
    model = fff.bert.load(models[1], threads=1)
    ids, mask = ids_of(models[1], TEXTS)
    model.eval()
    with torch.no_grad():
        want = model(ids, mask)
    model.train()
    for block in model.ff_blocks():
        block.train_hardened = True
    got, states, entropy = model(ids, mask, output_hidden_states=True, return_entropy=True)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=2e-6, rtol=0)
    assert len(states) == 2 and torch.equal(states[-1], got)
    assert 0 < float(entropy) <= np.log(2)
    loss = model(ids, mask)[real].pow(3).sum()
    model.zero_grad()
    loss.backward()
    for block in model.ff_blocks():
        assert float(block.w1.grad.abs().sum()) > 0 and float(block.w2.grad.abs().sum()) > 0
        assert float(block.nodes_w.grad.abs().sum()) == 0  # hard decisions: no node gradient
    assert float(model.layers[0].attn.qkv.grad.abs().sum()) > 0


def test_save_round_trip_and_errors(models, tmp_path):
    model = fff.bert.load(models[1], threads=1)
    with torch.no_grad():
        model.ff_blocks()[1].w2.mul_(0.5)
    out = tmp_path / "saved.safetensors"
    fff.bert.save(model, out, {"note": "test"})
    back = fff.bert.load(out)
    assert back.metadata["note"] == "test"
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    ids, mask = ids_of(out, TEXTS)
    model.eval()
    with torch.no_grad():
        emb = model.embed(ids, mask).numpy()
    np.testing.assert_allclose(cli_embed(out, TEXTS, tmp_path / "e.bin"), emb, atol=2e-6, rtol=0)
    # The dense block's products are (in, out) in DenseFF, (out, in) in the file: saved back.
    dense = fff.bert.load(models[0])
    fff.bert.save(dense, tmp_path / "dense.safetensors")
    meta0, tensors0 = fff._fff._read_bert(str(models[0]))
    meta1, tensors1 = fff._fff._read_bert(str(tmp_path / "dense.safetensors"))
    assert meta0 == meta1 and sorted(tensors0) == sorted(tensors1)
    for name, t in tensors0.items():
        assert np.array_equal(t, tensors1[name]), name

    with torch.no_grad():
        model.layers[0].attn.out[0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    with pytest.raises(fff.Error, match="layers.0.attn.out.*NaN"):
        fff.bert.save(model, bad)
    assert not bad.exists() and not list(tmp_path.glob(".nan*"))
    with pytest.raises(TypeError, match="fff.bert.save"):
        fff.bert.save(torch.nn.Linear(2, 2), bad)
    with pytest.raises(fff.Error, match="missing.safetensors"):
        fff.bert.load(tmp_path / "missing.safetensors")


def test_crammed_files_are_refused_clearly(tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "ufb.safetensors"
    subprocess.run(["/usr/bin/python3", os.path.join(SCRIPTS, "bert_reference.py"), "--out",
                    str(ckpt), "--hidden", "32", "--heads", "2", "--layers", "1", "--seed", "1"],
                   check=True, capture_output=True)
    subprocess.run(["/usr/bin/python3", os.path.join(SCRIPTS, "convert_bert.py"), str(ckpt),
                    str(out)], check=True, capture_output=True)
    with pytest.raises(fff.Error, match="arch bert.*crammed"):
        fff.bert.load(out)
