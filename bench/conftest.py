"""pytest-benchmark suite of fastafm: options, the session's FMA peak and the machine record.

    python -m pytest bench --benchmark-disable -q                 # smoke test: every benchmark once, tiny data
    python -m pytest bench --benchmark-json out.json              # short timed run (a few minutes)
    python -m pytest bench --bench-rows 200000 --bench-criteo-rows 100000 --benchmark-json full.json
    python bench/report.py out.json                               # the markdown table

With --benchmark-disable the data shrink to SMOKE_ROWS rows and a 2 MB libFM file, and the FMA peak is
measured in a fraction of a second (or read from the cache), so the whole suite runs in well under a minute.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test files import data, flops, harness, fma_peak from here
    sys.path.insert(0, str(HERE))

import harness  # noqa: E402

DEFAULT_PEAK_CACHE = harness.REPO / ".benchmarks" / "fma_peak.json"


def pytest_addoption(parser):
    g = parser.getgroup("fastafm benchmarks")
    g.addoption("--bench-rows", type=int, default=None,
                help="rows of the Frappe-shaped data of the epoch/predict/torch groups (default per k: "
                     f"{harness.DEFAULT_ROWS}; the issue's figures: 200000)")
    g.addoption("--bench-criteo-rows", type=int, default=harness.DEFAULT_CRITEO_ROWS,
                help=f"rows of the Criteo-shaped data (default {harness.DEFAULT_CRITEO_ROWS})")
    g.addoption("--bench-torch-rows", type=int, default=None,
                help="cap on the rows of the PyTorch epochs (default: the same rows as fastafm's; ratios are "
                     "taken from rows/s, so a cap only shortens the run)")
    g.addoption("--bench-threads", type=int, default=2, help="threads of fastafm and PyTorch (default 2)")
    g.addoption("--bench-rounds", type=int, default=3, help="timed rounds of the pedantic benchmarks (default 3)")
    g.addoption("--bench-libfm-mb", type=float, default=100.0, help="size of the replicated libFM file (MB)")
    g.addoption("--bench-real-frappe", action="store_true",
                help="use the real Frappe rows (../shared/data, tiled) instead of synthetic Frappe-shaped rows")
    g.addoption("--bench-peak-json", default=str(DEFAULT_PEAK_CACHE),
                help="cache of the measured FMA peak (measured when missing or for another CPU)")
    g.addoption("--bench-remeasure-peak", action="store_true", help="measure the FMA peak again")


@pytest.fixture(scope="session")
def settings(pytestconfig) -> harness.Settings:
    opt = pytestconfig.getoption
    smoke = bool(opt("benchmark_disable"))
    return harness.Settings(
        smoke=smoke,
        rows=opt("bench_rows"),
        criteo_rows=opt("bench_criteo_rows"),
        torch_rows=opt("bench_torch_rows"),
        threads=opt("bench_threads"),
        rounds=1 if smoke else max(1, opt("bench_rounds")),
        libfm_mb=2.0 if smoke else opt("bench_libfm_mb"),
        frappe_data="frappe-real" if opt("bench_real_frappe") else "frappe",
    )


def _measure_peak(config):
    """The FMA peak for 1, --bench-threads and all cores: cached for timed runs, quick in smoke runs."""
    import fma_peak

    threads = sorted({1, config.getoption("bench_threads"), fma_peak.n_cores()})
    path = Path(config.getoption("bench_peak_json"))
    try:
        if config.getoption("benchmark_disable") and not path.exists():
            # Smoke: exercise compile + run on one thread only (other counts are scaled from it).
            config._fastafm_peak_source = "quick 1-thread smoke measurement, not cached"
            return fma_peak.measure(threads=[1], min_time=0.01, repeats=1)
        result = fma_peak.load_or_measure(path, threads=threads, remeasure=config.getoption("bench_remeasure_peak"))
        config._fastafm_peak_source = f"{path}, measured {result['settings'].get('when')}"
        return result
    except (OSError, RuntimeError) as exc:  # no compiler: the suite still runs, without % of peak
        config._fastafm_peak_source = f"not measured: {str(exc).splitlines()[0]}"
        return None


@pytest.fixture(scope="session")
def peak(pytestconfig):
    """The measured FMA peak (fma_peak.measure's dict) or None."""
    if not hasattr(pytestconfig, "_fastafm_peak"):
        pytestconfig._fastafm_peak = _measure_peak(pytestconfig)
    return pytestconfig._fastafm_peak


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU, its measured FMA peak, the core's build and the library versions with every JSON."""
    import fma_peak
    import numpy
    import scipy

    import fastafm
    from fastafm import _core

    if not hasattr(config, "_fastafm_peak"):
        config._fastafm_peak = _measure_peak(config)
    result = config._fastafm_peak
    info = {
        "cpu": fma_peak.cpu_info(),
        "fastafm": fastafm.__version__,
        "openmp": bool(_core.openmp_enabled()),
        "core_isa": harness.core_isa(),
        "build": harness.build_info(),
        "bench_threads": config.getoption("bench_threads"),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "command": " ".join(sys.argv),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    if result:
        keys = ("gflops", "best", "clock_ghz", "flops_per_cycle", "idle_estimate_gflops", "isa_available",
                "settings")
        info["fma_peak"] = {k: result[k] for k in keys if k in result}
    machine_info["fastafm"] = json.loads(json.dumps(info, default=str))


def pytest_terminal_summary(terminalreporter, config):
    """One line with the FMA peak the % columns use, and where a JSON went, the report command."""
    result = getattr(config, "_fastafm_peak", None)
    if result is None and hasattr(config, "_fastafm_peak"):
        terminalreporter.write_line(f"fastafm bench: FMA peak {config._fastafm_peak_source}; % of peak left out")
    if result:
        best = ", ".join(f"{t} thr {v['gflops']:.1f} GFLOP/s ({v['isa']})"
                         for t, v in sorted(result.get("best", {}).items(), key=lambda x: int(x[0])))
        src = getattr(config, "_fastafm_peak_source", "")
        terminalreporter.write_line(f"fastafm bench: FMA peak {best} [{src}]")
    out = config.getoption("benchmark_json", None)
    if out is not None and not config.getoption("benchmark_disable"):
        name = getattr(out, "name", out)
        terminalreporter.write_line(f"fastafm bench: python bench/report.py {name}")
