"""Per-core efficiency of training and prediction, timed in CPU time on one thread.

Why CPU time: on a machine shared with other jobs, wall-clock times of a 2-thread run measure the scheduler
(OpenMP barriers wait for a descheduled thread); the CPU time of one thread is far less disturbed. Run it several
times and report the spread: cache contention from neighbours still moves it.

    python bench/cpu_efficiency.py                      # Frappe-shaped k=t=256/64/16 and Criteo-shaped k=t=16
    python bench/cpu_efficiency.py --peak 93.3 --json cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as bench_data  # noqa: E402
import fma_peak  # noqa: E402

import fastafm  # noqa: E402
from fastafm import _core  # noqa: E402
from fastafm.training.engine import make_config  # noqa: E402
from fastafm.models.hyperparams import core_settings  # noqa: E402
from fastafm.data.validation import csr_arrays  # noqa: E402

CASES = [("frappe", 256, 128, 3000), ("frappe", 64, 256, 20000), ("frappe", 16, 256, 40000), ("criteo", 16, 256, 3000)]


def measure(name: str, k: int, batch: int, rows: int, repeats: int = 3) -> dict:
    ds = bench_data.frappe_like(rows, seed=0) if name == "frappe" else bench_data.criteo_like(rows, seed=0)
    X, y = ds.X, np.asarray(ds.y, dtype=np.float32)
    model = fastafm.AFMRegressor(embedding_dim=k, attention_dim=k, batch_size=batch, n_epochs=0, n_threads=1,
                                 random_state=0).fit(X, y)  # n_epochs=0: parameters initialised, not trained
    arrays = csr_arrays(X)
    order = np.arange(X.shape[0], dtype=np.int64)
    state = model.training_state_
    cfg = make_config(core_settings(model.get_params(), "squared", True, True), state.dropout_seed, 0)
    pairs = int(np.sum(np.diff(arrays[0]) * (np.diff(arrays[0]) - 1) // 2))
    train = predict = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        _core.Trainer(state.params, state.slots, cfg).train_epoch(*arrays, y, order, cfg.seed, cfg.epoch)
        train = min(train, time.process_time() - start)
        start = time.process_time()
        _core.predict(state.params, *arrays, True, 1)
        predict = min(predict, time.process_time() - start)
    return {"data": name, "k": k, "t": k, "batch": batch, "rows": X.shape[0],
            "train_rows_s": X.shape[0] / train, "train_gflops": 6 * pairs * k * k / train / 1e9,
            "predict_rows_s": X.shape[0] / predict, "predict_gflops": 2 * pairs * k * k / predict / 1e9}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak", type=float, default=None, help="1-thread FMA peak in GFLOP/s (default: measure)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    peak = args.peak
    if peak is None:
        cache = Path(__file__).resolve().parent.parent / ".benchmarks" / "fma_peak.json"
        peak = fma_peak.load_or_measure(cache, threads=(1,))["best"]["1"]["gflops"]
    print(f"1-thread peak {peak:.1f} GFLOP/s; ISA {_core.active_isa()}")
    print("| data | k = t | batch | train rows/s | GFLOP/s | % peak | predict rows/s | GFLOP/s | % peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = []
    for case in CASES:
        r = measure(*case)
        r["peak"] = peak
        out.append(r)
        print(f"| {r['data']} | {r['k']} | {r['batch']} | {r['train_rows_s']:,.0f} | {r['train_gflops']:.1f} | "
              f"{100 * r['train_gflops'] / peak:.0f}% | {r['predict_rows_s']:,.0f} | {r['predict_gflops']:.1f} | "
              f"{100 * r['predict_gflops'] / peak:.0f}% |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
