"""Hostile and careless command lines against the fff CLI, end to end (issue 18, part 4).

Every command that reads a file gets it missing, as a directory, empty, as binary garbage, cut
short at many points, and as a file of another fff kind; every command gets absurd flag values;
the commands that read text get invalid UTF-8, NULs and random bytes. A case passes when the CLI
ends by itself within TIMEOUT_S seconds (no hang), with exit status > 0 (not a signal), a message
on stderr that names the offending file or flag, nothing that looks like a crash (an uncaught
exception, an abort, a sanitizer report, std::bad_alloc), and a peak RSS under 2 GB. The cases
marked `ok` are careless input that the command can handle: they must exit 0 with well-formed
output. They are: random bytes, NULs, invalid UTF-8 and control characters as --text, --prompt,
--file, stdin or a training corpus (bert embed / tokenize / fill-mask with a [MASK], lm sample,
lm train, bert convert); empty texts and prompts; a --max-len or --top-k beyond the model's
limits (the model's limit applies); file names that are not UTF-8 in --json output.

The valid models the cases start from are made by the CLI itself (fff train / fff lm train /
fff bert convert) or by bert_files.py (a small random BERT). All cases run once, two at a time, in
a module fixture (the whole file takes well under 2 minutes on 2 cores); each is then its own
pytest test. With FFF_HOSTILE_TABLE=PATH the run also writes a Markdown table of every case: its
exit status, peak RSS, time and the first line of its message (docs/results/hostile-inputs.md).

Run by ctest as cli.hostile (FFF_CLI names the fff executable)."""

import concurrent.futures
import json
import math
import os
import platform
import random
import resource
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from bert_files import write_random_bert  # noqa: E402

CLI = os.environ.get("FFF_CLI", "build/fff")
TIMEOUT_S = 20
RSS_LIMIT_KB = 2 * 1024 * 1024  # 2 GB
# Address-space cap of each child: an allocation that gets past the checks fails at once
# (std::bad_alloc, reported as a failure) instead of paging the shared machine out.
ADDRESS_SPACE_CAP = 8 << 30


def sanitized(path):
    """Whether the executable is built with a sanitizer: AddressSanitizer reserves terabytes of
    address space for its shadow memory, so it cannot run under the cap (its own allocator
    reports allocations past its limit instead)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return any(s in data for s in (b"__asan_init", b"__msan_init", b"__tsan_init"))


SANITIZED = sanitized(CLI)
FORBIDDEN = ("terminate called", "Aborted", "Traceback (most recent call last)", "Sanitizer",
             "runtime error:", "std::bad_alloc", "internal error", "Segmentation fault",
             "core dumped")

SERVE = os.environ.get("FFF_SERVE_BUILT") != "0"  # fff serve built (cpp-httplib found)


@dataclass
class Case:
    command: str  # the table's group: "info", "bert embed", ...
    name: str  # what is hostile about it
    argv: list  # after the executable; "{key}" is replaced by the path of file `key`
    names: tuple  # stderr must contain one of these ("{key}" as in argv)
    stdin: Optional[str] = None  # key of bytes fed on stdin (else /dev/null)
    ok: bool = False  # careless input the command handles: exit 0 and well-formed stdout
    check: Optional[Callable] = None  # (stdout bytes) -> problem string or None, for ok cases

    @property
    def id(self):
        return f"{self.command}: {self.name}"


@dataclass
class Result:
    returncode: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    seconds: float = 0.0
    rss_kb: int = 0
    timed_out: bool = False
    argv: list = field(default_factory=list)


# ---------------------------------------------------------------------------- valid inputs

TEXT = ("The quick brown fox jumps over the lazy dog. A cat sat on the mat, and the dog ran "
        "fast to the red house by the blue river.\n")


def write_idx(path, magic, dims, payload):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims))
        f.write(payload)


def write_idx_dataset(directory, rng, train=96, test=32, side=4, classes=3):
    """A tiny IDX data set (the layout of MNIST): side x side images, labels 0..classes-1."""
    directory.mkdir()
    for prefix, n in (("train", train), ("t10k", test)):
        labels = bytes(rng.randrange(classes) for _ in range(n))
        # Each class brightens its own band of pixels, so a model can learn something.
        pixels = bytearray()
        for label in labels:
            for p in range(side * side):
                pixels.append(min(255, rng.randrange(64) + (160 if p % classes == label else 0)))
        write_idx(directory / f"{prefix}-images-idx3-ubyte", 0x803, (n, side, side), pixels)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", 0x801, (n,), labels)


def run_cli(argv, stdin=None, timeout=TIMEOUT_S):
    """Runs fff with argv (str or bytes items); a Result with the child's own peak RSS
    (os.wait4's ru_maxrss, in KB on Linux). A child still running after `timeout` is killed."""

    def cap():
        if not SANITIZED:
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))

    full = [CLI, *argv]
    start = time.monotonic()
    proc = subprocess.Popen(full,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=cap)
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()))
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    if stdin is not None:
        def feed():
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except OSError:  # the command stopped reading: fine
                pass
        readers.append(threading.Thread(target=feed))
    for t in readers:
        t.start()
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # so that Popen does not wait again
    for t in readers:
        t.join()
    return Result(returncode=proc.returncode, stdout=b"".join(out), stderr=b"".join(err),
                  seconds=time.monotonic() - start, rss_kb=usage.ru_maxrss,
                  timed_out=timed_out.is_set(), argv=[os.fsdecode(a) for a in full])


def must_run(argv):
    r = run_cli(argv, timeout=120)
    assert r.returncode == 0, f"{' '.join(r.argv)} failed:\n{r.stderr.decode(errors='replace')}"
    return r


# ---------------------------------------------------------------------------- the cases

# The fff file kinds, each made valid in the fixture.
# bert_mlm: an UltraFastBERT-style crammed encoder with neuron-FFF blocks and an MLM head, the
# kind fill-mask reads (made by scripts/bert_reference.py and scripts/convert_bert.py, which need
# PyTorch: without it, its cases are skipped).
KINDS = ("classifier", "lm", "bert_dense", "bert_leaf", "bert_mlm")
KIND_LABEL = {"classifier": "classifier", "lm": "LM checkpoint", "bert_dense": "BERT dense",
              "bert_leaf": "BERT leaf-fff", "bert_mlm": "BERT crammed neuron-fff (MLM head)"}
BERTS = ("bert_dense", "bert_leaf", "bert_mlm")

# Each command that reads a model file: argv with "{}" for the file, and the valid kinds.
MODEL_COMMANDS = {
    "info": (["info", "{}"], KINDS),
    "info --json": (["info", "{}", "--json"], KINDS),
    "eval": (["eval", "{}", "--data", "{data}", "--no-compare", "--threads", "1"],
             ("classifier",)),
    "routes": (["routes", "{}", "--data", "{data}", "--threads", "1"], ("classifier",)),
    "lm sample": (["lm", "sample", "{}", "--tokens", "4"], ("lm",)),
    "lm train --resume": (["lm", "train", "--resume", "{}", "--text", "{text}", "--steps", "1000",
                           "--threads", "1"], ("lm",)),
    "bert embed": (["bert", "embed", "{}", "--text", "the cat"], BERTS),
    "bert tokenize": (["bert", "tokenize", "{}", "--text", "the cat"], BERTS),
    # arch bert files have no MLM head: fill-mask refuses them.
    "bert fill-mask": (["bert", "fill-mask", "{}", "--text", "the [MASK] sat"], ("bert_mlm",)),
    "bert convert": (["bert", "convert", "{}", "{out}", "--depth", "1", "--texts", "{text}",
                      "--samples", "32"], ("bert_dense",)),
    "bench bert --model": (["bench", "bert", "--model", "{}", "--python", "none", "--repeats", "1",
                            "--batches", "1", "--threads", "1", "--seq", "4"],
                           BERTS),
}
if SERVE:
    MODEL_COMMANDS["serve"] = (["serve", "{}", "--port", "0"], BERTS)

# Files that no command can read as a model (or as anything).
BAD_FILES = {
    "missing": "missing.safetensors",
    "directory": "directory.safetensors",
    "empty": "empty.safetensors",
    "garbage (64 KB random)": "garbage.safetensors",
    "header length 2^63": "huge_header_len.safetensors",
    "header length past the end": "long_header_len.safetensors",
    "header length 0": "zero_header_len.safetensors",
    "JSON header not an object": "header_array.safetensors",
    "tensor offsets past the end": "offsets_past_end.safetensors",
    "huge tensor shape": "huge_shape.safetensors",
}


def sub(argv, path):
    return [path if a == "{}" else a for a in argv]


def file_cases():
    """Every model-reading command given each bad file."""
    cases = []
    for command, (argv, _) in MODEL_COMMANDS.items():
        for what, key in BAD_FILES.items():
            cases.append(Case(command, f"model file {what}", sub(argv, "{" + key + "}"),
                              ("{" + key + "}",)))
    # The other file arguments of each command.
    text_files = {"missing": "missing.txt", "directory": "directory.safetensors",
                  "empty": "empty.safetensors"}
    for what, key in text_files.items():
        k = "{" + key + "}"
        # lm train reads a directory of text files: the hostile one is an empty directory.
        lm_text = "{emptydir}" if what == "directory" else k
        for command, flag, argv, named in (
                ("bert embed", "--file", ["bert", "embed", "{bert_dense}", "--file", k], k),
                ("bert tokenize", "--file", ["bert", "tokenize", "{bert_dense}", "--file", k], k),
                ("bert embed", "--vocab", ["bert", "embed", "{bert_dense}", "--text", "x",
                                           "--vocab", k], k),
                ("bert convert", "--texts", ["bert", "convert", "{bert_dense}", "{out}",
                                             "--depth", "1", "--texts", k], k),
                ("lm train", "--text", ["lm", "train", "--text", lm_text, "--steps", "1",
                                        "--threads", "1"], lm_text),
        ):
            cases.append(Case(command, f"{flag} {what}", argv, (named,)))
    # A vocabulary of garbage bytes: the tokenizer reads it, whatever it says; the model's own
    # vocabulary size then decides (here: more tokens than the model has).
    cases.append(Case("bert embed", "--vocab garbage (64 KB random)",
                      ["bert", "embed", "{bert_dense}", "--text", "x", "--vocab",
                       "{garbage.safetensors}"], ("{garbage.safetensors}",)))
    # Data directories of train and eval.
    data_dirs = {
        "missing": "missing_data",
        "a file, not a directory": "empty.safetensors",
        "empty directory": "emptydir",
        "empty IDX files": "data_empty_files",
        "garbage IDX files": "data_garbage",
        "IDX images truncated": "data_truncated",
        "IDX counts disagree": "data_mismatch",
        "IDX 0 images of huge dimensions": "data_huge_dims",
        "IDX huge image count": "data_huge_count",
        "CIFAR batch not a record multiple": "data_cifar_bad",
    }
    for what, key in data_dirs.items():
        k = "{" + key + "}"
        cases.append(Case("train", f"--data {what}",
                          ["train", "--data", k, "--epochs", "1", "--no-compare", "--threads",
                           "1", "--width", "8", "--leaf-width", "2"], (k,)))
        cases.append(Case("eval", f"--data {what}",
                          ["eval", "{classifier}", "--data", k, "--no-compare", "--threads", "1"],
                          (k,)))
        cases.append(Case("routes", f"--data {what}",
                          ["routes", "{classifier}", "--data", k, "--threads", "1"], (k,)))
    # Outputs that cannot be written.
    for command, argv, flag in (
            ("train", ["train", "--data", "{data}", "--epochs", "1", "--no-compare", "--threads",
                       "1", "--width", "8", "--leaf-width", "2", "--save"], "--save"),
            ("lm train", ["lm", "train", "--text", "{text}", "--steps", "1", "--threads", "1",
                          "--dim", "8", "--layers", "1", "--width", "8", "--leaf-width", "4",
                          "--save"], "--save"),
            ("bert embed", ["bert", "embed", "{bert_dense}", "--text", "x", "--output"],
             "--output"),
            ("bert convert", ["bert", "convert", "{bert_dense}"], "OUT"),
            ("routes", ["routes", "{classifier}", "--data", "{data}", "--plot"], "--plot"),
            ("routes", ["routes", "{classifier}", "--data", "{data}", "--images"], "--images"),
    ):
        tail = ["--depth", "1", "--texts", "{text}", "--samples", "32"] \
            if command == "bert convert" else []
        for what, target in (("a directory", "{directory.safetensors}"),
                             ("in a missing directory", "{missing_data}/x.safetensors")):
            cases.append(Case(command, f"{flag} {what}", argv + [target] + tail,
                              (target, "{missing_data}", "{directory.safetensors}")))
    return cases


def truncation_offsets(size, header_end, count=40):
    """About `count` offsets in [0, size): every byte of the 8-byte length, spread over the JSON
    header, and spread over the data."""
    offsets = set(range(0, 9)) | {header_end - 1, header_end, header_end + 1, size - 1}
    n_header = count // 3
    offsets |= {8 + (header_end - 8) * i // n_header for i in range(1, n_header)}
    n_data = count - len(offsets)
    offsets |= {header_end + (size - header_end) * i // max(n_data, 1) for i in range(1, n_data)}
    return sorted(o for o in offsets if 0 <= o < size)


# The command each kind is used by (besides info), with "{}" for the file.
KIND_COMMAND = {
    "classifier": ("eval", MODEL_COMMANDS["eval"][0]),
    "lm": ("lm sample", MODEL_COMMANDS["lm sample"][0]),
    "bert_dense": ("bert embed", MODEL_COMMANDS["bert embed"][0]),
    "bert_leaf": ("bert embed", MODEL_COMMANDS["bert embed"][0]),
    "bert_mlm": ("bert fill-mask", MODEL_COMMANDS["bert fill-mask"][0]),
}


def truncation_cases(files):
    """Each valid model cut at ~40 points, given to info and to the command of its kind."""
    cases = []
    for kind in KINDS:
        if kind not in files.sizes:
            continue
        size, header_end = files.sizes[kind]
        for off in truncation_offsets(size, header_end):
            key = f"cut_{kind}_{off}"
            files.cuts[key] = (kind, off)
            where = ("length" if off < 8 else "header" if off < header_end else "data")
            for command, argv in (("info", ["info", "{}"]), KIND_COMMAND[kind]):
                cases.append(Case(command, f"{KIND_LABEL[kind]} cut at {off} of {size} ({where})",
                                  sub(argv, "{" + key + "}"), ("{" + key + "}",)))
        # The whole data area NaN, and one value infinite: the loaders check every value.
        for what in ("nan", "inf"):
            key = f"{what}_{kind}"
            for command, argv in (("info", ["info", "{}"]), KIND_COMMAND[kind]):
                cases.append(Case(command, f"{KIND_LABEL[kind]} with {what} weights",
                                  sub(argv, "{" + key + "}"), ("{" + key + "}",)))
    return cases


def wrong_kind_cases():
    """Every model kind given to every command that takes a model but not that kind."""
    cases = []
    for command, (argv, valid) in MODEL_COMMANDS.items():
        if command.startswith("info"):
            continue  # info reads every kind: see test_info_shows_every_kind
        for kind in KINDS:
            if kind in valid:
                continue
            cases.append(Case(command, f"a {KIND_LABEL[kind]} file", sub(argv, "{" + kind + "}"),
                              ("{" + kind + "}",)))
    return cases


# Absurd flag values per command: (base argv, flag, values). Each must be refused, naming the
# flag. The base command lines are valid and quick.
TRAIN = ["train", "--data", "{data}", "--epochs", "1", "--no-compare", "--threads", "1"]
LM_TRAIN_NO_TEXT = ["lm", "train", "--steps", "1", "--threads", "1", "--dim", "8", "--layers",
                    "1", "--width", "8", "--leaf-width", "4", "--seq", "8", "--batch", "2"]
LM_TRAIN = LM_TRAIN_NO_TEXT + ["--text", "{text}"]
BENCH = ["bench", "--min-seconds", "0.01", "--dim", "8", "--trees", "1", "--depth", "2",
         "--batch", "1", "--dense-width", "8"]
BENCH_BERT = ["bench", "bert", "--python", "none", "--layers", "1", "--hidden", "8", "--heads",
              "2", "--seq", "4", "--batches", "1", "--threads", "1", "--trees", "1", "--depth",
              "1", "--dense-width", "8", "--repeats", "1"]
EMBED = ["bert", "embed", "{bert_dense}", "--text", "the cat"]
TOKENIZE = ["bert", "tokenize", "{bert_dense}", "--text", "the cat"]
FILL = ["bert", "fill-mask", "{bert_mlm}", "--text", "the [MASK]"]
CONVERT = ["bert", "convert", "{bert_dense}", "{out}", "--texts", "{text}", "--samples", "32",
           "--depth", "1"]
SAMPLE = ["lm", "sample", "{lm}", "--tokens", "4"]
EVAL = ["eval", "{classifier}", "--data", "{data}", "--no-compare", "--threads", "1"]
ROUTES = ["routes", "{classifier}", "--data", "{data}", "--threads", "1"]
SERVE_ARGV = ["serve", "{bert_dense}", "--port", "0"]

HUGE = "1000000000000"  # 1e12
NEG = "-1"
THREADS = ("0", "-1", "10000")
FLOATS = ("nan", "inf", "-inf", "-1")

ABSURD = [
    ("train", TRAIN, [("--width", ("0", NEG, HUGE, "1e12")), ("--leaf-width", ("0", NEG, HUGE)),
                      ("--depth", ("64", NEG, "25")), ("--epochs", ("0", NEG)),
                      ("--batch", ("0", NEG)), ("--patience", ("0",)), ("--lr", FLOATS + ("0",)),
                      ("--momentum", ("nan", "1", NEG)), ("--hardening", ("nan", "inf", NEG)),
                      ("--region-leak", ("nan", "0.9", NEG)),
                      ("--val-fraction", ("nan", "1", NEG)), ("--limit", (NEG,)),
                      ("--threads", THREADS), ("--bench-repeats", ("0",)),
                      ("--seed", (NEG, "abc")), ("--model", ("bogus",)),
                      ("--activation", ("bogus",)), ("--optimizer", ("bogus",))]),
    ("train", TRAIN + ["--model", "ff"], "--model ff", [("--width", (HUGE, "4294967296"))]),
    ("train", TRAIN + ["--model", "neuron-fff"], "--model neuron-fff",
     [("--trees", (HUGE, "1000000000")), ("--depth", ("64", NEG))]),
    ("eval", EVAL, [("--threads", THREADS), ("--limit", (NEG,)), ("--bench-repeats", ("0",))]),
    ("routes", ROUTES, [("--threads", THREADS), ("--limit", (NEG, "abc"))]),
    ("bench", BENCH, [("--dim", ("0", NEG, HUGE)), ("--trees", ("0", NEG, HUGE)),
                      ("--depth", ("64", NEG, "25")), ("--batch", ("0", NEG, HUGE)),
                      ("--dense-width", ("0", HUGE)), ("--layers", ("0", HUGE)),
                      ("--threads", THREADS), ("--min-seconds", ("nan", "inf", "0", NEG))]),
    ("lm train", LM_TRAIN, [("--dim", ("0", NEG, HUGE)), ("--layers", ("0", NEG, HUGE)),
                            ("--window", ("0", "65")), ("--width", ("0", NEG, HUGE)),
                            ("--leaf-width", ("0", HUGE)), ("--seq", ("0", NEG, HUGE)),
                            ("--batch", ("0", NEG, HUGE)), ("--steps", ("0", NEG)),
                            ("--lr", FLOATS + ("0",)), ("--hardening", ("nan", NEG)),
                            ("--harden-after", ("nan", "2", NEG)), ("--eval-every", ("0",)),
                            ("--checkpoint-every", ("0",)), ("--threads", THREADS),
                            ("--val-fraction", ("nan", "0", "1")), ("--mixer", ("bogus",)),
                            ("--scan", ("bogus",))]),
    ("lm train", LM_TRAIN_NO_TEXT[:-8] + ["--text", "{text}", "--mixer", "neuron-fff"],
     "--mixer neuron-fff",
     [("--depth", ("64", "21", NEG)), ("--trees", ("0", HUGE, "100000000"))]),
    ("lm sample", SAMPLE, [("--tokens", ("-5", HUGE)), ("--temperature", ("nan", "inf", NEG)),
                           ("--threads", THREADS)]),
    ("bert embed", EMBED, [("--max-len", ("1", NEG)), ("--batch", ("0", NEG)),
                           ("--threads", THREADS), ("--fff-weights", ("bogus",)),
                           ("--format", ("bogus",)), ("--normalize", ("bogus",))]),
    ("bert embed", EMBED + ["--format", "binary"], "--format binary", [("--output", ("",))]),
    ("bert tokenize", TOKENIZE, [("--max-len", ("1", NEG)), ("--threads", THREADS)]),
    ("bert fill-mask", FILL, [("--top-k", ("0", NEG)), ("--threads", THREADS),
                              ("--max-len", ("1", NEG))]),
    ("bert convert", CONVERT, [("--depth", ("64", NEG, "0", "30")), ("--samples", ("0", NEG)),
                               ("--distill-steps", (NEG,)), ("--distill-batch", ("0", NEG)),
                               ("--distill-lr", FLOATS), ("--hardening", ("nan", NEG)),
                               ("--threads", THREADS), ("--to", ("bogus",)),
                               ("--distill-mode", ("bogus",))]),
    ("bench bert", BENCH_BERT, [("--layers", ("0", NEG, HUGE)), ("--hidden", ("0", NEG, HUGE)),
                                ("--heads", ("0", NEG, "3")), ("--seq", ("0", NEG, HUGE)),
                                ("--batches", ("0", NEG, HUGE)), ("--threads", THREADS),
                                ("--trees", ("0", NEG, HUGE)), ("--depth", ("64", NEG)),
                                ("--dense-width", ("0", NEG, HUGE)), ("--repeats", ("0", NEG))]),
    ("bench bert --model", MODEL_COMMANDS["bench bert --model"][0],
     [("--seq", ("0", HUGE)), ("--threads", THREADS), ("--repeats", ("0",))]),
]
if SERVE:
    ABSURD.append(("serve", SERVE_ARGV,
                   [("--port", (NEG, "65536")), ("--threads", (NEG, "10000")),
                    ("--http-threads", ("0", "100000")), ("--max-batch", ("0", NEG)),
                    ("--batch-wait-ms", ("nan", "inf", NEG)), ("--max-queue", ("0",)),
                    ("--max-body-bytes", ("0", NEG)), ("--max-inputs", ("0",)),
                    ("--max-len", ("1", NEG)), ("--host", ("not-a-host.invalid",))]))


def with_flag(base, *flag_values):
    """base with each flag set to its value: replaced where base gives the flag (CLI11 refuses a
    flag given twice, which would hide the value), else appended."""
    argv = list(base)
    for flag, value in zip(flag_values[::2], flag_values[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def absurd_cases():
    cases = []
    for entry in ABSURD:
        command, base, context, flags = entry if len(entry) == 4 else (*entry[:2], "", entry[2])
        for flag, values in flags:
            for v in values:
                name = f"{flag} {v!r}" if v == "" else f"{flag} {v}"
                cases.append(Case(command, f"{name} (with {context})" if context else name,
                                  with_flag(sub(base, "{bert_dense}"), flag, v), (flag,)))
    # The largest 64-bit values, and one past them.
    for v in ("9223372036854775807", "9223372036854775808"):
        cases.append(Case("train", f"--width {v}", with_flag(TRAIN, "--width", v), ("--width",)))
        cases.append(Case("lm train", f"--width {v}", with_flag(LM_TRAIN, "--width", v),
                          ("--width",)))
        cases.append(Case("lm train", f"--leaf-width 1 --width {v}",
                          with_flag(LM_TRAIN, "--leaf-width", "1", "--width", v), ("--width",)))
        cases.append(Case("bench", f"--batch {v}", with_flag(BENCH, "--batch", v), ("--batch",)))
    cases.append(Case("bert embed", "--fff-weights half (a dense model)",
                      EMBED + ["--fff-weights", "half"], ("--fff-weights",)))
    # Data whose rows do not fit the model: 25 features for a 16-input classifier.
    cases.append(Case("eval", "--data of 25 features for a 16-feature model",
                      ["eval", "{classifier}", "--data", "{data_25}", "--no-compare", "--threads",
                       "1"], ("{data_25}",)))
    cases.append(Case("routes", "--data of 25 features for a 16-feature model",
                      ["routes", "{classifier}", "--data", "{data_25}", "--threads", "1"],
                      ("{data_25}",)))
    # Flags given to a command whose model they do not fit.
    cases.append(Case("train", "--trees with --model ff", TRAIN + ["--model", "ff", "--trees",
                                                                   "2"], ("--trees",)))
    cases.append(Case("train", "--width not leaf x 2^depth",
                      TRAIN + ["--width", "12", "--leaf-width", "8"], ("--width",)))
    return cases


def json_lines(n=None, floats=False):
    """A check: stdout is n lines (any number if None), each a JSON array (of numbers)."""

    def check(stdout):
        lines = stdout.decode("utf-8").splitlines()
        if n is not None and len(lines) != n:
            return f"{len(lines)} lines on stdout, expected {n}"
        for line in lines:
            v = json.loads(line)
            if not isinstance(v, list) or (floats and not all(isinstance(x, float) for x in v)):
                return f"not a JSON array of numbers: {line[:80]}"
        return None

    return check


def json_object(keys):
    """A check: stdout is one JSON object with these keys, their numbers finite."""

    def check(stdout):
        v = json.loads(stdout.decode("utf-8"))
        missing = [k for k in keys if k not in v]
        if missing:
            return f"JSON object without {missing}"
        bad = [k for k in keys if isinstance(v[k], float) and not math.isfinite(v[k])]
        return f"non-finite {bad}" if bad else None

    return check


def starts_with(prefix):
    prefix = os.fsencode(prefix)

    def check(stdout):
        return None if stdout.startswith(prefix) else "stdout does not start with the prompt"
    return check


def garbage_cases(g):
    """Random bytes, invalid UTF-8 and NULs where commands read text: they handle them (exit 0,
    well-formed output), or refuse them clearly."""
    cases = []
    # argv cannot carry NUL, nor more than 128 KB per argument (Linux): 100 KB of random non-NUL
    # bytes, and invalid UTF-8 sequences.
    texts = {"100 KB random bytes": g["argv_random"], "invalid UTF-8": g["argv_invalid_utf8"],
             "control characters": g["argv_controls"]}
    for what, text in texts.items():
        cases.append(Case("bert embed", f"--text {what}", EMBED[:3] + ["--text", text],
                          (), ok=True, check=json_lines(1, floats=True)))
        cases.append(Case("bert tokenize", f"--text {what}", TOKENIZE[:3] + ["--text", text],
                          (), ok=True, check=json_lines(1)))
        cases.append(Case("lm sample", f"--prompt {what}",
                          SAMPLE + ["--prompt", text], (), ok=True, check=starts_with(text)))
        # No [MASK] in garbage: refused, naming --text; with one, predictions.
        cases.append(Case("bert fill-mask", f"--text {what}", FILL[:3] + ["--text", text],
                          ("--text",)))
        masked = (b"[MASK] " + text) if isinstance(text, bytes) else "[MASK] " + text
        cases.append(Case("bert fill-mask", f"--text {what} + [MASK]",
                          FILL[:3] + ["--json", "--text", masked], (), ok=True,
                          check=json_object(["masks"])))
    for what, key in (("1 MB random bytes", "garbage_1m"), ("NULs and invalid UTF-8",
                                                            "garbage_nul")):
        cases.append(Case("bert embed", f"--file of {what}",
                          EMBED[:3] + ["--file", "{" + key + "}"], (), ok=True,
                          check=json_lines(floats=True)))
        cases.append(Case("bert embed", f"stdin of {what}", EMBED[:3] + ["--file", "-"], (),
                          stdin=key, ok=True, check=json_lines(floats=True)))
        cases.append(Case("bert tokenize", f"--file of {what}",
                          TOKENIZE[:3] + ["--file", "{" + key + "}"], (), ok=True,
                          check=json_lines()))
        cases.append(Case("bert tokenize", f"stdin of {what}", TOKENIZE[:3] + ["--file", "-"],
                          (), stdin=key, ok=True, check=json_lines()))
        cases.append(Case("lm train", f"--text of {what}",
                          LM_TRAIN_NO_TEXT + ["--json", "--text", "{" + key + "}"], (), ok=True,
                          check=json_object(["val_bpc", "steps"])))
        cases.append(Case("bert convert", f"--texts of {what}",
                          ["bert", "convert", "{bert_dense}", "{out}", "--texts", "{" + key + "}",
                           "--samples", "32", "--depth", "1"], (), ok=True))
    # Careless but valid: a --max-len beyond the model's positions is the model's limit.
    cases.append(Case("bert embed", "--max-len 1e12 (above the model's positions)",
                      EMBED + ["--max-len", HUGE], (), ok=True, check=json_lines(1, floats=True)))
    cases.append(Case("bert fill-mask", "--top-k 1e12 (more than the vocabulary)",
                      FILL + ["--json", "--top-k", HUGE], (), ok=True,
                      check=json_object(["masks"])))
    # A [MASK] past the positions the model reads: refused, saying where the text was cut.
    cases.append(Case("bert fill-mask", "--text 100 KB random bytes + [MASK] at the end",
                      FILL[:3] + ["--text", g["argv_random"] + b" [MASK]"], ("--max-len",)))
    # File names that are not UTF-8 (Latin-1): in --json output, U+FFFD in their place.
    cases.append(Case("lm train", "--save to a Latin-1 file name, --json",
                      LM_TRAIN + ["--json", "--save", b"{tmp}/caf\xe9.safetensors"], (),
                      ok=True, check=json_object(["checkpoint", "val_bpc"])))
    cases.append(Case("bert convert", "OUT a Latin-1 file name, --json",
                      CONVERT[:3] + [b"{tmp}/na\xefve.safetensors"] + CONVERT[4:] + ["--json"],
                      (), ok=True, check=json_object(["out", "layers"])))
    # Empty texts: nothing but [CLS] [SEP] to encode; an empty prompt starts from a newline.
    cases.append(Case("bert embed", "--text ''", EMBED[:3] + ["--text", ""], (), ok=True,
                      check=json_lines(1, floats=True)))
    cases.append(Case("bert tokenize", "--text ''", TOKENIZE[:3] + ["--text", ""], (), ok=True,
                      check=json_lines(1)))
    cases.append(Case("lm sample", "--prompt ''", SAMPLE + ["--prompt", ""], (), ok=True))
    cases.append(Case("bert fill-mask", "--fff-weights half (a neuron-fff model)",
                      FILL + ["--json", "--fff-weights", "half"], (), ok=True,
                      check=json_object(["masks"])))
    return cases


# ---------------------------------------------------------------------------- fixture

class Files(dict):
    """Paths by key; sizes[kind] = (file size, end of the JSON header); cuts: truncated copies."""

    def __init__(self):
        super().__init__()
        self.sizes = {}
        self.cuts = {}
        self.no_mlm = ""


def safetensors_bytes(header, data=b""):
    head = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(head)) + head + data


def make_files(tmp):
    rng = random.Random(18)
    f = Files()

    def path(key, name=None):
        f[key] = str(tmp / (name or key))
        return Path(f[key])

    f["tmp"] = str(tmp)
    write_idx_dataset(path("data"), rng)
    write_idx_dataset(path("data_25"), rng, side=5)
    path("text", "text.txt").write_text(TEXT * 60)
    path("out", "out.safetensors")
    path("missing.safetensors")
    path("missing.txt")
    path("missing_data")
    path("directory.safetensors").mkdir()
    path("emptydir").mkdir()
    path("empty.safetensors").write_bytes(b"")
    path("garbage.safetensors").write_bytes(rng.randbytes(64 << 10))
    path("huge_header_len.safetensors").write_bytes(struct.pack("<Q", 1 << 63) + b"{}")
    path("long_header_len.safetensors").write_bytes(struct.pack("<Q", 4096) + b'{"a": 1}')
    path("zero_header_len.safetensors").write_bytes(struct.pack("<Q", 0) + b"{}")
    path("header_array.safetensors").write_bytes(safetensors_bytes([1, 2, 3]))
    path("offsets_past_end.safetensors").write_bytes(safetensors_bytes(
        {"__metadata__": {"format": "fff-classifier"},
         "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}, b"\0" * 16))
    path("huge_shape.safetensors").write_bytes(safetensors_bytes(
        {"__metadata__": {"format": "fff-bert"},
         "w": {"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 16]}},
        b"\0" * 16))
    # Data directories, each wrong in one way.
    for key in ("data_empty_files", "data_garbage", "data_truncated", "data_mismatch",
                "data_huge_dims", "data_huge_count", "data_cifar_bad"):
        path(key).mkdir()
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    good = Path(f["data"])
    for n in names:
        (Path(f["data_empty_files"]) / n).write_bytes(b"")
        (Path(f["data_garbage"]) / n).write_bytes(rng.randbytes(4096))
        for key in ("data_truncated", "data_mismatch", "data_huge_dims", "data_huge_count"):
            (Path(f[key]) / n).write_bytes((good / n).read_bytes())
    images = (good / names[0]).read_bytes()
    (Path(f["data_truncated"]) / names[0]).write_bytes(images[: len(images) // 2])
    labels = (good / names[1]).read_bytes()
    (Path(f["data_mismatch"]) / names[1]).write_bytes(labels[:-10])  # fewer labels than images
    write_idx(Path(f["data_huge_dims"]) / names[0], 0x803, (0, 0xFFFFFFFF, 0xFFFFFFFF), b"")
    write_idx(Path(f["data_huge_count"]) / names[0], 0x803, (0xFFFFFFFF, 0xFFFF, 0xFFFF),
              b"\0" * 1024)
    (Path(f["data_cifar_bad"]) / "data_batch_1.bin").write_bytes(b"\1" * 5000)

    # Garbage text.
    f.garbage = {
        "garbage_1m": rng.randbytes(1 << 20),
        "garbage_nul": (b"\0\0abc\xff\xfe\xc3\x28 \xe2\x82 [MASK] \xf0\x28\x8c\x28\n" * 200
                        + b"\0" * 1000 + b"\n\n\n"),
        "argv_random": bytes(b or 1 for b in rng.randbytes(100 << 10)),
        "argv_invalid_utf8": b"caf\xe9 \xff\xfe \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 na\xefve",
        "argv_controls": "".join(chr(c) for c in range(1, 32)) + "\u202e\ufeff\U0010ffff",
    }
    for key in ("garbage_1m", "garbage_nul"):
        path(key).write_bytes(f.garbage[key])

    # The valid models, made by the CLI itself (and bert_files.py).
    must_run(["train", "--data", f["data"], "--model", "leaf-fff", "--width", "8", "--leaf-width",
              "2", "--epochs", "2", "--batch", "16", "--no-compare", "--threads", "1", "--save",
              str(path("classifier", "classifier.safetensors"))])
    must_run(["lm", "train", "--text", f["text"], "--dim", "8", "--layers", "1", "--width", "8",
              "--leaf-width", "4", "--seq", "8", "--batch", "2", "--steps", "2", "--eval-every",
              "1", "--threads", "1", "--save", str(path("lm", "lm.safetensors"))])
    write_random_bert(path("bert_dense", "bert_dense.safetensors"))
    must_run(["bert", "convert", f["bert_dense"], str(path("bert_leaf", "bert_leaf.safetensors")),
              "--depth", "1", "--texts", f["text"], "--samples", "64"])
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    ckpt = tmp / "mlm_checkpoint"
    made = subprocess.run(
        [sys.executable, str(scripts / "bert_reference.py"), "--out", str(ckpt), "--ff", "fff",
         "--hidden", "16", "--heads", "2", "--layers", "1", "--trees", "2", "--depth", "2",
         "--seed", "3"], capture_output=True, text=True)
    if made.returncode == 0:
        made = subprocess.run([sys.executable, str(scripts / "convert_bert.py"), str(ckpt),
                               str(tmp / "bert_mlm.safetensors")], capture_output=True, text=True)
    if made.returncode == 0:
        f["bert_mlm"] = str(tmp / "bert_mlm.safetensors")
    else:
        f.no_mlm = f"no MLM model (scripts/bert_reference.py needs PyTorch): {made.stderr[-300:]}"
    for kind in KINDS:
        if kind not in f:
            continue
        data = Path(f[kind]).read_bytes()
        header_end = 8 + struct.unpack("<Q", data[:8])[0]
        f.sizes[kind] = (len(data), header_end)
    return f


def materialise(f):
    """Writes the truncated copies named in f.cuts, and copies of each model with non-finite
    weights."""
    for key, (kind, off) in f.cuts.items():
        p = Path(f[kind]).parent / f"{key}.safetensors"
        p.write_bytes(Path(f[kind]).read_bytes()[:off])
        f[key] = str(p)
    for kind in KINDS:
        if kind not in f:
            continue
        data = bytearray(Path(f[kind]).read_bytes())
        start = 8 + struct.unpack("<Q", data[:8])[0]
        nan = bytearray(data)
        nan[start:] = struct.pack("<f", float("nan")) * ((len(data) - start) // 4)
        inf = bytearray(data)
        middle = start + (len(data) - start) // 8 * 4  # a float in the middle of the data
        inf[middle:middle + 4] = struct.pack("<f", float("inf"))
        for what, content in (("nan", nan), ("inf", inf)):
            p = Path(f[kind]).parent / f"{what}_{kind}.safetensors"
            p.write_bytes(bytes(content))
            f[f"{what}_{kind}"] = str(p)


def fill(arg, f):
    if isinstance(arg, bytes):
        return arg.replace(b"{tmp}", os.fsencode(f["tmp"]))
    for key, value in f.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def problems(case, r, f):
    """What is wrong with a case's result (empty: it passed)."""
    out = []
    err = r.stderr.decode("utf-8", errors="replace")
    if r.timed_out:
        out.append(f"no exit within {TIMEOUT_S} s")
    if r.rss_kb >= RSS_LIMIT_KB:
        out.append(f"peak RSS {r.rss_kb / 1024:.0f} MB")
    for bad in FORBIDDEN:
        if bad in err:
            out.append(f"stderr has {bad!r}")
    if r.returncode < 0:
        out.append(f"killed by signal {-r.returncode}")
    if case.ok:
        if r.returncode != 0:
            out.append(f"exit {r.returncode}, expected 0: {err.strip()[:300]}")
        elif case.check is not None:
            try:
                msg = case.check(r.stdout)
            except (ValueError, UnicodeDecodeError) as e:
                msg = f"stdout is not well-formed: {e}"
            if msg:
                out.append(msg)
        return out
    if r.returncode == 0:
        out.append("exit 0 for hostile input")
    if not err.strip():
        out.append("nothing on stderr")
    wanted = [fill(n, f) for n in case.names]
    if wanted and not any(w in err for w in wanted):
        out.append(f"stderr names none of {wanted}: {err.strip()[:300]}")
    return out


def message(r):
    """The line that says what happened: for a failure, the error (the last line of stderr, after
    any progress lines, CLI11's "Run with --help" hint aside); for a success, stdout's first."""
    if r.returncode == 0:
        lines = r.stdout.decode("utf-8", errors="replace").strip().splitlines()
        return lines[0] if lines else ""
    lines = [line for line in r.stderr.decode("utf-8", errors="replace").strip().splitlines()
             if line.strip() and line.strip() != "Run with --help for more information."]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------- the run

def all_cases():
    return file_cases() + wrong_kind_cases() + absurd_cases()


RUN_SKIPS = {}  # case id -> why it was not run

# Collected at import with placeholder files (the truncation and garbage cases need the valid
# models' sizes and the garbage bytes, made by the fixture; they are tested by their own tests).
STATIC_CASES = all_cases()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def run(files):
    """Runs every case two at a time; {case id: (case, result, problems)}."""
    f = files
    cases = list(STATIC_CASES) + truncation_cases(f) + garbage_cases(f.garbage)
    materialise(f)
    results, skipped = {}, {}

    def one(case):
        if f.no_mlm and any("{bert_mlm}" in a or "_bert_mlm" in a for a in case.argv
                            if isinstance(a, str)):
            return case, None, []
        stdin = f.garbage[case.stdin] if case.stdin else None
        argv = [fill(a, f) for a in case.argv]
        r = run_cli(argv, stdin=stdin)
        return case, r, problems(case, r, f)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for case, r, p in pool.map(one, cases):
            assert case.id not in results, f"two cases named {case.id}"
            if r is not None:
                results[case.id] = (case, r, p)
            else:
                skipped[case.id] = f.no_mlm
    wall = time.monotonic() - start
    table = os.environ.get("FFF_HOSTILE_TABLE")
    if table:
        write_table(Path(table), results, f, wall)
    RUN_SKIPS.update(skipped)
    return results


def md(s):
    """s for a Markdown table cell: '|' escaped, unprintable characters as \\xNN (or \\uNNNN),
    and backticks dropped (a cell of garbage must not open a code span)."""
    s = "".join(c if c.isprintable()
                else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in s)
    return s.replace("|", "\\|").replace("`", "'")


def redact(s, f):
    """Paths under the temporary directory shown by their file names."""
    for value in sorted(f.values(), key=len, reverse=True):
        s = s.replace(value, Path(value).name)
    return s


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def crashed(r):
    """A signal, a hang or an allocation above the limit."""
    return r.returncode < 0 or r.timed_out or r.rss_kb >= RSS_LIMIT_KB


def write_table(path, results, f, wall):
    by_command = {}
    for case, r, p in results.values():
        by_command.setdefault(case.command, []).append((case, r, p))
    lines = [
        "# Hostile inputs to the fff CLI: every case",
        "",
        f"Made by `FFF_HOSTILE_TABLE=$PWD/docs/results/hostile-inputs.md ctest --test-dir build -R "
        f"cli.hostile` "
        f"(tests/apps/test_hostile.py) on {cpu_name()}, {os.cpu_count()} cores; "
        f"{len(results)} cases in {wall:.0f} s, two at a time. Expected: `fail` (exit > 0, "
        "a message naming the file or flag) or `ok` (careless input the command handles: exit "
        "0, well-formed output). Peak RSS is the child's own (wait4's ru_maxrss). The message is "
        "the error (stderr's last line, CLI11's \"Run with --help\" hint aside) or, for a "
        "success, stdout's first line, cut at 160 characters, with the temporary directory "
        "dropped from paths. Exit 105-114 are CLI11's parse errors (e.g. 105: a validator).",
        "",
        "| command | cases | expected ok | crashes / hangs / > 2 GB | failed checks | "
        "max RSS (MB) | max time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for command, rows in sorted(by_command.items()):
        crashes = sum(1 for _, r, _ in rows if crashed(r))
        lines.append(f"| {command} | {len(rows)} | {sum(c.ok for c, _, _ in rows)} | {crashes} | "
                     f"{sum(1 for _, _, p in rows if p)} | "
                     f"{max(r.rss_kb for _, r, _ in rows) / 1024:.0f} | "
                     f"{max(r.seconds for _, r, _ in rows):.2f} |")
    total = [x for rows in by_command.values() for x in rows]
    lines.append(f"| **all** | {len(total)} | {sum(c.ok for c, _, _ in total)} | "
                 f"{sum(1 for _, r, _ in total if crashed(r))} | "
                 f"{sum(1 for _, _, p in total if p)} | "
                 f"{max(r.rss_kb for _, r, _ in total) / 1024:.0f} | "
                 f"{max(r.seconds for _, r, _ in total):.2f} |")
    for command, rows in sorted(by_command.items()):
        lines += ["", f"## {command}", "",
                  "| case | expected | exit | RSS (MB) | time (s) | message | check |",
                  "|---|---|---:|---:|---:|---|---|"]
        for case, r, p in rows:
            msg = redact(message(r), f)[:160]
            lines.append(f"| {md(case.name)} | {'ok' if case.ok else 'fail'} | {r.returncode} | "
                         f"{r.rss_kb / 1024:.0f} | {r.seconds:.2f} | {md(msg)} | "
                         f"{'pass' if not p else md('; '.join(p))[:200]} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def check_case(run, case_id):
    if case_id not in run:
        pytest.skip(RUN_SKIPS.get(case_id, "not run"))
    case, r, p = run[case_id]
    assert not p, (f"{case.id}: {'; '.join(p)}\n  argv: {' '.join(r.argv)[:400]}\n"
                   f"  exit {r.returncode}, {r.seconds:.2f} s, {r.rss_kb / 1024:.0f} MB RSS\n"
                   f"  stderr: {r.stderr.decode(errors='replace')[-1500:]}")


@pytest.mark.parametrize("case_id", [c.id for c in STATIC_CASES])
def test_case(run, case_id):
    check_case(run, case_id)


def test_truncated_models(run):
    """Each model kind cut at about 40 points, given to info and to its own command."""
    ids = [i for i, (c, _, _) in run.items() if " cut at " in c.name]
    assert len(ids) >= 4 * 2 * 30
    bad = [i for i in ids if run[i][2]]
    for i in bad[:5]:
        check_case(run, i)
    assert not bad, f"{len(bad)} of {len(ids)} truncated-model cases failed"


def test_garbage_text(run):
    """Random bytes, NULs and invalid UTF-8 in --text, --prompt, --file, stdin and corpora."""
    ids = [i for i, (c, _, _) in run.items()
           if i not in {c.id for c in STATIC_CASES} and " cut at " not in c.name]
    assert len(ids) >= 20
    bad = [i for i in ids if run[i][2]]
    for i in bad[:5]:
        check_case(run, i)
    assert not bad


def test_info_shows_every_kind(files):
    """fff info (and --json) describe classifier, LM-checkpoint and BERT files: the kind, the
    shapes that matter and the parameter count, which is the sum of the tensors' sizes."""
    # The format, and fields that show info read the config (the models made in make_files).
    expect = {"classifier": ("fff-classifier", {"model": "leaf-fff", "width": 8, "in": 16}),
              "lm": ("fff-lm", {"mixer": "leaf-fff", "dim": 8, "layers": 1, "step": 2}),
              "bert_dense": ("fff-bert", {"arch": "bert", "ff": "ff", "hidden": 32}),
              "bert_leaf": ("fff-bert", {"arch": "bert", "ff": "leaf-fff", "hidden": 32}),
              "bert_mlm": ("fff-bert", {"arch": "crammed", "ff": "neuron-fff", "hidden": 16})}
    for kind, (fmt, fields) in expect.items():
        if kind not in files:
            continue
        r = run_cli(["info", files[kind], "--json"])
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        info = json.loads(r.stdout)
        assert info["format"] == fmt, info
        assert {k: info[k] for k in fields} == fields, info
        assert info["parameters"] == sum(
            math.prod(shape) for shape in info["tensors"].values()), info
        r = run_cli(["info", files[kind]])
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        text = r.stdout.decode()
        assert files[kind] in text and "parameters" in text, text
