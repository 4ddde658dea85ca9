"""fff's numpy inference API against an independent numpy implementation of each kind's hard
inference, written here from the math in docs/layers/, on models trained by the `fff` CLI; and
the same test accuracy in Python as `fff eval` reports."""

import json
import os
import struct
import subprocess

import numpy as np
import pytest

import fff

CLI = os.environ.get("FFF_CLI", "build/fff")


def write_idx(path, array, dims):
    """An uncompressed IDX file of unsigned bytes (the MNIST format)."""
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, len(dims)))
        f.write(struct.pack(">" + "I" * len(dims), *dims))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small data set with learnable structure: 3 classes of 6x5 'images' around 3 centres."""
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, size=(3, 30))

    def make(n):
        y = rng.integers(0, 3, size=n)
        x = np.clip(centres[y] + rng.normal(0, 40, size=(n, 30)), 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    xtr, ytr = make(600)
    xte, yte = make(211)  # an odd size
    write_idx(d / "train-images-idx3-ubyte", xtr, (600, 6, 5))
    write_idx(d / "train-labels-idx1-ubyte", ytr, (600,))
    write_idx(d / "t10k-images-idx3-ubyte", xte, (211, 6, 5))
    write_idx(d / "t10k-labels-idx1-ubyte", yte, (211,))
    # The CLI scales IDX images to [0, 1]; predict() takes inputs in those units.
    return d, xte.astype(np.float32) / 255.0, yte.astype(np.int64)


KINDS = {
    "ff": ["--model", "ff", "--width", "16"],
    "leaf-fff": ["--model", "leaf-fff", "--width", "16", "--leaf-width", "4"],
    "neuron-fff": ["--model", "neuron-fff", "--depth", "3", "--trees", "2"],
}


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    d, _, _ = dataset
    out = tmp_path_factory.mktemp("models")
    paths = {}
    for kind, flags in KINDS.items():
        path = out / f"{kind}.safetensors"
        # The paper's recipe (SGD, lr 0.2) learns these 600 rows in 3 epochs of 3 batches; the
        # default best recipe (Adam, lr 0.002, cosine) is made for 60 epochs of real data.
        subprocess.run([CLI, "train", "--data", str(d), *flags, "--recipe", "paper", "--epochs",
                        "3", "--threads", "1", "--no-compare", "--seed", "1", "--save", str(path)],
                       check=True, capture_output=True)
        paths[kind] = path
    return paths


def gelu(z):
    from math import erf
    return 0.5 * z * (1.0 + np.vectorize(erf)(z / np.sqrt(2.0)))


def act(name, z):
    return {"relu": lambda v: np.maximum(v, 0.0), "gelu": gelu, "identity": lambda v: v}[name](z)


def reference_logits(model, x):
    """Hard inference of each kind, in float64, from the model's parameters."""
    p = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    meta = model.metadata
    a = meta["activation"]
    x = (x.astype(np.float64) - model.input_mean) / model.input_std
    if model.kind == "ff":
        return act(a, x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    if model.kind == "leaf-fff":
        depth, lw = int(meta["depth"]), int(meta["leaf_width"])
        out = np.empty((len(x), model.classes))
        for r, row in enumerate(x):
            node = 0
            for _ in range(depth):  # right iff the node's logit >= 0
                node = 2 * node + 1 + int(p["nodes_w"][node] @ row + p["nodes_b"][node] >= 0)
            leaf = node - (2 ** depth - 1)
            cols = slice(leaf * lw, (leaf + 1) * lw)
            h = act(a, row @ p["w1"][:, cols] + p["b1"][cols])
            out[r] = h @ p["w2"][cols] + p["b2"][leaf]
        return out
    depth, trees = int(meta["depth"]), int(meta["trees"])
    per_tree = 2 ** (depth + 1) - 1
    out = np.tile(p["b"], (len(x), 1)) if "b" in p else np.zeros((len(x), model.classes))
    for r, row in enumerate(x):
        for t in range(trees):
            node = 0
            for _ in range(depth + 1):  # right iff z > 0 (ties go left)
                i = t * per_tree + node
                z = p["w1"][i] @ row + p["b1"][i]
                out[r] += act(a, np.array([z]))[0] * p["w2"][i]
                node = 2 * node + 1 + int(z > 0)
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_predict_matches_numpy_reference(trained, dataset, kind):
    _, x, _ = dataset
    model = fff.Model.load(str(trained[kind]), threads=2)
    assert model.kind == kind and model.in_features == 30 and model.classes == 3
    logits = model.predict(x)
    assert logits.shape == (len(x), 3) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    ref = reference_logits(model, x)
    assert np.max(np.abs(logits - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_test_accuracy_as_fff_eval(trained, dataset, kind):
    d, x, y = dataset
    model = fff.Model.load(str(trained[kind]))
    acc = float(np.mean(model.predict(x).argmax(-1) == y))
    run = subprocess.run([CLI, "eval", str(trained[kind]), "--data", str(d), "--json",
                          "--threads", "1"], check=True, capture_output=True, text=True)
    assert acc == pytest.approx(json.loads(run.stdout)["test_accuracy"], abs=1e-12)
    assert acc > 0.5  # three well-separated classes: the models learned something


def test_leading_dims_dtypes_threads_and_standardize(trained, dataset):
    _, x, _ = dataset
    model = fff.Model.load(str(trained["leaf-fff"]), threads=1)
    flat = model.predict(x[:12])
    batched = model.predict(x[:12].reshape(3, 4, 30))
    assert batched.shape == (3, 4, 3)
    np.testing.assert_array_equal(batched.reshape(12, 3), flat)
    one = model.predict(x[5])  # a single row: (in,) -> (classes,)
    assert one.shape == (3,)
    np.testing.assert_array_equal(one, flat[5])
    np.testing.assert_array_equal(model.predict(x[:12].astype(np.float64)), flat)  # converted
    np.testing.assert_array_equal(model.predict(np.asfortranarray(x[:12])), flat)
    model.threads = 3
    assert model.threads == 3
    np.testing.assert_array_equal(model.predict(x[:12]), flat)
    pre = (x[:12] - model.input_mean) / model.input_std
    np.testing.assert_allclose(model.predict(pre.astype(np.float32), standardize=False), flat,
                               rtol=1e-5, atol=1e-5)
    assert model.predict(np.zeros((0, 30), np.float32)).shape == (0, 3)


def test_clear_errors(trained, tmp_path):
    model = fff.Model.load(str(trained["ff"]))
    with pytest.raises(fff.Error, match="in_features is 30"):
        model.predict(np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError):  # fff.Error is a ValueError
        model.predict(np.float32(1.0))
    with pytest.raises(fff.Error, match="threads"):
        model.threads = -3
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(fff.Error, match="missing.safetensors"):
        fff.Model.load(str(missing))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 5)
    with pytest.raises(fff.Error, match="garbage.safetensors"):
        fff.Model.load(str(garbage))


def test_version():
    assert fff.__version__.count(".") == 2
