"""The AVX-512 configuration of the block kernels (16-wide vectors, 8 x 3 register tiles) checked against the
4-wide one, on any x86-64 CPU: tests/cpp/check_vector_widths.cpp is compiled without -m flags, where GCC lowers
the 64-byte vectors to narrower instructions. This covers the tile shapes, tails and packing of the AVX-512
path on machines (like this project's CI) that cannot execute AVX-512 itself.

It needs the source tree and a C++ compiler. Where either is missing (a wheel installed elsewhere) it is
skipped, unless FASTAFM_REQUIRE_CXX_TESTS=1, which .ci/run sets so that CI never skips it."""
from __future__ import annotations

import subprocess
from pathlib import Path

from support import compiler_or_skip

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "cpp" / "check_vector_widths.cpp"


def test_wide_vector_configuration_matches_narrow(tmp_path):
    compiler = compiler_or_skip("vector-width check")
    exe = tmp_path / "check_vector_widths"
    build = subprocess.run(
        [compiler, "-O1", "-std=c++17", "-Wno-psabi", f"-I{ROOT / 'cpp' / 'include'}", f"-I{ROOT / 'cpp' / 'src'}",
         str(SOURCE), "-o", str(exe)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("passed, 0 failed"), run.stdout
    assert int(run.stdout.split()[-4]) > 400
