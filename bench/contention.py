"""2 threads against 1 with one core busy (issue 25's "2 threads >= 1 thread under contention"): training rows/s
of Frappe-shaped rows, k = t = 64, while a busy-loop process of this script's own spins on CPU 0; 1 and 2
threads interleaved in every round, the ratio taken per round.

    python bench/contention.py                       # the shape_sweep case: 20,000 rows a measurement
    python bench/contention.py --rows 200000 --all   # whole epochs of Frappe's size (about 780 batches)
    FASTAFM_TEAM_MODE=team python bench/contention.py  # the team never goes solo (for comparison)

An epoch pays its adaptive decisions once (a probe of the team at its start): the shape_sweep case's short
epochs (78 batches) show that cost; --all gives an epoch as a fit on Frappe runs it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shape_sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the Frappe-shaped data")
    ap.add_argument("--all", action="store_true", help="an epoch over all --rows rows (else about 1 s of work)")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    case = shape_sweep.Case("frappe", args.rows)
    rows = case.ds.X.shape[0] if args.all else case.rows_for(64, 64, 1.0, 60.0)
    rates: dict = {1: [], 2: []}
    busy = shape_sweep.busy_loop()
    try:
        time.sleep(0.3)
        for _ in range(args.rounds):
            for n in (1, 2):
                rates[n].append(rows / shape_sweep.time_train(case, 64, 64, rows, n, args.batch))
    finally:
        busy.kill()
        busy.wait()
    ratios = [two / one for one, two in zip(rates[1], rates[2])]
    print(f"{shape_sweep.cpu_model()}; {rows:,} rows an epoch, batch {args.batch}, {args.rounds} rounds, one core busy")
    for n in (1, 2):
        print(f"{n} thread(s): " + ", ".join(f"{r:,.0f}" for r in rates[n]) + " rows/s")
    print(f"2 threads / 1 thread per round: median {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f}); best / best {max(rates[2]) / max(rates[1]):.3f}")


if __name__ == "__main__":
    main()
