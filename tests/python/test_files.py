"""fff.load and fff.save: classifier files move both ways between the `fff` CLI and PyTorch with
the same test accuracy; round trips keep every parameter; encoder files give their neuron FFF
blocks; bad files and bad arguments give clear errors."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fff  # noqa: E402
import fff.torch as ft  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_numpy_api import CLI, KINDS, dataset, trained  # noqa: E402,F401  (shared fixtures)

SOURCE = os.path.join(os.path.dirname(__file__), "..", "..")


def read_safetensors(path):
    """A minimal independent reader: metadata and F32 tensors as numpy arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32"
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    return meta, tensors


def cli_accuracy(path, data_dir):
    out = subprocess.run([CLI, "eval", str(path), "--data", str(data_dir), "--no-compare",
                          "--threads", "1", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["test_accuracy"]


def torch_accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    return float((logits.argmax(-1).numpy() == y).mean())


@pytest.mark.parametrize("kind", list(KINDS))
def test_cli_model_loads_with_the_same_accuracy(kind, trained, dataset):
    d, x, y = dataset
    model = fff.load(trained[kind])
    assert isinstance(model, ft.Classifier)
    assert model.metadata["model"] == kind
    _, file_tensors = read_safetensors(trained[kind])
    state = model.block.state_dict()
    assert set(state) == set(file_tensors)
    for name, t in file_tensors.items():
        assert torch.equal(state[name], torch.from_numpy(t.copy())), name
    acc = torch_accuracy(model, x, y)
    assert acc == cli_accuracy(trained[kind], d)
    assert acc > 0.5  # three separable classes: the models learned something


def make_block(kind):
    if kind == "leaf-fff":
        return ft.LeafFFF(30, 3, depth=2, leaf_width=4)
    if kind == "neuron-fff":
        return ft.NeuronFFF(30, 3, depth=2, trees=2, activation="relu")
    return ft.DenseFF(30, 12, 3)


@pytest.mark.parametrize("kind", list(KINDS))
def test_model_trained_in_pytorch_evaluates_in_the_cli(kind, dataset, tmp_path):
    d, x, y = dataset
    torch.manual_seed(0)
    mean, std = float(x.mean()), float(x.std())
    model = ft.Classifier(make_block(kind), input_mean=mean, input_std=std)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(30):
        opt.zero_grad()
        logits, entropy = model(xt, return_entropy=True)
        (torch.nn.functional.cross_entropy(logits, yt) + 0.1 * entropy).backward()
        opt.step()
    path = tmp_path / "m.safetensors"
    fff.save(model, path, metadata={"note": "trained in pytorch"})
    meta, _ = read_safetensors(path)
    assert meta["note"] == "trained in pytorch" and meta["model"] == kind
    acc = torch_accuracy(model, x, y)
    assert acc == cli_accuracy(path, d)
    assert acc > 0.5


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_round_trip(kind, tmp_path):
    torch.manual_seed(1)
    block = make_block(kind)
    path = tmp_path / "b.safetensors"
    fff.save(block, path)  # a bare block: mean 0, std 1
    back = fff.load(path)
    assert type(back.block) is type(block)
    assert (back.input_mean, back.input_std) == (0.0, 1.0)
    for (n1, p1), (n2, p2) in zip(block.state_dict().items(), back.block.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.randn(5, 30)
    block.eval()
    back.eval()
    with torch.no_grad():
        assert torch.equal(block(x), back(x))
    info = subprocess.run([CLI, "info", str(path)], check=True, capture_output=True, text=True)
    assert kind in info.stdout


def test_encoder_file_gives_its_neuron_fff_blocks(tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "ufb.safetensors"
    subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "scripts", "bert_reference.py"),
                    "--out", str(ckpt), "--ff", "fff", "--hidden", "32", "--heads", "2",
                    "--layers", "2", "--trees", "2", "--depth", "3", "--seed", "3"],
                   check=True, capture_output=True)
    subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "scripts", "convert_bert.py"),
                    str(ckpt), str(out)], check=True, capture_output=True)
    blocks = fff.load(out)
    _, tensors = read_safetensors(out)
    assert len(blocks) == 2
    for i, b in enumerate(blocks):
        assert isinstance(b, ft.NeuronFFF)
        assert (b.in_features, b.out_features, b.trees, b.depth) == (32, 32, 2, 3)
        assert set(b.state_dict()) == {"w1", "b1", "w2"}  # UltraFastBERT has no output bias
        for name in ("w1", "b1", "w2"):
            want = torch.from_numpy(tensors[f"layers.{i}.fff.{name}"].copy())
            assert torch.equal(b.state_dict()[name], want)


def test_bad_files_and_arguments(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(fff.Error, match="junk.safetensors"):
        fff.load(junk)
    header = json.dumps({"__metadata__": {"format": "fff-lm"}}).encode()
    other = tmp_path / "lm.safetensors"
    other.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(fff.Error, match="format 'fff-lm'"):
        fff.load(other)
    with pytest.raises(fff.Error, match="missing.safetensors"):
        fff.load(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="fff.save"):
        fff.save(torch.nn.Linear(3, 2), tmp_path / "x.safetensors")
    block = ft.DenseFF(4, 5, 2)
    with torch.no_grad():
        block.w1[0, 0] = float("nan")
    with pytest.raises(fff.Error, match="w1.*NaN"):
        fff.save(block, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()
    with pytest.raises(fff.Error, match="out"):
        fff.save(ft.DenseFF(4, 5, 1), tmp_path / "one_class.safetensors")  # a classifier needs 2+
