"""The ONNX Runtime baseline of `fff bench bert`, functionally (tiny repeat counts, no timing claims):
scripts/export_onnx.py on the all-MiniLM-L6-v2 package, then `fff bench bert --model FILE --onnx
FILE.onnx` with this interpreter, which must report ORT's timings beside fff's and PyTorch's and
find ORT's and fff's mean-pooled embeddings of a fixed sentence within 1e-4; a model that is not
the exported one must fail that check. Skipped, saying why, without onnxruntime."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

CLI = os.environ.get("FFF_CLI", "build/fff")
SOURCE = os.environ.get("FFF_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")

ort = pytest.importorskip("onnxruntime", reason=f"{sys.executable} has no onnxruntime (scripts/setup.sh "
                                                "installs it into build/venv-ref)")


@pytest.fixture(scope="module")
def onnx_file(minilm_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("onnx") / "all-MiniLM-L6-v2.onnx")
    script = os.path.join(SOURCE, "scripts", "export_onnx.py")
    first = subprocess.run([sys.executable, script, minilm_dir, out], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "opset 14" in first.stdout and os.path.getsize(out) > 0
    # Idempotent: a second run keeps the file.
    mtime = os.stat(out).st_mtime_ns
    again = subprocess.run([sys.executable, script, minilm_dir, out], capture_output=True, text=True)
    assert again.returncode == 0 and "already there" in again.stdout
    assert os.stat(out).st_mtime_ns == mtime
    return out


def test_export_has_dynamic_axes_and_the_named_inputs(onnx_file):
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    for i in session.get_inputs():
        assert all(isinstance(d, str) for d in i.shape), i.shape  # batch and sequence are symbolic
    # Other shapes than the traced (2, 12) run.
    ids = np.full((3, 20), 1000, dtype=np.int64)
    out = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                             "token_type_ids": np.zeros_like(ids)})[0]
    assert out.shape == (3, 20, 384)


def bench(model, onnx, *extra):
    return subprocess.run([CLI, "bench", "bert", "--model", model, "--onnx", onnx, "--python", sys.executable,
                           "--seq", "8", "--batches", "1,2", "--threads", "1", "--repeats", "1", "--json",
                           *extra], capture_output=True, text=True, timeout=600)


def test_bench_bert_reports_ort_beside_fff(minilm_fff_file, onnx_file):
    r = bench(minilm_fff_file, onnx_file)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(j["batch"], j["threads"]) for j in lines] == [(1, 1), (2, 1)]
    for j in lines:
        assert j["ort_tokens_per_s"] > 0 and j["ort_ms_per_batch"] > 0
        assert j["ort_tokens_per_s"] == pytest.approx(j["batch"] * 8 / (j["ort_ms_per_batch"] / 1e3))
        assert j["fff_vs_ort"] == pytest.approx(j["fff_tokens_per_s"] / j["ort_tokens_per_s"])
        assert j["fff_ms_per_batch"] > 0
        assert j["ort"]["version"] == ort.__version__ and j["ort"]["onnx"] == onnx_file
        assert j["ort"]["settings"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
        assert j["ort"]["settings"]["inter_op_num_threads"] == 1
        check = j["ort_embedding_check"]
        assert check["applies"] is True and check["pass"] is True
        assert check["max_abs_diff"] <= 1e-4 and check["cosine"] > 0.9999
        # The PyTorch baseline is still there, with its version.
        assert j["pytorch_tokens_per_s"] > 0 and j["pytorch_version"]


def test_bench_bert_fails_when_the_onnx_model_is_another(minilm_fff_file, onnx_file, tmp_path):
    """The same file with one bias changed: ORT's embeddings no longer match, and the run says so."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(minilm_fff_file, framework="numpy") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    # One component only: a shift of every component would vanish in the LayerNorm after it.
    bias = tensors["layers.5.ff.b2"].copy()
    bias[0] += np.float32(0.5)
    tensors["layers.5.ff.b2"] = bias
    other = str(tmp_path / "changed.safetensors")
    save_file(tensors, other, metadata=metadata)
    r = bench(other, onnx_file)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "does not compute" in r.stderr
    for line in r.stdout.splitlines():
        check = json.loads(line)["ort_embedding_check"]
        assert check["pass"] is False and check["max_abs_diff"] > 1e-4
