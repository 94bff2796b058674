"""Peak memory of AFM training against what it must hold: data + parameters + Adagrad state + a small constant.

Issue 3: "peak RSS during training at most the data + parameters + optimizer state + a small constant; no
per-batch intermediate of size batch x P x k beyond a thread's own block". This script builds the data and
an initialised model (AFMRegressor(n_epochs=0).fit), then measures three phases:

  core   one epoch of a fresh _core.Trainer on arrays already in the core's dtypes (the kernel's own memory)
  epoch  one training epoch, model.partial_fit(X, y): growth of the resident set over what was already there
         (data, parameters and accumulators are resident before it starts)
  fit    a fresh AFMRegressor(n_epochs=1).fit(X, y) from scratch (initialisation included: it draws the
         parameters in float64 before rounding them to float32)

The script re-executes itself with fixed glibc malloc thresholds (MALLOC_MMAP_THRESHOLD_=65536,
MALLOC_TRIM_THRESHOLD_=0) so that freed arrays leave the resident set (--no-reexec keeps the defaults).
Each phase's peak is the kernel's high-water mark VmHWM, reset before the phase by writing 5 to
/proc/self/clear_refs (Linux); resource.getrusage(RUSAGE_SELF).ru_maxrss, the process-lifetime peak, is
printed too. The growth is compared with the work memory a fused trainer needs (order array, per-thread
row scratch P x (k + t), per-thread dense gradients, per-batch sparse gradients) and with the batch x P x k
intermediate the issue forbids.

    python bench/memory.py                              # Frappe-shaped, 200,000 rows, k = t = 64, batch 256
    python bench/memory.py --data criteo --rows 50000 --k 16 --json mem.json
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import data as bench_data  # noqa: E402
import flops  # noqa: E402

MB = 1e6


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def hwm_bytes() -> int | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure_phase(fn) -> dict:
    """Run fn() and return RSS before, peak during (VmHWM since a reset) and after, in bytes."""
    gc.collect()
    can_reset = reset_peak()
    before = rss_bytes()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = hwm_bytes() if can_reset else None
    return {"rss_before": before, "peak": peak, "rss_after": rss_bytes(), "growth": None if peak is None or
            before is None else peak - before, "seconds": seconds, "peak_reset": can_reset}


def expected_sizes(ds, k: int, t: int, batch: int, threads: int) -> dict:
    """Bytes of what training must hold, and of the work memory a fused, per-thread-blocked trainer needs."""
    n, nf = ds.n_rows, ds.n_features
    m = ds.row_nnz
    max_pairs = int(flops.pairs(m.max())) if n else 0
    mean_nnz = float(m.mean()) if n else 0.0
    params = 4 * (1 + nf + nf * k + t * k + 2 * t + k)
    indptr, indices, values = ds.arrays()
    data_bytes = indptr.nbytes + indices.nbytes + values.nbytes + ds.y.nbytes
    work = {
        # The epoch's row order: the permutation (int64) and the copy astype makes.
        "order": 2 * 8 * n,
        # Per thread: E (P x k) and Z (P x t) of the largest row, plus a few k/t vectors.
        "row_scratch": threads * 4 * max_pairs * (k + t) + threads * 4 * 6 * (k + t),
        # Per thread dense gradients [W | b | h | p] and the reduced total.
        "dense_grads": (threads + 1) * 4 * (t * k + 2 * t + k),
        # Per batch: per-non-zero sparse gradients (V row + w) and the touched rows' sums.
        "sparse_grads": 2 * 4 * int(batch * mean_nnz) * (k + 1),
        # Feature -> slot map and the batch's slot lists.
        "slot_maps": 4 * nf + 16 * int(batch * mean_nnz),
    }
    return {
        "data": data_bytes,
        "params": params,
        "adagrad_state": params,
        "work_expected": sum(work.values()),
        "work_breakdown": work,
        "forbidden_batch_PxK": 4 * batch * int(flops.pairs(m[:batch]).max() if n else 0) * k,
        "max_pairs": max_pairs,
    }


def main(argv=None) -> int:
    import fastafm

    ap = argparse.ArgumentParser(description="Peak RSS of an AFM training epoch vs data + parameters + state")
    ap.add_argument("--data", default="frappe", choices=["frappe", "frappe-real", "criteo"])
    ap.add_argument("--rows", type=int, default=bench_data.FRAPPE_ROWS)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--t", type=int, default=None, help="attention size (default k)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-reexec", action="store_true", help="keep glibc's default malloc thresholds")
    args = ap.parse_args(argv)
    t = args.t or args.k
    if not args.no_reexec and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc raises its mmap threshold after large frees and then keeps freed blocks in the heap, so RSS
        # would carry the data generation's garbage. Fixed thresholds make every large array its own mapping,
        # returned to the OS when freed: RSS then tracks live memory. Re-run this script with them.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)

    rss_imports = rss_bytes()
    ds = bench_data.make(args.data, args.rows)
    ds.ids = None  # only PyTorch needs the id matrix
    X, y = ds.X, ds.y
    gc.collect()
    exp = expected_sizes(ds, args.k, t, args.batch, args.threads)

    kw = dict(embedding_dim=args.k, attention_dim=t, batch_size=args.batch, n_threads=args.threads, random_state=0)
    model = fastafm.AFMRegressor(n_epochs=0, **kw).fit(X, y)  # initialised: parameters and accumulators resident
    arrays = ds.arrays()  # the core's dtypes, made before the measurement
    order = np.random.default_rng(0).permutation(ds.n_rows).astype(np.int64)
    from fastafm.training.engine import make_config
    from fastafm.models.hyperparams import core_settings

    state = model.training_state_
    cfg = make_config(core_settings(model.get_params(), "squared", True, True), state.dropout_seed, 0)
    rss_ready = rss_bytes()

    def core_epoch():
        trainer = fastafm._core.Trainer(state.params, state.slots, cfg)
        trainer.train_epoch(*arrays, y, order, cfg.seed, cfg.epoch)

    def estimator_epoch():
        model.partial_fit(X, y)

    def estimator_fit():
        fastafm.AFMRegressor(n_epochs=1, **kw).fit(X, y)

    core = measure_phase(core_epoch)
    arrays = order = None
    epoch = measure_phase(estimator_epoch)
    model = None
    gc.collect()
    fit = measure_phase(estimator_fit)

    held = exp["data"] + exp["params"] + exp["adagrad_state"]
    out = {
        "format": "fastafm-memory/1",
        "command": " ".join(sys.argv),
        "settings": {"data": ds.name, "rows": ds.n_rows, "n_features": ds.n_features, "k": args.k, "t": t,
                     "batch": args.batch, "threads": args.threads},
        "rss_after_imports": rss_imports,
        "rss_ready": rss_ready,
        "expected": exp,
        "held_bytes": held,
        "core_epoch": core,
        "epoch": epoch,
        "fit": fit,
        "ru_maxrss": maxrss_bytes(),
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
    }
    # The bound: peak <= (process before data) + data + params + state + small constant.
    for ph in (core, epoch):
        if ph["peak"] is not None and rss_imports is not None:
            ph["over_held"] = ph["peak"] - rss_imports - held

    def mb(x):
        return "n/a" if x is None else f"{x / MB:,.1f} MB"

    print(f"{ds.name}: {ds.n_rows:,} rows, {ds.n_features:,} features, k={args.k} t={t} batch={args.batch} "
          f"threads={args.threads}")
    print(f"  data (CSR + y)           {mb(exp['data'])}")
    print(f"  parameters               {mb(exp['params'])}")
    print(f"  Adagrad accumulators     {mb(exp['adagrad_state'])}")
    print(f"  = held                   {mb(held)}")
    print(f"  work memory expected     {mb(exp['work_expected'])}  "
          + ", ".join(f"{k} {v / MB:.2f}" for k, v in exp["work_breakdown"].items()))
    print(f"  batch x P x k (forbidden){mb(exp['forbidden_batch_PxK']):>12}")
    print(f"RSS after imports {mb(rss_imports)}, with data + model {mb(rss_ready)}")
    for name, ph in (("_core.Trainer epoch", core), ("epoch (partial_fit)", epoch), ("fit (init + 1 epoch)", fit)):
        print(f"{name:22s} peak {mb(ph['peak'])}, growth over RSS before {mb(ph['growth'])}, "
              f"{ph['seconds']:.2f} s" + ("" if ph["peak_reset"] else "  [VmHWM reset not possible]"))
    for name, ph in (("_core.Trainer epoch", core), ("partial_fit epoch", epoch)):
        if "over_held" in ph:
            print(f"{name} peak - (RSS after imports + held) = {mb(ph['over_held'])} "
                  f"(work memory expected {mb(exp['work_expected'])})")
    print(f"ru_maxrss (process lifetime) {mb(out['ru_maxrss'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
