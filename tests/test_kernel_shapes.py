"""Every k and t runs the vector kernels correctly on every ISA path this CPU has (issue 13).

- The GEMM kernel of each ISA, built with that ISA's own compiler flags from CMakeLists.txt, element by
  element against float64 at N, K in {1, 7, 10, 15, 16, 17, 24, 48, 64, 100, 256} and M filling whole
  register tiles and leaving tails, with bias, accumulation, packed B and transposed operands
  (tests/cpp/check_kernel_shapes.cpp).
- The 16-wide configuration against the 4-wide one built with the real AVX-512 flags (masked moves), where
  the CPU has AVX-512 (tests/test_vector_widths.py builds it without flags).
- Predictions, attention weights and batch gradients of the installed core (packed W, the fused block
  kernels) against the float64 reference, per element, at those k and t, on every ISA (forced like
  FASTAFM_ISA does).
- The ISA chosen at import is the best one /proc/cpuinfo reports.

The C++ checks need the source tree and a compiler: skipped without them unless FASTAFM_REQUIRE_CXX_TESTS=1."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import assert_per_element, compiler_or_skip, core_config, random_csr, random_params, to_core, own_scale

ROOT = Path(__file__).resolve().parent.parent
ISAS = _core.supported_isas()
SIZES = [1, 7, 10, 15, 16, 17, 24, 48, 64, 100, 256]
# k = t on the diagonal, plus every size against an odd partner and a multiple of 16.
SHAPES = sorted({(s, s) for s in SIZES} | {(s, 7) for s in SIZES} | {(17, s) for s in SIZES}
                | {(s, 64) for s in (10, 24, 100)} | {(64, s) for s in (10, 24, 100)})


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def expected_isa(flags: set[str]) -> str:
    if {"avx512f", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "baseline"


def isa_compile_flags() -> dict[str, list[str]]:
    """Each ISA file's COMPILE_OPTIONS from CMakeLists.txt, so the checks build what the library builds."""
    text = (ROOT / "CMakeLists.txt").read_text()
    out = {}
    for isa in ("avx512", "avx2", "baseline"):
        m = re.search(rf'isa_{isa}\.cpp PROPERTIES\s+COMPILE_OPTIONS "([^"]*)"', text)
        out[isa] = m.group(1).split(";") if m else []
    return out


def build(compiler: str, source: Path, flags: list[str], exe: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [compiler, "-O1", "-std=c++17", "-Wno-psabi", *flags, f"-I{ROOT / 'cpp' / 'include'}",
         f"-I{ROOT / 'cpp' / 'src'}", str(source), "-o", str(exe)],
        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def gemm_checks(tmp_path_factory):
    """The GEMM check built once per ISA this CPU has (in parallel): {isa: CompletedProcess of the build}."""
    compiler = compiler_or_skip("kernel checks")
    d = tmp_path_factory.mktemp("kernel_shapes")
    flags = isa_compile_flags()
    source = ROOT / "tests" / "cpp" / "check_kernel_shapes.cpp"
    with ThreadPoolExecutor(len(ISAS)) as pool:
        builds = {isa: pool.submit(build, compiler, source, flags[isa], d / f"check_{isa}") for isa in ISAS}
        return {isa: (f.result(), d / f"check_{isa}") for isa, f in builds.items()}


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_every_shape_against_float64(gemm_checks, isa):
    result, exe = gemm_checks[isa]
    assert result.returncode == 0, result.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last == f"{isa}: {6 * len(SIZES) ** 2 * 5} passed, 0 failed", run.stdout


def test_wide_configuration_with_real_avx512_flags(tmp_path):
    if "avx512" not in ISAS:
        pytest.skip("this CPU has no AVX-512 (test_vector_widths.py covers the 16-wide code without it)")
    compiler = compiler_or_skip("kernel checks")
    exe = tmp_path / "check_vector_widths_avx512"
    result = build(compiler, ROOT / "tests" / "cpp" / "check_vector_widths.cpp", isa_compile_flags()["avx512"], exe)
    assert result.returncode == 0, result.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("passed, 0 failed"), run.stdout


# Rows long enough that a block holds several full register tiles of pairs (14 non-zeros: 91 pairs) and
# short ones that leave tails; empty and one-non-zero rows too.
ROW_NNZ = [14, 0, 1, 2, 9, 3, 14, 5, 11, 4]


@pytest.mark.parametrize("k,t", SHAPES, ids=[f"k{k}-t{t}" for k, t in SHAPES])
def test_block_kernels_against_reference(isa, rng, k, t):
    n_features = 40
    X = random_csr(rng, ROW_NNZ, n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    params = random_params(rng, n_features, k, t, v_std=0.5 / np.sqrt(np.sqrt(k)))
    params.W = params.W / np.sqrt(max(k / 16, 1.0))
    core = to_core(params)
    got_y = _core.predict(core, *csr_arrays(X), True, 1)
    assert_per_element(got_y, reference.forward(params, X), "y")
    pair_indptr, _, want_a = reference.pair_attention(params, X)
    got_a = _core.pair_attention(core, *csr_arrays(X), pair_indptr.astype(np.int64))
    assert_per_element(got_a, want_a, "a")
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(n_threads=1, attention_l2=0.3, l2=0.1))
    _, want = reference.gradients(params, X, y, attention_l2=0.3, l2=0.1)
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, scale=own_scale(want, name))
    assert_per_element(got["V"], want.V[got["touched"]], "V")
    assert_per_element(got["w"], want.w[got["touched"]], "w")


@pytest.mark.parametrize("n", SIZES)
def test_gemm_binding_against_numpy(isa, rng, n):
    """_testing.gemm at N = K = n and at n x (n + 1): M = 33 leaves a tail of rows on every tile height."""
    for N, K in ((n, n), (n + 1, n), (n, n + 1)):
        A = rng.normal(size=(33, K)).astype(np.float32)
        B = rng.normal(size=(K, N)).astype(np.float32)
        np.testing.assert_allclose(_testing.gemm(A, B), A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def _active_isa_in_subprocess(env_isa: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FASTAFM_ISA"}
    if env_isa is not None:
        env["FASTAFM_ISA"] = env_isa
    out = subprocess.run([sys.executable, "-c", "from fastafm import _core; print(_core.active_isa())"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_chosen_isa_is_the_best_the_cpu_reports():
    flags = cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags")
    want = expected_isa(flags)
    if want not in ISAS:  # a build without the ISA clones (non-x86, or CMake dropped them: a compiler without
        # -mavx512f). CI (FASTAFM_REQUIRE_CXX_TESTS=1, .ci/run) must see that as a failure, never a skip.
        message = f"this build has no {want} kernels though the CPU has {want}: CMake dropped them"
        if os.environ.get("FASTAFM_REQUIRE_CXX_TESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    assert ISAS[0] == want
    assert _active_isa_in_subprocess(None) == want


@pytest.mark.parametrize("forced", ISAS)
def test_fastafm_isa_forces_a_supported_path(forced):
    assert _active_isa_in_subprocess(forced) == forced


def _kernel_isas_in_subprocess(env_isa: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTAFM_ISA"}
    if env_isa is not None:
        env["FASTAFM_ISA"] = env_isa
    code = ("from fastafm import _core; "
            "print(_core.active_isa(), *[_core.kernel_isa(k, t) for k, t in ((8, 8), (4, 1), (9, 8), (8, 9), (64, 64))], "
            "_core.kernel_isa(8, 8, 741), _core.kernel_isa(8, 8, 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_kernel_isa_reports_the_small_shape_rule():
    active, *per_shape = _kernel_isas_in_subprocess(None)
    small, large, (long_row, short_row) = per_shape[:2], per_shape[2:5], per_shape[5:]
    assert large == [active] * 3  # k or t above 8: the active set
    want_small = "avx2" if active == "avx512" and "avx2" in ISAS else active
    assert small == [want_small] * 2
    assert short_row == want_small and long_row == active  # rows of >= 300 pairs run pairs-major on the active set


@pytest.mark.parametrize("forced", ISAS)
def test_kernel_isa_follows_a_forced_set_at_every_shape(forced):
    active, *per_shape = _kernel_isas_in_subprocess(forced)
    assert [active, *per_shape] == [forced] * 8


def test_dropped_kernels_fail_rather_than_skip_in_ci(monkeypatch):
    """The check above, on a build that lost the CPU's kernel set: a skip locally, a failure under
    FASTAFM_REQUIRE_CXX_TESTS=1 (.ci/run), so CI cannot pass a build whose CMake silently dropped them."""
    import sys

    flags = cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ISAS", [isa for isa in ISAS if isa != expected_isa(flags)])
    monkeypatch.setenv("FASTAFM_REQUIRE_CXX_TESTS", "1")
    with pytest.raises(pytest.fail.Exception, match="CMake dropped them"):
        test_chosen_isa_is_the_best_the_cpu_reports()
    monkeypatch.setenv("FASTAFM_REQUIRE_CXX_TESTS", "0")
    with pytest.raises(pytest.skip.Exception, match="CMake dropped them"):
        test_chosen_isa_is_the_best_the_cpu_reports()
