"""precision="bf16" vs "fp32" training throughput (issue 25): one epoch of a fresh _core.Trainer on the shape
sweep's Frappe-shaped rows (10 one-hot fields, 45 pairs; bench/shape_sweep.py's Case, batch 256, Adagrad,
dropout 0.2), fp32 and bf16 alternating within every round (so that load from other jobs hits both alike),
with the FMA peak of bench/fma_peak.py measured in the same run; and, per k, the forward alone (_core.predict
vs _testing.predict_bf16) to split the gain between forward and backward.

    python bench/bf16_speed.py                      # k = t = 64, 7 rounds, 2 threads
    python bench/bf16_speed.py --ks 32,64,128,256 --rounds 5

Prints one line per k: the fp32 and bf16 rows/s (best round), GFLOP/s and % of the FMA peak, the bf16/fp32
ratio of every round (median, min-max), and the load (uptime) before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fma_peak  # noqa: E402
import harness  # noqa: E402
import shape_sweep  # noqa: E402


#: --cpu-time: the calling thread's CPU time instead of wall time (1 thread only: the team's one thread is the
#: caller), so that other jobs on the machine change the figures much less (bench/shape_sweep.py's option).
CLOCK = time.perf_counter


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def time_train(case, k, t, rows, threads, batch, bf16: bool) -> float:
    from fastafm import _core

    params, accum = case.model(k, t)
    cfg = harness.train_config(k, batch, threads)
    cfg.bf16 = bf16
    order = harness.epoch_order(rows)
    start = CLOCK()
    _core.Trainer(params, {"G": accum}, cfg).train_epoch(*case.arrays, case.y, order, cfg.seed, cfg.epoch)
    return CLOCK() - start


def time_forward(case, k, t, rows, threads, bf16: bool) -> float:
    from fastafm import _core
    from fastafm._core import _testing

    params, _ = case.model(k, t)
    indptr = case.arrays[0][: rows + 1]
    nz = int(indptr[-1])
    args = (params, indptr, case.arrays[1][:nz], case.arrays[2][:nz])
    start = CLOCK()
    if bf16:
        _testing.predict_bf16(*args, threads)
    else:
        _core.predict(*args, True, threads)
    return CLOCK() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="64", help="k = t values")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=0.4, help="target seconds per fp32 epoch")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cpu-time", action="store_true", help="time the thread's CPU time (needs --threads 1)")
    args = ap.parse_args(argv)
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time needs --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    from fastafm import _core

    if not _core.bf16_supported():
        print("this CPU lacks AVX512_BF16: nothing to time", file=sys.stderr)
        return 1
    before = load()
    peak = fma_peak.measure(threads=[args.threads], isas=["avx512"])
    pk = fma_peak.peak_gflops(peak, args.threads, "avx512")[0]
    case = shape_sweep.Case("frappe", 200_000)
    ks = [int(x) for x in args.ks.split(",")]
    plan = []
    for k in ks:
        rows = case.rows_for(k, k, args.seconds, 60.0 * args.threads)
        plan.append((k, rows, shape_sweep.epoch_flops(case, k, k, rows, args.batch)))
    times = {(k, p, w): [] for k, _, _ in plan for p in ("fp32", "bf16") for w in ("train", "forward")}
    for _ in range(args.rounds):
        for k, rows, _ in plan:
            for p in ("fp32", "bf16"):
                times[(k, p, "train")].append(time_train(case, k, k, rows, args.threads, args.batch, p == "bf16"))
                times[(k, p, "forward")].append(time_forward(case, k, k, 3 * rows, args.threads, p == "bf16"))
    after = load()
    cpu = fma_peak.cpu_info()
    print(f"CPU: {cpu['model_name']}, flags {' '.join(f for f in cpu['flags'] if f.startswith('avx512'))}; "
          f"{args.threads} threads{' (CPU time)' if args.cpu_time else ''}; FMA peak (avx512, same run) {pk:.0f} GFLOP/s; load before {before}, after {after}")
    out = []
    for k, rows, fl in plan:
        f32, b16 = times[(k, "fp32", "train")], times[(k, "bf16", "train")]
        ratios = [a / b for a, b in zip(f32, b16)]
        fr = [a / b for a, b in zip(times[(k, "fp32", "forward")], times[(k, "bf16", "forward")])]
        g32, g16 = fl / min(f32) / 1e9, fl / min(b16) / 1e9
        rec = dict(k=k, t=k, rows=rows, fp32_rows_s=rows / min(f32), bf16_rows_s=rows / min(b16),
                   fp32_gflops=g32, bf16_gflops=g16, fp32_pct=100 * g32 / pk, bf16_pct=100 * g16 / pk,
                   ratio_median=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
                   ratio_best=min(f32) / min(b16), forward_ratio_median=statistics.median(fr), peak=pk)
        out.append(rec)
        print(f"k = t = {k:4d}: fp32 {rec['fp32_rows_s']:9.0f} rows/s ({g32:5.1f} GFLOP/s, {rec['fp32_pct']:4.1f}% of "
              f"peak), bf16 {rec['bf16_rows_s']:9.0f} rows/s ({g16:5.1f} GFLOP/s, {rec['bf16_pct']:4.1f}%); "
              f"bf16/fp32 train {rec['ratio_median']:.2f}x median of {len(ratios)} rounds "
              f"(min {rec['ratio_min']:.2f}, max {rec['ratio_max']:.2f}; best/best {rec['ratio_best']:.2f}); "
              f"forward alone {rec['forward_ratio_median']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(cpu=cpu, peak=pk, load=[before, after], results=out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
