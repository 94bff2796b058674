#!/usr/bin/env bash
# Builds the core with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option AFM_SANITIZE=ON) into its own
# virtual environment and runs tests under it; fails on a failing test or on any sanitizer report.
#
#   tools/run_sanitizers.sh                  the kernel, ISA, kernel-shape, pairs-major, team-mode, core-boundary,
#                                            exact-zero, parser, validation, persistence, reliability and fuzz-corpus
#                                            tests
#                                            (TESTS below)
#   tools/run_sanitizers.sh tests/ -m "not slow"     any pytest arguments instead
#
# Environment: SANITIZER_TIMEOUT (seconds the tests may run, default 1800), ASAN_VENV (default /tmp/venv-asan;
# created with the build and test requirements if missing),
# PYTHON (default python3, for creating it), CXX (default g++, to locate libasan). Needs GCC or Clang with the
# sanitizer runtimes. An editable install: it uses build/asan and leaves other installs alone.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${ASAN_VENV:-/tmp/venv-asan}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q scikit-build-core pybind11 ninja numpy scipy pytest pytest-benchmark scikit-learn
fi
# pyarrow reads the raw-log fuzz corpus (tests/test_fuzz_corpus.py); installed also into a venv made before it was
# needed (a no-op when present)
"$VENV/bin/python" -m pip install -q pyarrow
start=$(date +%s)
"$VENV/bin/python" -m pip install -q --no-build-isolation -e . -Ccmake.define.AFM_SANITIZE=ON -Cbuild-dir=build/asan
built=$(date +%s)

PRELOAD="$("${CXX:-g++}" -print-file-name=libasan.so) $("${CXX:-g++}" -print-file-name=libstdc++.so)"
core=$(LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=detect_leaks=0 "$VENV/bin/python" -c "import fastafm._core as c; print(c.__file__)")
if ! ldd "$core" | grep libasan >/dev/null; then
  echo "run_sanitizers: $core is not linked with libasan (AFM_SANITIZE=ON was not applied)" >&2
  exit 2
fi

TESTS=(tests/test_kernels.py tests/test_isa.py tests/test_kernel_shapes.py tests/test_pairs_major.py tests/test_contention.py
       tests/test_core_boundary.py tests/test_exact_zeros.py
       tests/test_libfm.py tests/test_libfm_hardening.py
       tests/test_validation.py tests/test_persistence.py tests/test_reliability.py tests/test_fuzz_corpus.py
       tests/test_fwfm_kernels.py tests/test_field_afm_kernels.py tests/test_linear_rows_kernel.py
       tests/test_forward_scores.py)
if [ "$#" -gt 0 ]; then TESTS=("$@"); fi

log=$(mktemp "${TMPDIR:-/tmp}/fastafm-sanitizers.XXXXXX.log")
# CPython is not instrumented: the ASan runtime must be loaded first, and libstdc++ with it (else ASan's
# __cxa_throw interceptor finds no real __cxa_throw and the first C++ exception aborts). Leak checking is off
# (CPython keeps its objects at exit); huge allocations return NULL (so C++ throws bad_alloc and the MemoryError
# tests run) instead of aborting; any ASan or UBSan report aborts the process, so a clean run has none.
# The run's wall clock is bounded (SANITIZER_TIMEOUT seconds, default 30 min; about 5 are needed): a hang fails
# here with status 124 instead of eating CI's time, after pytest's faulthandler_timeout printed where it hangs.
status=0
LD_PRELOAD="$PRELOAD" \
ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  timeout -k 30 "${SANITIZER_TIMEOUT:-1800}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" 2>&1 |
  tee "$log" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "run_sanitizers: the tests ran past ${SANITIZER_TIMEOUT:-1800} s (a hang? the stacks are in $log)" >&2
fi
end=$(date +%s)

if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$log"; then
  echo "run_sanitizers: sanitizer report found (full output: $log)" >&2
  status=1
fi
echo "run_sanitizers: build $((built - start)) s, tests $((end - built)) s, exit status $status (log: $log)"
exit $status
