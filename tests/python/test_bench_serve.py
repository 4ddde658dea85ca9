"""bench/bench_serve.py, functionally, with tiny settings on a small random model (bert_files.py): the
load test against a server it starts, its figures and the offline `fff bert embed` rate on the same
sentences, clean shutdown; failed requests counted (and the exit status 1) when the server refuses
them. Run by ctest as part of serve.http (FFF_CLI names the fff executable); no timing is checked."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_files import random_sentence, write_random_bert

CLI = os.environ.get("FFF_CLI", "build/fff")
SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "bench_serve.py")

if os.environ.get("FFF_SERVE_BUILT") == "0":
    pytest.skip("fff serve was not built: no cpp-httplib at configure time (Debian: "
                "libcpp-httplib-dev)", allow_module_level=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_serve")
    model = write_random_bert(d / "tiny-bert.safetensors")
    rng = np.random.default_rng(3)
    texts = d / "texts.txt"
    texts.write_text("".join(random_sentence(rng) + "\n" for _ in range(50)), encoding="utf-8")
    return model, str(texts)


def bench(model, texts, *extra):
    return subprocess.run([sys.executable, SCRIPT, model, "--fff", CLI, "--texts", texts, "--threads", "1",
                           "--clients", "4", "--json", *extra], capture_output=True, text=True, timeout=120)


def test_load_test_reports_rates_latency_and_offline(files):
    model, texts = files
    r = bench(model, texts, "--requests", "24")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["requests"] == 24 and j["failed_requests"] == 0 and j["errors"] == []
    assert j["server_exit"] == 0 and "stopped" in j["server_last_line"]
    assert 24 <= j["sentences"] <= 24 * 8
    assert j["requests_per_s"] > 0 and j["tokens_per_s"] > 0
    # Every sentence has [CLS] and [SEP] at least.
    assert j["tokens_per_s"] >= 3 * j["sentences_per_s"]
    lat = j["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    offline = j["offline"]
    assert offline["sentences"] == j["sentences"] and offline["threads"] == 1
    assert offline["sentences_per_s"] > 0
    assert j["serve_vs_offline"] == pytest.approx(j["sentences_per_s"] / offline["sentences_per_s"])


def test_refused_requests_are_failures(files):
    model, texts = files
    # At most 2 inputs per request: those of 3 to 8 sentences are answered 400.
    r = bench(model, texts, "--requests", "12", "--min-sentences", "3", "--no-offline",
              "--server-arg=--max-inputs=2")
    assert r.returncode == 1, r.stdout + r.stderr
    j = json.loads(r.stdout)
    assert j["failed_requests"] == 12 and j["requests"] == 12
    assert "status 400" in j["errors"][0] and "--max-inputs" in j["errors"][0]
    assert j["server_exit"] == 0 and "offline" not in j


def test_bad_model_is_named(tmp_path):
    r = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "absent.safetensors"), "--fff", CLI],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "absent.safetensors: no such file" in r.stderr
