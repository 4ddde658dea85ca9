#!/usr/bin/python3
"""Load test of `fff serve`: concurrent clients against POST /v1/embeddings, and in the same run the
offline rate of `fff bert embed` on the same sentences with the same threads.

Starts `fff serve MODEL --port 0 --threads N` (or uses a running server: --url), runs --clients
threads, each on its own keep-alive connection sending requests of 1-8 sentences (--min-sentences,
--max-sentences) drawn at random from a text file (default: the lines of Debian's fortunes), for
--seconds or until --requests requests in all. Reports requests/s, sentences/s, tokens/s (the
responses' usage.prompt_tokens), latency p50/p90/p99 (ms, request sent to response read) and failed
requests (any status but 200, a malformed response or a connection error). Then `fff bert embed` on
every sentence the clients sent, in the order sent (--format binary, --batch --offline-batch,
--threads N): sentences/s with the process's start-up and model load taken out (the time of the
same command on one sentence is subtracted), and the server/offline ratio. At the end the server
gets SIGTERM and must exit 0 (it answers what is in flight first).

    bench/bench_serve.py models/all-MiniLM-L6-v2.safetensors --threads 2 --seconds 30
    bench/bench_serve.py models/all-MiniLM-L6-v2.safetensors --requests 2000 --json

The clients run in this Python process (base64 responses by default, as OpenAI's client asks for
them, which keeps their decoding cheap); on a small machine they share its cores with the server,
which the offline figure does not have to: say so beside the numbers.
"""

import argparse
import base64
import glob
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = "/usr/share/games/fortunes"


class UserError(Exception):
    """A problem with the user's input or the environment; printed as `error: ...`."""


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("model", nargs="?", help="fff-bert model file to serve (and to embed offline)")
    ap.add_argument("--url", help="a running server (http://HOST:PORT) instead of starting one; the offline "
                                  "rate is measured only if MODEL is given too")
    ap.add_argument("--fff", default=os.environ.get("FFF_CLI", os.path.join(ROOT, "build", "fff")),
                    help="the fff executable")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="encoder threads of the server and of fff bert embed")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the clients send")
    ap.add_argument("--requests", type=int, default=None,
                    help="stop after this many requests in all (instead of --seconds)")
    ap.add_argument("--min-sentences", type=int, default=1, help="fewest sentences per request")
    ap.add_argument("--max-sentences", type=int, default=8, help="most sentences per request")
    ap.add_argument("--texts", default=None,
                    help=f"sentences, one per line (default: the lines of {FORTUNES}/*)")
    ap.add_argument("--encoding", choices=["base64", "float"], default="base64",
                    help="the requests' encoding_format")
    ap.add_argument("--offline-batch", type=int, default=32,
                    help="fff bert embed --batch (32: the server's default --max-batch)")
    ap.add_argument("--no-offline", action="store_true", help="skip the offline rate")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument for fff serve (repeatable), e.g. --server-arg=--max-batch=16")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sentence draws")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not args.model and not args.url:
        ap.error("give MODEL (a server is started) or --url")
    for name in ("threads", "clients", "min_sentences", "max_sentences", "offline_batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_sentences < args.min_sentences:
        ap.error("--max-sentences is below --min-sentences")
    if args.requests is not None and args.requests < 1:
        ap.error("--requests must be at least 1")
    if args.requests is None and not args.seconds > 0:
        ap.error("--seconds must be positive")
    return args


def read_texts(path):
    """Non-empty lines (stripped) of the file, or of every fortune file; files that are not UTF-8 are
    left out."""
    if path:
        paths = [path]
    else:
        paths = [p for p in sorted(glob.glob(os.path.join(FORTUNES, "*")))
                 if os.path.isfile(p) and not os.path.islink(p) and os.path.splitext(p)[1] not in (".dat", ".u8")]
        if not paths:
            raise UserError(f"no fortune files in {FORTUNES} (Debian: fortunes); give --texts FILE")
    texts = []
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                data = f.read()
        except UnicodeDecodeError:
            if path:
                raise UserError(f"{p}: not UTF-8") from None
            continue
        except OSError as e:
            raise UserError(f"{p}: {e.strerror}") from None
        # Fortune separators ("%") are not sentences.
        texts += [t.strip() for t in data.splitlines() if t.strip() and t.strip() != "%"]
    if not texts:
        raise UserError(f"{path or FORTUNES}: no non-empty lines")
    return texts


class Server:
    """`fff serve MODEL --port 0 ...`: the port from its startup line on stderr."""

    def __init__(self, fff, model, threads, extra):
        cmd = [fff, "serve", model, "--port", "0", "--threads", str(threads), *extra]
        try:
            self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            raise UserError(f"cannot run {fff}: {e.strerror}") from None
        line = self.proc.stderr.readline()
        self.lines = [line]
        marker = "listening on http://"
        if marker not in line:
            self.proc.wait(10)
            raise UserError(f"fff serve did not start: {(line + self.proc.stderr.read()).strip()}")
        self.host, port = line.split(marker)[1].split()[0].rsplit(":", 1)
        self.port = int(port)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def stop(self, timeout=30):
        """SIGTERM; the exit status (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self.reader.join(5)
        return code


def wait_healthy(host, port, seconds=30):
    deadline = time.time() + seconds
    while True:
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", "/health")
            r = c.getresponse()
            body = json.loads(r.read())
            c.close()
            if r.status == 200:
                return body
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.time() > deadline:
            raise UserError(f"no GET /health answer from {host}:{port} within {seconds} s")
        time.sleep(0.05)


class Load:
    """The clients' shared state: what was sent, what came back."""

    def __init__(self, args, texts, dimensions):
        self.args, self.texts, self.dimensions = args, texts, dimensions
        self.lock = threading.Lock()
        self.started = 0  # requests begun (for --requests)
        self.latencies, self.sent, self.errors = [], [], []
        self.sentences = self.tokens = self.failures = 0
        self.stop_at = None

    def take(self):
        """Whether a client may send one more request."""
        if self.args.requests is None:
            return time.perf_counter() < self.stop_at
        with self.lock:
            if self.started >= self.args.requests:
                return False
            self.started += 1
            return True

    def fail(self, message):
        with self.lock:
            self.failures += 1
            if len(self.errors) < 10:
                self.errors.append(message)

    def client(self, index, host, port):
        rng = random.Random(self.args.seed * 1000003 + index)
        conn = http.client.HTTPConnection(host, port, timeout=120)
        headers = {"Content-Type": "application/json"}
        while self.take():
            batch = [rng.choice(self.texts)
                     for _ in range(rng.randint(self.args.min_sentences, self.args.max_sentences))]
            body = json.dumps({"input": batch, "encoding_format": self.args.encoding}).encode()
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/embeddings", body, headers)
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()  # http.client opens a new connection for the next request
                self.fail(f"{type(e).__name__}: {e}")
                continue
            elapsed = time.perf_counter() - start
            if r.status != 200:
                self.fail(f"status {r.status}: {data[:200].decode('utf-8', 'replace')}")
                continue
            try:
                reply = json.loads(data)
                rows = reply["data"]
                ok = len(rows) == len(batch) and all(self.row_size(d["embedding"]) == self.dimensions for d in rows)
                tokens = int(reply["usage"]["prompt_tokens"])
            except (ValueError, KeyError, TypeError) as e:
                self.fail(f"malformed response ({type(e).__name__}: {e}): {data[:200].decode('utf-8', 'replace')}")
                continue
            if not ok:
                self.fail(f"{len(rows)} embeddings for {len(batch)} inputs, or not {self.dimensions} wide")
                continue
            with self.lock:
                self.latencies.append(elapsed)
                self.sent.extend(batch)
                self.sentences += len(batch)
                self.tokens += tokens
        conn.close()

    def row_size(self, embedding):
        if self.args.encoding == "float":
            return len(embedding)
        return len(base64.b64decode(embedding)) // 4

    def run(self, host, port):
        threads = [threading.Thread(target=self.client, args=(i, host, port)) for i in range(self.args.clients)]
        start = time.perf_counter()
        self.stop_at = start + self.args.seconds
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start


def percentile(sorted_values, q):
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def offline_rate(args, sentences):
    """fff bert embed on the sentences: (sentences/s without start-up, seconds in all, start-up seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        def embed(texts):
            path = os.path.join(tmp, "texts.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(t + "\n" for t in texts)
            cmd = [args.fff, "bert", "embed", args.model, "--file", path, "--threads", str(args.threads),
                   "--batch", str(args.offline_batch), "--format", "binary", "--output", os.path.join(tmp, "out.f32")]
            start = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if r.returncode != 0:
                raise UserError(f"fff bert embed failed: {r.stderr.strip()}")
            return elapsed

        startup = min(embed(sentences[:1]) for _ in range(3))  # start-up and model load
        total = embed(sentences)
    work = max(total - startup, 1e-9)
    return len(sentences) / work, total, startup


def run(args):
    texts = read_texts(args.texts)
    server = None
    try:
        if args.url:
            u = urllib.parse.urlparse(args.url)
            if u.scheme != "http" or not u.hostname or not u.port:
                raise UserError(f"--url {args.url}: expected http://HOST:PORT")
            host, port = u.hostname, u.port
        else:
            if not os.path.isfile(args.model):
                raise UserError(f"{args.model}: no such file")
            server = Server(args.fff, args.model, args.threads, args.server_arg)
            host, port = server.host, server.port
        health = wait_healthy(host, port)
        load = Load(args, texts, int(health["dimensions"]))
        wall = load.run(host, port)
        exit_code = server.stop() if server else None
    finally:
        if server and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()

    lat = sorted(load.latencies)
    ok = len(lat)
    result = {
        "benchmark": "serve",
        "url": args.url or f"http://{host}:{port}",
        "model": args.model,
        # A server given by --url runs with threads of its own, unknown here.
        "threads": None if args.url else args.threads,
        "clients": args.clients,
        "sentences_per_request": [args.min_sentences, args.max_sentences],
        "encoding_format": args.encoding,
        "texts": args.texts or FORTUNES,
        "seconds": wall,
        "requests": ok + load.failures,
        "failed_requests": load.failures,
        "errors": load.errors,
        "requests_per_s": ok / wall,
        "sentences": load.sentences,
        "sentences_per_s": load.sentences / wall,
        "tokens_per_s": load.tokens / wall,
        "latency_ms": {k: (None if percentile(lat, q) is None else 1e3 * percentile(lat, q))
                       for k, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "server_args": args.server_arg,
        "server_exit": exit_code,
    }
    if server:
        result["server_last_line"] = server.lines[-1].strip() if server.lines else ""
    if args.model and not args.no_offline and load.sent:
        rate, total, startup = offline_rate(args, load.sent)
        result["offline"] = {"command": "fff bert embed", "batch": args.offline_batch, "threads": args.threads,
                             "sentences": len(load.sent), "seconds": total, "startup_seconds": startup,
                             "sentences_per_s": rate}
        result["serve_vs_offline"] = result["sentences_per_s"] / rate
    return result


def report(result):
    lat = result["latency_ms"]
    print(f"{result['url']}: {result['clients']} clients, {result['sentences_per_request'][0]}-"
          f"{result['sentences_per_request'][1]} sentences per request, "
          f"{result['threads'] or 'the server its own'} encoder threads, "
          f"{result['seconds']:.1f} s")
    print(f"  {result['requests']} requests ({result['failed_requests']} failed): {result['requests_per_s']:.1f} "
          f"requests/s, {result['sentences_per_s']:.1f} sentences/s, {result['tokens_per_s']:.0f} tokens/s")
    if lat["p50"] is not None:
        print(f"  latency p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms")
    for e in result["errors"]:
        print(f"  error: {e}")
    if "offline" in result:
        o = result["offline"]
        print(f"  offline (fff bert embed --batch {o['batch']}, {o['sentences']} sentences): "
              f"{o['sentences_per_s']:.1f} sentences/s; server/offline {result['serve_vs_offline']:.2f}")
    if "server_last_line" in result:
        print(f"  server exit status after SIGTERM: {result['server_exit']}")


def main(argv=None):
    args = parse_args(argv)
    try:
        result = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    started = not args.url
    if result["failed_requests"] or (started and result["server_exit"] != 0):
        if started and result["server_exit"] != 0:
            print(f"error: fff serve exited with {result['server_exit']} after SIGTERM", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
