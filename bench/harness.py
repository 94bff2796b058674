"""Helpers shared by the benchmark files: settings, cached data, model set-up and the extra_info record.

Every benchmark stores in `benchmark.extra_info`:

    impl       "fastafm", "reference" (NumPy float64), "numpy", "sklearn" or "torch"
    shape      the case key, e.g. "frappe k=64 t=64 b=256"; report.py compares impls of one shape
    items      work units per call (rows, or elements for Adagrad), unit the name of the unit
    flops      FLOPs per call by bench/flops.py (absent where not meaningful), bytes where bandwidth matters
    threads    threads the implementation used; peak_gflops / peak_isa: the measured FMA peak for them
and, once timed (not with --benchmark-disable), per_s / gflops / pct_peak / gbytes_per_s from the best
round (`min`). report.py recomputes the rates from any statistic in the JSON.
"""
from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import data as bench_data

REPO = Path(__file__).resolve().parent.parent

#: Rows of the Frappe-shaped data per embedding size when --bench-rows is not given (short runs; the
#: issue's figures use 200,000 rows: --bench-rows 200000).
DEFAULT_ROWS = {16: 20_000, 64: 10_000, 256: 2_000}
DEFAULT_CRITEO_ROWS = 5_000
SMOKE_ROWS = 256

#: (dataset, k = t, batch) of the epoch / torch groups: the issue's targets are frappe 256/128, 64/256 and
#: criteo 16; the rest fill the grid.
EPOCH_CASES = [
    ("frappe", 16, 128), ("frappe", 16, 256),
    ("frappe", 64, 128), ("frappe", 64, 256),
    ("frappe", 256, 128), ("frappe", 256, 256),
    ("criteo", 16, 256),
]
#: (dataset, k = t, batch) of the kernel groups (one batch per shape).
KERNEL_CASES = [("frappe", 16, 256), ("frappe", 64, 256), ("frappe", 256, 128), ("criteo", 16, 256)]


def case_id(case) -> str:
    name, k, batch = case
    return f"{name}-k{k}-b{batch}"


def shape_key(name: str, k: int, t: int, batch: int | None = None) -> str:
    return f"{name} k={k} t={t}" + (f" b={batch}" if batch else "")


@dataclass
class Settings:
    """Command-line settings of a benchmark session (see conftest.py for the options)."""

    smoke: bool
    rows: int | None
    criteo_rows: int
    torch_rows: int | None
    threads: int
    rounds: int
    libfm_mb: float
    frappe_data: str  # "frappe" (synthetic) or "frappe-real"

    def rows_for(self, name: str, k: int) -> int:
        if self.smoke:
            return SMOKE_ROWS
        if name == "criteo":
            return self.criteo_rows
        return self.rows or DEFAULT_ROWS.get(k, 10_000)

    def torch_rows_for(self, name: str, k: int) -> int:
        rows = self.rows_for(name, k)
        return min(rows, self.torch_rows) if self.torch_rows and not self.smoke else rows

    def warmup_rounds(self, n_rows: int) -> int:
        """One untimed round for short data; none in smoke runs or where a round is long anyway."""
        return 0 if self.smoke or n_rows >= 50_000 else 1

    def dataset_name(self, name: str) -> str:
        return self.frappe_data if name == "frappe" else name

    def ref_rows(self, name: str, k: int) -> int:
        """Rows the NumPy reference runs on (it is slow: a Python loop over rows)."""
        if self.smoke:
            return 4
        return 32 if (name == "criteo" or k >= 256) else 128


@functools.lru_cache(maxsize=8)
def dataset(name: str, n_rows: int) -> bench_data.Dataset:
    """Benchmark rows, built once per session per (name, n_rows)."""
    return bench_data.make(name, n_rows, seed=0)


def init_model(n_features: int, k: int, t: int, seed: int = 0):
    """(params, accumulators): fresh float32 dicts as fastafm.training.state.init_state makes them (the accumulators
    are adagrad's slot G)."""
    from fastafm import reference

    ref = reference.init_params(n_features, k, t, rng=seed)
    params = {name: np.ascontiguousarray(np.atleast_1d(getattr(ref, name)), dtype=np.float32)
              for name in reference.PARAM_NAMES}
    accum = {name: np.full_like(arr, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, arr in params.items()}
    return params, accum


def reference_params(params: dict):
    """fastafm.reference.Params (float64) holding the values of a float32 parameter dict."""
    from fastafm import reference

    return reference.Params(**{name: (float(v[0]) if name == "w0" else v) for name, v in params.items()})


def train_config(k: int, batch: int, threads: int, seed: int = 0, attention: bool = True, dropout: float = 0.2,
                 learning_rate: float = 0.05):
    """A _core.TrainConfig with the estimator's defaults (squared loss, Adagrad)."""
    from fastafm import _core

    cfg = _core.TrainConfig()
    cfg.loss = _core.Loss.squared
    cfg.optimizer = _core.Optimizer.adagrad
    cfg.attention = attention
    cfg.dropout = dropout
    cfg.attention_l2 = 0.0
    cfg.l2 = 0.0
    cfg.learning_rate = learning_rate
    cfg.batch_size = batch
    cfg.seed = seed
    cfg.epoch = 0
    cfg.n_threads = threads
    return cfg


def epoch_order(n_rows: int, seed: int = 0) -> np.ndarray:
    """The row order of a benchmark epoch (torch_afm.make_batches shuffles with the same generator)."""
    return np.random.default_rng(seed).permutation(n_rows).astype(np.int64)


def epoch_flops(ds, k: int, t: int, batch: int, order=None) -> tuple:
    """(full-model FLOPs, GEMM-only FLOPs) of one training epoch over `ds` in `order` (default epoch_order)."""
    import flops

    order = epoch_order(ds.n_rows) if order is None else order
    indptr, indices, _ = ds.arrays()
    touched = flops.touched_per_batch(indptr, indices, order, batch)
    return (flops.epoch_flops_train(ds.row_nnz, k, t, batch, touched=touched),
            flops.epoch_flops_train(ds.row_nnz, k, t, batch, gemm_only=True))


def peak_for(peak: dict | None, threads: int):
    """(GFLOP/s, isa, how) of the measured peak for `threads`, or (None, None, None) without a measurement."""
    if not peak:
        return None, None, None
    import fma_peak

    try:
        return fma_peak.peak_gflops(peak, threads)
    except KeyError:
        return None, None, None


def record(benchmark, peak, *, impl: str, shape: str, items: float, unit: str = "rows", flops: float | None = None,
           nbytes: float | None = None, threads: int = 1, **extra) -> None:
    """Fill benchmark.extra_info before the run (see the module docstring)."""
    info = benchmark.extra_info
    info.update(impl=impl, shape=shape, items=float(items), unit=unit, threads=int(threads))
    if flops is not None:
        info["flops"] = float(flops)
    if nbytes is not None:
        info["bytes"] = float(nbytes)
    gflops, isa, how = peak_for(peak, threads)
    if gflops:
        info.update(peak_gflops=round(gflops, 3), peak_isa=isa, peak_how=how)
    info.update(extra)


def finish(benchmark) -> None:
    """After the run: rates from the best round into extra_info (nothing with --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    if not stats:
        return
    best = stats.stats.min
    if not best or best <= 0:
        return
    info = benchmark.extra_info
    info["per_s"] = info["items"] / best
    if "flops" in info:
        info["gflops"] = info["flops"] / best / 1e9
        if info.get("peak_gflops"):
            info["pct_peak"] = 100.0 * info["gflops"] / info["peak_gflops"]
    if "bytes" in info:
        info["gbytes_per_s"] = info["bytes"] / best / 1e9


def blas_limits(threads: int):
    """Context limiting BLAS threads (the NumPy reference's matmuls) to `threads`, when threadpoolctl exists."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def core_isa() -> str | None:
    """The SIMD path the core reports, if it exposes one (names tried: simd_path, isa, active_isa)."""
    from fastafm import _core

    for name in ("simd_path", "isa", "active_isa", "kernel_isa"):
        attr = getattr(_core, name, None)
        if attr is not None:
            try:
                return str(attr() if callable(attr) else attr)
            except Exception:  # noqa: BLE001 - informational only
                return None
    return None


def build_info() -> dict:
    """Build settings of the installed core: the CMake cache of the editable build, and forcing env vars."""
    out = {}
    caches = sorted(glob.glob(str(REPO / "build" / "*" / "CMakeCache.txt")))
    if caches:
        for line in Path(caches[-1]).read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            name = key.split(":")[0]
            if name in ("CMAKE_BUILD_TYPE", "CMAKE_CXX_FLAGS", "CMAKE_CXX_COMPILER", "AFM_OPENMP", "AFM_NATIVE",
                        "AFM_SANITIZE") or name.startswith("AFM_"):
                out[name] = value
        out["cmake_cache"] = os.path.relpath(caches[-1], REPO)
    for var in sorted(os.environ):
        if var.startswith(("FASTAFM_", "AFM_", "OMP_")):
            out["env_" + var] = os.environ[var]
    return out
