#!/usr/bin/env bash
# Builds fff's libFuzzer targets (fuzz/, clang + libFuzzer + ASan/UBSan) into build-fuzz/ and runs
# each for SECONDS (default 60), starting from the seeds fff's own writers make and the checked-in
# corpus fuzz/corpus/TARGET. Findings (crash-*, leak-*, oom-*, timeout-*) go to
# build-fuzz/findings/TARGET/; a summary line per target (executions, coverage, findings) to
# build-fuzz/summary.tsv.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET ...]     e.g. scripts/fuzz.sh 600 bert idx
#        scripts/fuzz.sh --summary                  totals per target over all recorded runs
# Targets: the fuzz/fuzz_*.cc programs, and `python` (fuzz/fuzz_python.py: the Python package's
# and scripts/convert_bert.py's readers, fuzzed with atheris from PyPI in build-fuzz/venv over the
# package in build/python, which scripts/setup.sh builds).
# Environment: FUZZ_JOBS=N runs N targets at a time (default 1); FUZZ_MERGE=1 afterwards merges
# what each run found that adds coverage into fuzz/corpus/TARGET (the corpus CI replays).
#
# Limits: an input's run may take at most 10 s (-timeout), the process 2 GB of memory
# (-rss_limit_mb), and a single allocation 64 MB (-malloc_limit_mb; FUZZ_MALLOC_LIMIT_MB changes
# it); beyond is a finding. The inputs are at most tens of KB and every allocation fff makes for
# the seeds is under 16 MB, so a larger one is memory amplification: sizes declared by a file
# and not checked against what it holds.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --summary ]; then
  # Totals per target over every run recorded in build-fuzz/summary.tsv, as a Markdown table.
  [ -f build-fuzz/summary.tsv ] || { echo "scripts/fuzz.sh --summary: no runs recorded yet" >&2; exit 1; }
  echo "| target | runs | time (min) | executions | coverage (edges / features) | findings |"
  echo "|---|---:|---:|---:|---:|---:|"
  awk -F'\t' 'NR > 1 { runs[$1]++; s[$1] += $2; e[$1] += $3; cov[$1] = $4; ft[$1] = $5; f[$1] += $6 }
    END {
      for (t in runs) printf "| %s | %d | %.0f | %d | %d / %d | %d |\n", t, runs[t], s[t] / 60, e[t], cov[t], ft[t], f[t]
    }' build-fuzz/summary.tsv | sort
  exit 0
fi
seconds=${1:-60}
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "scripts/fuzz.sh: SECONDS must be a positive whole number, not '$seconds'" >&2
  exit 2
fi
if ! command -v clang++ >/dev/null || ! [ -d /usr/lib/llvm-14/lib/clang ] ||
   ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  echo "scripts/fuzz.sh needs clang and libFuzzer: sudo apt-get install clang libfuzzer-14-dev" >&2
  exit 1
fi

build=build-fuzz
if [ ! -f $build/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFFF_FUZZ=ON -DFFF_TESTS=OFF -DFFF_CLI=OFF -DFFF_BENCH=OFF -DFFF_PYTHON=OFF \
    -DFFF_INSTALL=OFF >&2
fi
cmake --build $build >&2

all="$(cd fuzz && ls fuzz_*.cc | sed 's/^fuzz_//; s/\.cc$//' | tr '\n' ' ')python"
targets=${*:-$all}
for t in $targets; do
  [[ " $all " == *" $t "* ]] || { echo "scripts/fuzz.sh: no fuzz target '$t' (targets: $(echo $all))" >&2; exit 2; }
done
if [[ " $targets " == *" python "* ]]; then
  [ -f build/python/fff/__init__.py ] || { echo "scripts/fuzz.sh python: build the package first (scripts/setup.sh)" >&2; exit 1; }
  if ! build-fuzz/venv/bin/python -c "import atheris" 2>/dev/null; then
    /usr/bin/python3 -m venv --system-site-packages build-fuzz/venv >&2
    build-fuzz/venv/bin/pip install -q --disable-pip-version-check atheris >&2
  fi
fi

rm -rf $build/seeds && $build/fuzz/fuzz_make_seeds $build/seeds >&2

dict_of() {
  case $1 in
    safetensors | classifier | lm_checkpoint | bert) echo fuzz/safetensors.dict ;;
    vocab | tokenize) echo fuzz/wordpiece.dict ;;
    serve_request) echo fuzz/json.dict ;;
  esac
}

run_one() {
  local t=$1
  local work=$build/corpus/$t findings=$build/findings/$t log=$build/logs/$t.log
  mkdir -p "$work" "$findings" "$(dirname "$log")"
  local inputs=("$work")
  [ -d "$build/seeds/$t" ] && inputs+=("$build/seeds/$t")
  [ -d "fuzz/corpus/$t" ] && inputs+=("fuzz/corpus/$t")
  local dict
  dict=$(dict_of "$t")
  # -fork would survive findings and keep going; a plain run stops at the first, which is what
  # we want to see and fix.
  local program=("$build/fuzz/fuzz_$t") malloc_limit=${FUZZ_MALLOC_LIMIT_MB:-64}
  if [ "$t" = python ]; then
    # PyTorch's own start-up allocates more than 64 MB at once.
    # (PATH: a merge runs the script again by its name, through its #! line.)
    program=(env PATH="$PWD/$build/venv/bin:$PATH" PYTHONPATH=build/python
             "$build/venv/bin/python" fuzz/fuzz_python.py)
    malloc_limit=2048
  fi
  local before start=$SECONDS
  before=$(find "$findings" -type f | wc -l)
  set +e
  "${program[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb="$malloc_limit" -print_final_stats=1 -artifact_prefix="$findings/" \
    ${dict:+-dict=$dict} "${inputs[@]}" >"$log" 2>&1
  local rc=$?
  set -e
  local execs cov ft
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  local found
  found=$(($(find "$findings" -type f | wc -l) - before))
  # The time it ran (a finding ends a run early).
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$((SECONDS - start))" "${execs:-0}" "${cov:-0}" "${ft:-0}" \
    "$found" "$rc" >>$build/summary.tsv
  echo "$t: $((SECONDS - start)) s, ${execs:-0} executions, coverage ${cov:-0} edges (${ft:-0} features), $found finding(s), exit $rc (log $log)"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    mkdir -p "fuzz/corpus/$t"
    "${program[@]}" -merge=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 "fuzz/corpus/$t" \
      "${inputs[@]}" >>"$log.merge" 2>&1 || echo "$t: merge failed (see $log.merge)" >&2
  fi
}

[ -f $build/summary.tsv ] ||
  printf 'target\tseconds\texecutions\tcoverage\tfeatures\tfindings\texit\n' >$build/summary.tsv
export -f run_one dict_of
export build seconds
printf '%s\n' $targets | xargs -P "${FUZZ_JOBS:-1}" -I{} bash -c 'run_one {}'
