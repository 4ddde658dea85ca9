#!/usr/bin/env bash
# `pip install SOURCE_DIR` as the README says, into a new virtual environment that sees the system's
# packages (Debian's numpy and PyTorch), then checks the installed package from outside the source
# tree: `import fff` (and every module of python/fff, fff.torch among them) comes from the
# environment, not from build/python; its version is the wheel's (CMakeLists.txt's); the build was
# the library and the extension alone, without -march=native; and tests/python/test_numpy_api.py
# passes against it. Run by ctest (python.pip_install, see CMakeLists.txt):
#   pip_install.sh SOURCE_DIR PYTHON FFF_CLI
# PYTHON: the interpreter to make the environment with (/usr/bin/python3); FFF_CLI: the fff tool,
# which test_numpy_api.py trains its models with. Needs PyPI (pip fetches scikit-build-core).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SOURCE_DIR PYTHON FFF_CLI" >&2; exit 2; }
src=$(cd "$1" && pwd) python=$2
cli=$(realpath -e "$3") || { echo "FAIL: no fff tool at $3" >&2; exit 1; }

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fff-pip-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# Nothing may reach the package in the build folder or the source tree.
unset PYTHONPATH PYTHONHOME

"$python" -m venv --system-site-packages venv || fail "$python -m venv"
py=$tmp/venv/bin/python

# The build folder is ours (in $tmp), so that nothing is written to the source tree and the
# checks below can read it. ccache, when there is one: with its base folder at $tmp, the compile
# commands it hashes name this build's folders relatively, so a later run (another $tmp) hits.
if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CCACHE_BASEDIR=$tmp
fi
start=$SECONDS
"$py" -m pip install -q --config-settings=build-dir="$tmp/build" "$src" > pip.log 2>&1 ||
  { cat pip.log >&2; fail "pip install $src"; }
echo "pip install: $((SECONDS - start)) s"

cache=$tmp/build/CMakeCache.txt
[ -f "$cache" ] || fail "pip did not build in $tmp/build (a cached wheel?)"
for option in FFF_CLI FFF_TESTS FFF_BENCH FFF_INSTALL FFF_NATIVE; do
  grep -qx "$option:BOOL=OFF" "$cache" || fail "the pip build has $(grep "^$option:" "$cache")"
done
! grep -q -- -march=native "$tmp/build/compile_commands.json" ||
  fail "the pip build compiles with -march=native"

modules=()
for f in "$src"/python/fff/*.py; do
  m=$(basename "$f" .py)
  [ "$m" = __init__ ] || modules+=("fff.$m")
done
"$py" - "$tmp/venv" "${modules[@]}" <<'EOF' || fail "the installed package"
import importlib
import importlib.metadata
import os
import sys

venv = os.path.realpath(sys.argv[1])
import fff

where = os.path.realpath(fff.__file__)
print("fff", fff.__version__, "from", where)
assert where.startswith(venv + os.sep), f"fff is imported from {where}, not from {venv}"
ext = os.path.realpath(fff._fff.__file__)
assert ext.startswith(venv + os.sep), f"fff._fff is imported from {ext}, not from {venv}"
wheel = importlib.metadata.version("fff")
assert wheel == fff.__version__, f"the wheel's version {wheel} is not fff.__version__ {fff.__version__}"
for name in sys.argv[2:]:  # fff.torch imports torch: Debian's, seen through the system packages
    module = importlib.import_module(name)
    assert os.path.realpath(module.__file__).startswith(venv + os.sep), module.__file__
    print("imported", name)
EOF

FFF_CLI=$cli "$py" -m pytest -q -p no:cacheprovider "$src/tests/python/test_numpy_api.py" ||
  fail "tests/python/test_numpy_api.py against the installed package"
echo "pip install: OK"
