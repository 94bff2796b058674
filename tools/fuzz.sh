#!/usr/bin/env bash
# Runs the fuzzers of fuzz/ -- the libFM parser and its libFFM mode with load_libffm (differential against
# fuzz/libfm_reference.py), raw CSV/TSV logs through convert (differential against the encoding read back),
# fastafm.load and
# the block kernels with their streamed long-row tiles (differential against fastafm.reference) --
# for SECONDS each (default 10), starting from the seed corpus in fuzz/corpus/. Fails on any crash, hang
# (10 s per input), unexpected exception or sanitizer report; new corpus entries and crash inputs go to a work
# folder (printed), never into fuzz/corpus.
#
#   tools/fuzz.sh            10 s each: the CI smoke run
#   tools/fuzz.sh 600        the 10-minute runs of docs/reliability.md
#
# Environment: PYTHON (default python3; needs fastafm and atheris installed), FUZZ_WORK (the work folder;
# default a new temporary one), ASAN_PYTHON (optional: the Python of a venv whose core is built with
# AFM_SANITIZE=ON, e.g. /tmp/venv-asan/bin/python from tools/run_sanitizers.sh; atheris installed there too).
# With ASAN_PYTHON, every input of the seed corpus and of the corpus the runs grew is then replayed under ASan +
# UBSan. (The runs themselves use the plain build: with GCC's libasan preloaded, atheris loses its coverage
# feedback, because libasan provides the __sanitizer_cov_* symbols.) CXX (default g++) locates the runtimes.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-10}
PY=${PYTHON:-python3}
WORK=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/fastafm-fuzz.XXXXXX")}
mkdir -p "$WORK/libfm" "$WORK/libffm" "$WORK/rawlog" "$WORK/model" "$WORK/kernels" "$WORK/artifacts"
"$PY" -c "import atheris, fastafm" || { echo "fuzz.sh: $PY needs fastafm and atheris (pip install atheris)" >&2; exit 2; }

run() {  # name harness max_len corpus [extra libFuzzer flags]
  local name=$1 harness=$2 max_len=$3 corpus=$4
  shift 4
  echo "== $name: $SECONDS_EACH s"
  local log="$WORK/$name.log" status=0
  # a wall-clock bound besides libFuzzer's own: a process that hangs where -timeout cannot see it (at exit, after
  # "Done N runs") fails here in minutes (exit status 124) instead of running on until CI's limit
  timeout -k 10 "$((SECONDS_EACH * 2 + 120))" "$PY" "$harness" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 -max_len="$max_len" \
    -print_final_stats=1 -artifact_prefix="$WORK/artifacts/$name-" "$@" "$WORK/$name" "$corpus" >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  if [ "$status" -ne 0 ] || grep -qE "ERROR: AddressSanitizer|runtime error:|==ERROR|Uncaught Python exception" "$log"; then
    echo "fuzz.sh: $name FAILED (exit status $status); log: $log; inputs: $WORK/artifacts/" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

replay() {  # name harness corpus: every input once, under ASan + UBSan
  local name=$1 harness=$2 corpus=$3 log="$WORK/$1-asan.log" status=0
  echo "== $name: replay of $(ls "$WORK/$name" "$corpus" | grep -vc ':$') inputs under ASan + UBSan"
  LD_PRELOAD="$("${CXX:-g++}" -print-file-name=libasan.so) $("${CXX:-g++}" -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:halt_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$ASAN_PYTHON" "$harness" -runs=0 -timeout=60 -rss_limit_mb=8192 -artifact_prefix="$WORK/artifacts/$name-asan-" \
    "$WORK/$name" "$corpus" >"$log" 2>&1 || status=$?
  grep -E "INITED" "$log" || true
  if [ "$status" -ne 0 ] || grep -qE "ERROR: AddressSanitizer|runtime error:|==ERROR|Uncaught Python exception" "$log"; then
    echo "fuzz.sh: $name replay under ASan FAILED (exit status $status); log: $log" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

failed=0
run libfm fuzz/fuzz_libfm.py 4096 fuzz/corpus/libfm -dict=fuzz/libfm.dict || failed=1
run libffm fuzz/fuzz_libffm.py 4096 fuzz/corpus/libffm -dict=fuzz/libffm.dict || failed=1
run rawlog fuzz/fuzz_rawlog.py 2048 fuzz/corpus/rawlog || failed=1
run model fuzz/fuzz_load.py 16384 fuzz/corpus/model || failed=1
run kernels fuzz/fuzz_kernels.py 512 fuzz/corpus/kernels || failed=1
if [ -n "${ASAN_PYTHON:-}" ]; then
  replay libfm fuzz/fuzz_libfm.py fuzz/corpus/libfm || failed=1
  replay libffm fuzz/fuzz_libffm.py fuzz/corpus/libffm || failed=1
  replay rawlog fuzz/fuzz_rawlog.py fuzz/corpus/rawlog || failed=1
  replay model fuzz/fuzz_load.py fuzz/corpus/model || failed=1
  replay kernels fuzz/fuzz_kernels.py fuzz/corpus/kernels || failed=1
fi
echo "fuzz.sh: work folder $WORK"
exit $failed
