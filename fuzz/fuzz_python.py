#!/usr/bin/env python3
"""Fuzz target for the Python side's readers of outside data: fff.load and fff.bert.load (the
package's loaders, over the C++ readers the other targets fuzz) and scripts/convert_bert.py's own
readers (safetensors, config.json, tokenizer.json, a sentence-transformers folder's modules.json).
The first byte of an input picks the reader, the rest is the file. The only failures allowed are
fff.Error and convert_bert.UserError; anything else escaping is a finding.

  python fuzz/fuzz_python.py CORPUS_DIR [atheris/libFuzzer flags]   fuzz (needs atheris from PyPI)
  python fuzz/fuzz_python.py --replay DIR_OR_FILE ...               run each input once (ctest)

PYTHONPATH must reach the built package (build/python); scripts/ is added here.
"""
import contextlib
import importlib
import io
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))

convert_bert = fff = None


def import_readers(instrument=contextlib.nullcontext) -> None:
    """Imports the code under test, inside `instrument` (atheris's coverage instrumentation),
    after PyTorch and numpy, which stay uninstrumented (tens of thousands of functions)."""
    global convert_bert, fff
    import numpy  # noqa: F401
    import torch  # noqa: F401

    with instrument():
        convert_bert = importlib.import_module("convert_bert")
        fff = importlib.import_module("fff")
        for name in ("fff.bert", "fff.files", "fff.torch"):
            importlib.import_module(name)


WORK = tempfile.mkdtemp(prefix="fff-fuzz-python-")


def write(name: str, data: bytes) -> str:
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_fff(data: bytes) -> None:
    fff.load(write("model.safetensors", data), threads=1)


def read_fff_bert(data: bytes) -> None:
    fff.bert.load(write("model.safetensors", data), threads=1)


def read_checkpoint_safetensors(data: bytes) -> None:
    for source in convert_bert.read_safetensors(write("model.safetensors", data)).values():
        source.f32()


def read_config(data: bytes) -> None:
    write("config.json", data)
    convert_bert.read_config(WORK)


def read_tokenizer_json(data: bytes) -> None:
    convert_bert.vocab_from_tokenizer_json(write("tokenizer.json", data))


def read_sentence_settings(data: bytes) -> None:
    # Every file the reader may open holds the input (a Pooling module's folder may be "" or
    # "1_Pooling").
    os.makedirs(os.path.join(WORK, "1_Pooling"))
    for name in ("modules.json", "sentence_bert_config.json", "config.json", "1_Pooling/config.json"):
        write(name, data)
    convert_bert.sentence_settings(WORK)


READERS = [read_fff, read_fff_bert, read_checkpoint_safetensors, read_config, read_tokenizer_json,
           read_sentence_settings]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    reader = READERS[data[0] % len(READERS)]
    # A clean folder per input, so that an input's outcome never depends on the ones before.
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # convert_bert's warnings
            reader(data[1:])
    except (fff.Error, convert_bert.UserError):
        pass


def replay(paths) -> int:
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs)
        elif os.path.isfile(p):
            files.append(p)
        else:
            print(f"{p}: no such file or directory", file=sys.stderr)
            return 1
    for path in files:
        with open(path, "rb") as f:
            try:
                test_one_input(f.read())
            except Exception:
                print(f"finding: {path}", file=sys.stderr)
                raise
    print(f"replayed {len(files)} inputs")
    return 0 if files else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--replay":
        import_readers()
        sys.exit(replay(sys.argv[2:]))
    import atheris

    import_readers(atheris.instrument_imports)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
