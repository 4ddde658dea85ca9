"""Crash safety of every file fff writes (issue 18, part 5), run by ctest as cli.crash_safety.

- SIGKILL at a random moment: each writing command (`fff train --save`, `fff lm train --save`
  with its periodic checkpoints, `fff bert convert`, `fff bert embed --output`) and each Python
  saver (fff.save, fff.bert.save, scripts/safetensors_io.py) first writes an "old" file, then
  writes the same path with other settings and is killed after a delay drawn uniformly over that
  write's uninterrupted run time, and again, aimed at the write itself, 0-5 ms after the process
  opened its file. Afterwards the path must hold the old file or the completed new one (same
  bytes as an uninterrupted run; an LM checkpoint of the new run must continue, with --resume, to
  exactly the uninterrupted run's final file), load in the commands that use it, and no
  temporary file may be left beside it.
- A full disk (a tmpfs with 64 KiB free), a file size limit (RLIMIT_FSIZE), a read-only
  directory (mode 0555, for user nobody), a directory user nobody cannot reach, and a read-only
  tmpfs: a clear error naming the path and the reason, a non-zero exit, the old file
  byte-identical, no temporary file left.

FFF_CLI names the fff executable; FFF_CRASH_KILLS the uniform kills per writer (default 2),
FFF_CRASH_TARGETED the kills aimed at the write (default 2); FFF_CRASH_SEED the random seed
(default: drawn, and printed so that a failure can be replayed); FFF_CRASH_FROM=0.8 draws the
uniform delays from the last 20% of the run time only.
Mounting a tmpfs and running as nobody need root: those cases skip, saying why, without it. The
Python savers' cases skip when the fff package (PYTHONPATH) or PyTorch is missing."""

import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "python"))
from bert_files import random_sentence, write_random_bert  # noqa: E402

CLI = os.path.abspath(os.environ.get("FFF_CLI", "build/fff"))
# The children run elsewhere (cwd /, some as user nobody): the package path made absolute.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep))
KILLS = int(os.environ.get("FFF_CRASH_KILLS", "2"))
# The kill delays are uniform over [FROM, 1] x the run time: FFF_CRASH_FROM=0.8 aims the kills
# at the end of the run, where the CLI commands write their file (default 0: the whole run).
FROM = float(os.environ.get("FFF_CRASH_FROM", "0"))
# Then FFF_CRASH_TARGETED more kills per writer (default 2) aimed at the write itself: once the
# process has a file open in the target's directory, after 0-5 ms more.
TARGETED = int(os.environ.get("FFF_CRASH_TARGETED", "2"))
SEED = int(os.environ.get("FFF_CRASH_SEED", str(random.SystemRandom().randrange(1 << 31))))
print(f"test_crash_safety: FFF_CRASH_SEED={SEED} FFF_CRASH_KILLS={KILLS} FFF_CRASH_FROM={FROM}",
      file=sys.stderr)
RESULTS = {}  # writer name -> counts, printed at the end (pytest -s, or -rA)


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace",
                          timeout=120, **kw)


def file_hash(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def safetensors_digest(path, ignore_metadata=()):
    """A hash of a safetensors file's tensors and metadata, without the metadata entries that
    record wall-clock time (all else must be the same bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    for key in ignore_metadata:
        header.get("__metadata__", {}).pop(key, None)
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode() + data[8 + n:]).hexdigest()


def leftovers(directory, keep):
    """Entries of `directory` other than `keep`: temporary files a killed writer left."""
    return sorted(set(os.listdir(directory)) - set(keep))


# ---- inputs (small, made here, so that each run takes 0.1-1 s on one thread) ----

def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        for d in array.shape:
            f.write(struct.pack(">I", d))
        f.write(array.tobytes())


def readable_by_all(d):
    """Files under d readable, d and its parents searchable, by user nobody (pytest's temporary
    root is private: 0700)."""
    for p in [d, *d.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    for p in d.parents:
        if str(p) == "/":
            break
        os.chmod(p, os.stat(p).st_mode | 0o005)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """IDX images (28x28, 1000 train / 100 test), a text file, a dense fff-bert model and its
    texts; every file readable by user nobody (the read-only directory cases run as nobody)."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    data = d / "idx"
    data.mkdir()
    for split, n in (("train", 1000), ("t10k", 100)):
        y = rng.integers(0, 10, n)
        x = rng.random((n, 28, 28)) * 60 + y[:, None, None] * 19
        write_idx(data / f"{split}-images-idx3-ubyte", x)
        write_idx(data / f"{split}-labels-idx1-ubyte", y)
    text = d / "text.txt"
    text.write_text("".join(rng.choice(list("abcdefgh ij\n"), 20000)))
    dense = d / "dense.safetensors"
    write_random_bert(str(dense), hidden=64, layers=2, heads=4, ff_width=512)
    texts = d / "texts.txt"
    texts.write_text("\n".join(random_sentence(rng) for _ in range(3000)) + "\n")
    short = d / "short.txt"
    short.write_text("\n".join(random_sentence(rng) for _ in range(20)) + "\n")
    readable_by_all(d)
    return {"idx": str(data), "text": str(text), "dense": str(dense), "texts": str(texts),
            "short": str(short)}


# ---- the writing commands ----

class Writer:
    """A command writing one file: argv(variant, path) for variant "old" or "new", load(path)
    runs the commands that read it (an AssertionError if one fails), digest(path) what must
    match an uninterrupted run."""

    def __init__(self, name, argv, load, digest=file_hash, resume=None):
        self.name, self.argv, self.load, self.digest, self.resume = name, argv, load, digest, resume


def check_ok(argv, what):
    r = run(argv)
    assert r.returncode == 0, f"{what}: {' '.join(argv)} exit {r.returncode}: {r.stderr[-2000:]}"
    return r


def info_reads(path):
    """`fff info` on the file, when this fff's info reads its kind (it does for classifier
    files; LM checkpoints and BERT files are part of another piece of issue 18)."""
    r = run([CLI, "info", path])
    if r.returncode != 0 and "not an fff classifier file (format 'fff-" in r.stderr:
        return  # a kind this `fff info` does not show: the commands below load it instead
    assert r.returncode == 0, f"fff info {path}: exit {r.returncode}: {r.stderr}"


def writers(inp):
    def train(variant, path):
        width, seed = ("1024", "1") if variant == "old" else ("2048", "2")
        return [CLI, "train", "--data", inp["idx"], "--model", "leaf-fff", "--width", width,
                "--leaf-width", "8", "--epochs", "2", "--threads", "1", "--no-compare",
                "--seed", seed, "--save", path]

    def train_load(path):
        info_reads(path)
        check_ok([CLI, "eval", path, "--data", inp["idx"], "--threads", "1", "--no-compare"],
                 "fff eval")

    def lm(variant, path):
        seed, steps = ("4", "40") if variant == "old" else ("5", "80")
        return [CLI, "lm", "train", "--text", inp["text"], "--dim", "64", "--width", "1024",
                "--leaf-width", "16", "--seq", "16", "--batch", "4", "--steps", steps,
                "--eval-every", "20", "--checkpoint-every", "10", "--threads", "1",
                "--seed", seed, "--save", path]

    def lm_resume(path, out):
        # The options a checkpoint does not fix, as the new run gave them: the run goes on bit
        # for bit ("resume on the same count to continue bit for bit").
        return [CLI, "lm", "train", "--text", inp["text"], "--steps", "80", "--eval-every", "20",
                "--checkpoint-every", "10", "--threads", "1", "--resume", path, "--save", out]

    def lm_load(path):
        info_reads(path)
        check_ok([CLI, "lm", "sample", path, "--tokens", "8", "--threads", "1"], "fff lm sample")

    def convert(variant, path):
        depth = "2" if variant == "old" else "3"
        return [CLI, "bert", "convert", inp["dense"], path, "--depth", depth, "--texts",
                inp["texts"], "--samples", "2000", "--distill-steps", "30", "--threads", "1"]

    def bert_load(path):
        info_reads(path)
        r = check_ok([CLI, "bert", "embed", path, "--text", "the cat sat", "--threads", "1"],
                     "fff bert embed")
        assert len(json.loads(r.stdout)) == 64

    def embed(variant, path):
        texts = inp["short"] if variant == "old" else inp["texts"]
        return [CLI, "bert", "embed", inp["dense"], "--file", texts, "--format", "binary",
                "--output", path, "--threads", "1"]

    def embed_load(path):
        # The reader of these files is numpy: rows of 64 float32.
        size = os.path.getsize(path)
        assert size in (20 * 64 * 4, 3000 * 64 * 4), f"{path}: {size} bytes"
        assert np.isfinite(np.fromfile(path, dtype="<f4")).all()

    return [
        Writer("fff train --save", train, train_load,
               lambda p: safetensors_digest(p, ignore_metadata=("seconds_per_epoch",))),
        Writer("fff lm train --save", lm, lm_load, resume=lm_resume),
        Writer("fff bert convert", convert, bert_load),
        Writer("fff bert embed --output", embed, embed_load),
    ]


def writing_in(pid, directory):
    """Whether process `pid` has a file open in `directory`: the writer's temporary file (one
    made with O_TMPFILE shows as "DIR/#INODE (deleted)")."""
    fds = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for fd in names:
        with contextlib.suppress(OSError):
            if os.path.dirname(os.readlink(f"{fds}/{fd}")) == directory:
                return True
    return False


def kill_test(name, start, load, digest, old, new, seconds, directory, target, keep, rng,
              resume=None):
    """KILLS times: put the old file back at `target`, start(), SIGKILL it after a delay drawn
    uniformly in [0, seconds], then check the file. start() returns (process, t0) with t0 the
    moment the write began. Returns the counts."""
    counts = {"kills": 0, "old": 0, "new": 0, "checkpoint": 0, "finished_first": 0,
              "seconds": round(seconds, 3), "targeted_kills": 0, "complete_temp_files_left": 0}
    tag = f"{name} (FFF_CRASH_SEED={SEED})"
    for i in range(KILLS + TARGETED):
        shutil.copyfile(old["path"], target + ".restore")
        os.replace(target + ".restore", target)
        targeted = i >= KILLS
        delay = rng.uniform(0, 0.005) if targeted else rng.uniform(FROM * seconds, seconds)
        proc, t0 = start()
        if targeted:
            while proc.poll() is None and not writing_in(proc.pid, directory):
                time.sleep(0.0002)
            t0 = time.monotonic()
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            counts["targeted_kills" if targeted else "kills"] += 1
        else:
            counts["finished_first"] += 1
        proc.wait(60)
        with contextlib.suppress(Exception):
            proc.stdin and proc.stdin.close()
        where = f"{tag}, kill {i} after {delay:.3f} s" + (" of writing" if targeted else "")
        assert os.path.exists(target), f"{where}: {target} is gone"
        load(target)

        def classify(path):
            d = digest(path)
            if d in (old["digest"], new["digest"]):
                return "old" if d == old["digest"] else "new"
            assert resume is not None, f"{where}: {path} is neither the old nor the new file"
            # A periodic checkpoint of the new run: it must continue to exactly the final file.
            out = os.path.join(directory, "resumed.bin")
            check_ok(resume(path, out), f"{where}: resume")
            assert digest(out) == new["digest"], f"{where}: checkpoint does not resume to new"
            os.unlink(out)
            return "checkpoint"

        counts[classify(target)] += 1
        # The writers give their file a name only once it is complete and on disk (O_TMPFILE),
        # just before the rename: a kill between the two system calls is the one way to leave a
        # file behind, named as the writers name it for this process, and complete.
        for entry in leftovers(directory, keep):
            base = os.path.basename(target)
            assert entry in (f"{base}.tmp.{proc.pid}", f".{base}.{proc.pid}.tmp"), \
                f"{where}: {entry} left in {directory}"
            load(os.path.join(directory, entry))
            assert classify(os.path.join(directory, entry)) != "old", f"{where}: {entry}"
            os.unlink(os.path.join(directory, entry))
            counts["complete_temp_files_left"] += 1
    RESULTS[name] = counts
    print(f"{tag}: {counts}", file=sys.stderr)
    return counts


@pytest.mark.parametrize("index", range(4), ids=["train", "lm_train", "bert_convert",
                                                 "bert_embed"])
def test_sigkill_cli(inputs, tmp_path, index):
    w = writers(inputs)[index]
    rng = random.Random(f"{SEED}/{w.name}")
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref = {}
    for variant in ("old", "new"):
        path = str(ref_dir / variant)
        t0 = time.monotonic()
        check_ok(w.argv(variant, path), f"{w.name} ({variant})")
        seconds = time.monotonic() - t0
        w.load(path)
        ref[variant] = {"path": path, "digest": w.digest(path), "seconds": seconds}
    assert ref["old"]["digest"] != ref["new"]["digest"]
    # A second uninterrupted run gives the same file: the comparison below is meaningful.
    # The kill delays span the faster of the two runs (the first may read cold inputs).
    again = str(ref_dir / "again")
    t0 = time.monotonic()
    check_ok(w.argv("new", again), w.name)
    seconds = min(ref["new"]["seconds"], time.monotonic() - t0)
    assert w.digest(again) == ref["new"]["digest"], f"{w.name} is not deterministic"
    os.unlink(again)

    work = tmp_path / "work"
    work.mkdir()
    target = str(work / "model.bin")

    def start():
        t0 = time.monotonic()
        return subprocess.Popen(w.argv("new", target), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL), t0

    counts = kill_test(w.name, start, w.load, w.digest, ref["old"], ref["new"],
                       seconds, str(work), target, ["model.bin"], rng, w.resume)
    assert counts["kills"] + counts["targeted_kills"] + counts["finished_first"] == KILLS + TARGETED


# ---- the Python savers, in a child process killed during the save itself ----

# argv: kind, path, variant (0 old, 1 new), an input[, "wait"]. With "wait" it prints "ready" once
# the model is built and saves when a line arrives on stdin; then it prints the seconds the save
# took.
SAVER_CHILD = r"""
import sys, time
import numpy as np
kind, path, variant, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == "fff.save":
    import torch
    import fff, fff.torch
    torch.manual_seed(variant)
    model = fff.torch.LeafFFF(784, 10, depth=7 + variant, leaf_width=16)
    save = lambda: fff.save(model, path, {"variant": str(variant)})
elif kind == "fff.bert.save":
    import fff, fff.bert
    model = fff.bert.load(extra)
    save = lambda: fff.bert.save(model, path, {"variant": str(variant)})
else:
    sys.path.insert(0, extra)
    from safetensors_io import write_safetensors
    rng = np.random.default_rng(variant)
    tensors = {f"t{i}": rng.standard_normal((512, 1024 + variant), dtype=np.float32)
               for i in range(8)}
    save = lambda: write_safetensors(path, tensors, {"variant": str(variant)})
if sys.argv[5:] == ["wait"]:
    print("ready", flush=True)
    sys.stdin.readline()
t0 = time.monotonic()
save()
print(time.monotonic() - t0, flush=True)
"""


def saver_argv(kind, path, variant, extra):
    return [sys.executable, "-c", SAVER_CHILD, kind, path, str(variant), extra]


def start_saver(kind, path, variant, extra):
    """The child, once its model is built: (process, t0) with t0 when it was told to save."""
    proc = subprocess.Popen(saver_argv(kind, path, variant, extra) + ["wait"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        proc.wait()
        raise AssertionError(f"{kind} child did not start: {line!r}")
    t0 = time.monotonic()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc, t0


def run_saver(kind, path, variant, extra):
    proc, _ = start_saver(kind, path, variant, extra)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{kind} ({variant}) failed"
    return float(out)


@pytest.fixture(scope="module")
def python_package(inputs, tmp_path_factory):
    r = run([sys.executable, "-c", "import fff, fff.torch, fff.bert"])
    if r.returncode != 0:
        pytest.skip("the fff Python package (PYTHONPATH=build/python) or PyTorch is missing: " +
                    r.stderr.strip().splitlines()[-1])
    d = tmp_path_factory.mktemp("bert")
    big = str(d / "big.safetensors")
    write_random_bert(big, hidden=256, layers=4, heads=4, ff_width=1024)
    readable_by_all(d)
    return {"bert": big}


def python_savers(inp, pkg):
    def classifier_load(path):
        info_reads(path)
        check_ok([CLI, "eval", path, "--data", inp["idx"], "--threads", "1", "--no-compare"],
                 "fff eval")

    def bert_load(path):
        info_reads(path)
        check_ok([CLI, "bert", "embed", path, "--text", "the cat sat", "--threads", "1"],
                 "fff bert embed")

    def safetensors_load(path):
        with open(path, "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        end = max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
        assert len(data) == 8 + n + end, f"{path}: {len(data)} bytes, header says {8 + n + end}"

    return {"fff.save": ("", classifier_load),
            "fff.bert.save": (pkg["bert"], bert_load),
            "safetensors_io": (os.path.join(SOURCE, "scripts"), safetensors_load)}


@pytest.mark.parametrize("kind", ["fff.save", "fff.bert.save", "safetensors_io"])
def test_sigkill_python(inputs, python_package, tmp_path, kind):
    extra, load = python_savers(inputs, python_package)[kind]
    rng = random.Random(f"{SEED}/{kind}")
    ref = {}
    for variant, name in ((0, "old"), (1, "new")):
        path = str(tmp_path / name)
        seconds = run_saver(kind, path, variant, extra)
        load(path)
        ref[name] = {"path": path, "digest": file_hash(path), "seconds": seconds}
    assert ref["old"]["digest"] != ref["new"]["digest"]
    work = tmp_path / "work"
    work.mkdir()
    target = str(work / "model.safetensors")
    counts = kill_test(kind, lambda: start_saver(kind, target, 1, extra), load, file_hash,
                       ref["old"], ref["new"], ref["new"]["seconds"], str(work), target,
                       ["model.safetensors"], rng)
    assert counts["kills"] + counts["targeted_kills"] + counts["finished_first"] == KILLS + TARGETED


# ---- a full disk, a file size limit, a read-only directory, a read-only file system ----

@contextlib.contextmanager
def mounted_tmpfs(size_bytes):
    d = tempfile.mkdtemp(prefix="fff-crash-tmpfs-")
    r = run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", d])
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    try:
        yield d
    finally:
        run(["umount", d])
        os.rmdir(d)


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def can_run_as_nobody():
    if os.geteuid() != 0:
        return "not root: cannot run a command as user nobody"
    if shutil.which("setpriv") is None:
        return "no setpriv (util-linux)"
    r = run(AS_NOBODY + ["true"])
    return None if r.returncode == 0 else f"setpriv fails: {r.stderr.strip()}"


# Each case: what the error must say (any of these), and how the write is hindered.
CASES = {
    "full_disk": ("No space left on device",),
    "file_size_limit": ("File too large",),
    "read_only_dir": ("Permission denied", "is not writable"),
    "unreachable_dir": ("Permission denied",),  # inside a directory of mode 0700, not theirs
    "read_only_mount": ("Read-only file system", "is not writable"),
}
CLI_WRITERS = ["fff train --save", "fff lm train --save", "fff bert convert",
               "fff bert embed --output"]
PY_SAVERS = ["fff.save", "fff.bert.save", "safetensors_io"]


@pytest.fixture(scope="module")
def old_files(inputs, tmp_path_factory):
    """Each writer's old file (made once), and how to start its new write to a path."""
    d = tmp_path_factory.mktemp("old")
    made = {}

    def get(name, pkg=None):
        if name not in made:
            path = str(d / name.replace(" ", "_"))
            if name in CLI_WRITERS:
                w = writers(inputs)[CLI_WRITERS.index(name)]
                check_ok(w.argv("old", path), name)
                made[name] = (path, lambda target, w=w: w.argv("new", target))
            else:
                extra, _ = python_savers(inputs, pkg)[name]
                run_saver(name, path, 0, extra)
                made[name] = (path, lambda target: saver_argv(name, target, 1, extra))
        return made[name]

    return get


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", CLI_WRITERS + PY_SAVERS)
def test_write_refused(request, inputs, old_files, tmp_path, name, case):
    """The old file in a directory where the new one cannot be written: a non-zero exit, an
    error naming the path and the reason, the old file as it was, nothing else left there."""
    pkg = request.getfixturevalue("python_package") if name in PY_SAVERS else None
    old, new_argv = old_files(name, pkg)
    old_hash, old_size = file_hash(old), os.path.getsize(old)
    prefix, preexec = [], None
    with contextlib.ExitStack() as stack:
        if case in ("full_disk", "read_only_mount"):
            # Room for the old file and 64 KiB more: every new file here is larger.
            d = stack.enter_context(mounted_tmpfs(old_size + 65536))
        else:
            d = str(tmp_path / "locked" / "dir")
            os.makedirs(d)
        target = os.path.join(d, "model.safetensors")
        shutil.copyfile(old, target)
        if case == "file_size_limit":
            def preexec():
                resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        elif case in ("read_only_dir", "unreachable_dir"):
            why = can_run_as_nobody()
            if why:
                pytest.skip(why)
            os.chmod(target, 0o644)
            os.chmod(d, 0o555)
            stack.callback(os.chmod, d, 0o755)
            # read_only_dir: nobody reaches the directory; unreachable_dir: not even that.
            os.chmod(os.path.dirname(d), 0o755 if case == "read_only_dir" else 0o700)
            for p in [str(tmp_path), *map(str, tmp_path.parents)]:
                if p == "/":
                    break
                os.chmod(p, os.stat(p).st_mode | 0o005)
            prefix = AS_NOBODY
        elif case == "read_only_mount":
            r = run(["mount", "-o", "remount,ro", d])
            if r.returncode != 0:
                pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
        r = subprocess.run(prefix + new_argv(target), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, errors="replace", timeout=120,
                           preexec_fn=preexec, cwd="/")
        where = f"{name}, {case}: exit {r.returncode}, stderr {r.stderr[-1500:]!r}"
        last = r.stderr.strip().splitlines()[-1:] or [""]
        print(f"{name}, {case}: exit {r.returncode}: {last[0]}", file=sys.stderr)
        assert r.returncode > 0, where  # an error, not a signal (nor SIGXFSZ)
        assert target in r.stderr, f"{where}: the path is not named"
        assert any(m in r.stderr for m in CASES[case]), f"{where}: no {CASES[case]}"
        assert "internal error" not in r.stderr, where
        assert file_hash(target) == old_hash, f"{where}: the old file changed"
        assert leftovers(d, ["model.safetensors"]) == [], f"{where}: files left"
