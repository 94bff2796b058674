"""Training speed of field-aware AFM against plain AFM (issue 22, item 2): one epoch of a fresh core Trainer on
Frappe-shaped rows (10 one-hot fields, 45 pairs a row; bench/data.py), for field_aware none / weights / logits /
both, rounds interleaved (every mode once per round, the order rotating) so that other jobs' load hits all alike.
Reported: the best round's rows/s per mode and k = t, the ratio to "none" with the spread over rounds (each
round's ratio), the CPU, the FMA peak measured in the same run (bench/fma_peak.py) and the load.

    python bench/field_aware_speed.py --ks 16,64 --rows 40000 --rounds 5 --threads 1 --cpu-time
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fma_peak  # noqa: E402
import harness  # noqa: E402
import shape_sweep  # noqa: E402

MODES = {"none": (), "weights": ("R",), "logits": ("S",), "both": ("R", "S")}


#: --cpu-time: the calling thread's CPU time (1 thread: the team is the caller), which other jobs change less.
CLOCK = time.perf_counter


def epoch_seconds(case, fields, k, t, mode, rows, threads) -> float:
    from fastafm import _core

    params, accum = case.model(k, t)
    n_fields = int(fields.max()) + 1
    for name in MODES[mode]:
        params[name] = np.full((n_fields, n_fields), 1.0 if name == "R" else 0.0, np.float32)
        accum[name] = np.full((n_fields, n_fields), accum["W"].flat[0], np.float32)
    if MODES[mode]:
        params["field"] = fields
    cfg = harness.train_config(k, 128, threads)
    order = harness.epoch_order(rows)
    trainer = _core.Trainer(params, {"G": accum}, cfg)
    start = CLOCK()
    trainer.train_epoch(*case.arrays, case.y, order, cfg.seed, cfg.epoch)
    return CLOCK() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="16,64")
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu-time", action="store_true", help="CPU time of the calling thread (needs --threads 1)")
    args = ap.parse_args(argv)
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time needs --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    peak, _ = shape_sweep.peaks(args.threads)
    case = shape_sweep.Case("frappe", args.rows)
    sizes = case.ds.field_sizes
    fields = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
    fields = np.concatenate([fields, np.zeros(case.ds.X.shape[1] - fields.shape[0], np.int32)])
    from fastafm import _core

    print(f"CPU: {shape_sweep.cpu_model()}, ISA {_core.active_isa()}, {args.threads} thread(s); FMA peak "
          + ", ".join(f"{isa} {g:.1f} GFLOP/s" for isa, g in peak.items()) + f"; load {os.getloadavg()}")
    ks = [int(x) for x in args.ks.split(",")]
    secs = {(k, m): [] for k in ks for m in MODES}
    names = list(MODES)
    for r in range(args.rounds):
        for k in ks:
            for m in names[r % len(names):] + names[:r % len(names)]:
                secs[(k, m)].append(epoch_seconds(case, fields, k, k, m, args.rows, args.threads))
    print(f"load after: {os.getloadavg()}")
    print("| k = t | mode | rows/s (best round) | / none (median of rounds) | spread of the ratio |")
    print("|---:|---|---:|---:|---|")
    for k in ks:
        for m in MODES:
            ratios = [b / a for a, b in zip(secs[(k, m)], secs[(k, "none")])]  # rows/s ratio to none
            print(f"| {k} | {m} | {args.rows / min(secs[(k, m)]):,.0f} | {statistics.median(ratios):.3f} | "
                  f"{min(ratios):.3f} - {max(ratios):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
