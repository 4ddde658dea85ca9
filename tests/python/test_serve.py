"""`fff serve` over real HTTP on 127.0.0.1 (urllib), with a small random model (bert_files.py):
the OpenAI-shaped responses, 16 concurrent clients against `fff bert embed` on the same
sentences, hostile requests, the bounded queue's 503, and shutdown on SIGTERM finishing the
request in flight. Run by ctest as serve.http (FFF_CLI names the fff executable)."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from bert_files import random_sentence, write_random_bert

CLI = os.environ.get("FFF_CLI", "build/fff")
SENTENCE_LIMIT = 12  # the model's sentence.max_seq_length (tokens, [CLS] and [SEP] included)

if os.environ.get("FFF_SERVE_BUILT") == "0":
    pytest.skip("fff serve was not built: no cpp-httplib at configure time (Debian: "
                "libcpp-httplib-dev)", allow_module_level=True)


class Server:
    """`fff serve MODEL --port 0 ARGS`, its port read from the startup line on stderr."""

    def __init__(self, model, *args):
        self.proc = subprocess.Popen([CLI, "serve", model, "--port", "0", *args],
                                     stderr=subprocess.PIPE, text=True)
        self.stderr = []
        line = self.proc.stderr.readline()  # the startup line (or an error, then EOF)
        self.stderr.append(line)
        if "listening on http://127.0.0.1:" not in line:
            self.proc.wait(10)
            raise AssertionError(f"fff serve did not start: {line!r}{self.proc.stderr.read()}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        self.reader = threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr))
        self.reader.start()
        deadline = time.time() + 20
        while True:
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "no /health within 20 s"
            time.sleep(0.05)

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON body, response headers)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), dict(e.headers)

    def embed(self, payload):
        return self.request("POST", "/v1/embeddings", json.dumps(payload).encode())

    def terminate(self, timeout=15):
        """SIGTERM; the exit status, and stderr's lines."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_random_bert(tmp_path_factory.mktemp("serve") / "tiny-bert.safetensors")


@pytest.fixture(scope="module")
def server(model):
    s = Server(model, "--threads", "2", "--max-batch", "8", "--batch-wait-ms", "5",
               "--max-body-bytes", "65536", "--max-inputs", "16", "--max-queue", "256")
    yield s
    s.kill()


def offline(model, texts, tmp_path):
    """`fff bert embed` of texts (one batch of 8 at a time), float32 rows."""
    path = tmp_path / "texts.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    out = subprocess.run([CLI, "bert", "embed", model, "--file", str(path), "--batch", "8"],
                         capture_output=True, text=True, check=True).stdout
    return np.array([json.loads(line) for line in out.splitlines()], dtype=np.float32)


def rows(response):
    return np.array([d["embedding"] for d in response["data"]], dtype=np.float32)


def tokens_of(text):
    # Every word of the made-up vocabulary is one token; [CLS] and [SEP] around them.
    return min(len(text.split()) + 2, SENTENCE_LIMIT)


def test_health(server):
    status, body, headers = server.request("GET", "/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body["status"] == "ok" and body["model"] == "tiny-bert"
    assert body["dimensions"] == 32 and body["max_tokens_per_input"] == SENTENCE_LIMIT


def test_single_string_and_list_match_fff_bert_embed(server, model, tmp_path):
    long_text = "the cat sat on the mat by the red house near the blue river"
    texts = ["the capital of france is paris .", "", long_text]
    want = offline(model, texts, tmp_path)
    status, one, _ = server.embed({"input": texts[0], "model": "anything"})
    assert status == 200
    assert one["object"] == "list" and one["model"] == "tiny-bert"
    assert one["data"][0]["object"] == "embedding" and one["data"][0]["index"] == 0
    assert len(one["data"]) == 1 and len(one["data"][0]["embedding"]) == 32
    assert one["usage"] == {"prompt_tokens": 9, "total_tokens": 9, "truncated_inputs": 0,
                            "max_tokens_per_input": SENTENCE_LIMIT}
    status, many, _ = server.embed({"input": texts})
    assert status == 200
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    # 9 + 2 ([CLS] [SEP] of the empty text) + 12 (the long text, cut at the limit).
    assert many["usage"]["prompt_tokens"] == 23 and many["usage"]["truncated_inputs"] == 1
    got = np.concatenate([rows(one), rows(many)])
    ref = np.concatenate([want[:1], want])
    # JSON carries each float32 exactly (shortest round-trip form of its double); rows may
    # differ only by the rounding that a different batch (padding) gives the encoder.
    assert np.abs(got - ref).max() <= 1e-6
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # base64: the same float32 bytes.
    status, b64, _ = server.embed({"input": texts[0], "encoding_format": "base64"})
    assert status == 200
    import base64
    raw = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(raw, rows(one)[0])


def test_16_concurrent_clients(server, model, tmp_path):
    rng = np.random.default_rng(5)
    # 16 clients, 4 requests each, 1-8 sentences per request.
    plans = [[[random_sentence(rng) for _ in range(int(rng.integers(1, 9)))] for _ in range(4)]
             for _ in range(16)]
    texts = sorted({t for client in plans for req in client for t in req})
    want = dict(zip(texts, offline(model, texts, tmp_path)))
    failures, worst = [], [0.0]
    lock = threading.Lock()

    def client(requests):
        for req in requests:
            try:
                status, body, _ = server.embed({"input": req})
            except Exception as e:  # noqa: BLE001 - any failure counts
                with lock:
                    failures.append(repr(e))
                continue
            with lock:
                if status != 200:
                    failures.append((status, body))
                    continue
                got = rows(body)
                ref = np.array([want[t] for t in req])
                worst[0] = max(worst[0], float(np.abs(got - ref).max()))
                if body["usage"]["prompt_tokens"] != sum(tokens_of(t) for t in req):
                    failures.append(("usage", req, body["usage"]))
                if body["usage"]["truncated_inputs"] != sum(
                        len(t.split()) + 2 > SENTENCE_LIMIT for t in req):
                    failures.append(("truncated", req, body["usage"]))

    threads = [threading.Thread(target=client, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert worst[0] <= 1e-6


def test_hostile_requests_get_json_4xx_and_the_server_stays_up(server):
    big = json.dumps({"input": "a " * 40000}).encode()  # over --max-body-bytes 65536
    cases = [
        ("POST", "/v1/embeddings", b'{"input": ', 400, "invalid JSON"),
        ("POST", "/v1/embeddings", b'{"input": "caf\xe9"}', 400, "UTF-8"),
        ("POST", "/v1/embeddings", b'{"input": "\xff\xfe"}', 400, "UTF-8"),
        ("POST", "/v1/embeddings", b'{"input": 42}', 400, "string or a list of strings"),
        ("POST", "/v1/embeddings", b'{"input": ["ok", 3]}', 400, '"input"[1]'),
        ("POST", "/v1/embeddings", b'{"input": [[1, 2]]}', 400, "not a string"),
        ("POST", "/v1/embeddings", b'{"input": null}', 400, "not null"),
        ("POST", "/v1/embeddings", b'{"input": []}', 400, "empty list"),
        ("POST", "/v1/embeddings", b'{"text": "x"}', 400, 'no "input"'),
        ("POST", "/v1/embeddings", b'["x"]', 400, "JSON object"),
        ("POST", "/v1/embeddings", b'{"input": "x", "model": 7}', 400, '"model"'),
        ("POST", "/v1/embeddings", b'{"input": "x", "encoding_format": "hex"}', 400,
         "encoding_format"),
        ("POST", "/v1/embeddings", b'{"input": "x", "dimensions": 8}', 400, "dimensions"),
        ("POST", "/v1/embeddings", json.dumps({"input": ["x"] * 17}).encode(), 400,
         "--max-inputs"),
        ("POST", "/v1/embeddings", big, 413, "--max-body-bytes"),
        ("POST", "/v1/embeddings", b"", 400, "invalid JSON"),
        ("GET", "/v1/nothing", None, 404, "no such path"),
        ("GET", "/v1/embeddings", None, 405, "method not allowed"),
        ("DELETE", "/v1/embeddings", None, 405, "method not allowed"),
        ("POST", "/health", b"{}", 405, "method not allowed"),
    ]
    for method, path, body, status, needle in cases:
        got, reply, _ = server.request(method, path, body)
        assert got == status, (method, path, body[:60] if body else None, reply)
        err = reply["error"]
        assert err["type"] == "invalid_request_error" and needle in err["message"], reply
    assert server.request("GET", "/health")[0] == 200
    assert server.embed({"input": "still here"})[0] == 200
    assert server.proc.poll() is None


def test_full_queue_answers_503_and_sigterm_finishes_the_request_in_flight(model):
    # Batches wait up to 3 s to fill 64 texts: the first request's 4 texts stay queued, and
    # the queue (4 texts) has no room for more.
    s = Server(model, "--threads", "1", "--max-batch", "64", "--batch-wait-ms", "3000",
               "--max-queue", "4", "--max-inputs", "4")
    try:
        results = {}

        def first():
            results["first"] = s.embed({"input": ["a", "b", "c", "d"]})

        t = threading.Thread(target=first)
        t.start()
        deadline = time.time() + 10
        while s.request("GET", "/health")[1]["queued_texts"] < 4:
            assert time.time() < deadline
            time.sleep(0.01)
        status, body, headers = s.embed({"input": "one more"})
        assert status == 503 and headers.get("Retry-After") == "1"
        assert "busy" in body["error"]["message"]
        t.join()
        assert results["first"][0] == 200 and len(results["first"][1]["data"]) == 4

        # A request waits in the queue when SIGTERM comes: it is still answered, then the
        # server exits 0, well before its batch would have waited out its 3 s.
        t = threading.Thread(target=first)
        t.start()
        while s.request("GET", "/health")[1]["queued_texts"] < 4:
            assert time.time() < deadline + 10
            time.sleep(0.01)
        start = time.time()
        assert s.terminate() == 0
        t.join()
        assert results["first"][0] == 200 and len(results["first"][1]["data"]) == 4
        assert time.time() - start < 2.5
        assert any("stopped by" in line for line in s.stderr), s.stderr
    finally:
        s.kill()


def test_bad_flags_and_missing_model_fail_clearly(model, tmp_path):
    r = subprocess.run([CLI, "serve", str(tmp_path / "missing.safetensors"), "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "missing.safetensors" in r.stderr
    r = subprocess.run([CLI, "serve", model, "--port", "0", "--max-inputs", "100",
                        "--max-queue", "10"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--max-inputs" in r.stderr
    r = subprocess.run([CLI, "serve", "--help"], capture_output=True, text=True, timeout=30)
    for flag in ["--host", "--port", "--threads", "--max-batch", "--batch-wait-ms", "--max-queue",
                 "--max-body-bytes", "--max-inputs", "--max-len", "--model-name"]:
        assert flag in r.stdout
