"""What linear_fallback=True costs a default fit: CPU seconds of the same fit with and without it, interleaved.

    OPENBLAS_NUM_THREADS=1 python bench/linear_fallback_cost.py --data ../shared/data --rounds 2

One thread for fastafm (n_threads=1), the rows of bench/peer_table.py (seed 0: the logs' training rows less a
stratified 10% as the eval_set; the synthetic sets' own splits), AFM and FwFM given the sets' fields as there. CPU seconds of the process (time.process_time)
are less sensitive to other jobs on the machine than the wall clock, which is printed too; the ratio is the
median over rounds, the two fits alternating within each round.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import click_logs  # noqa: E402
import peer_table  # noqa: E402

import fastafm  # noqa: E402


def timed_fit(cls, split, fallback: bool) -> tuple:
    model = getattr(fastafm, cls)(random_state=0, n_threads=1, linear_fallback=fallback,
                                  **({"fields": split.fields} if cls.startswith(("FwFM", "AFM")) else {}))
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(split.train[0], split.train[1], eval_set=split.valid[:2])
    return time.process_time() - cpu, time.perf_counter() - wall, getattr(model, "linear_share_", 0.0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="../shared/data")
    ap.add_argument("--sets", nargs="+", default=peer_table.CLICK_SETS + peer_table.SYNTH_SETS)
    ap.add_argument("--classes", nargs="+", default=["AFMClassifier", "FwFMClassifier", "FMClassifier"])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    logs = click_logs.load(args.data, [s for s in args.sets if s in peer_table.CLICK_SETS])
    print("| set | model | CPU s without | CPU s with | ratio (median, range) | linear_share_ |")
    print("|---|---|---:|---:|---:|---|")
    for name in args.sets:
        split = (peer_table.click_split(logs[name], args.data, 0) if name in peer_table.CLICK_SETS
                 else peer_table.synth_split(name, 0))
        for cls in args.classes:
            off, on, ratios, kept = [], [], [], ""
            for _ in range(args.rounds):
                a = timed_fit(cls, split, False)
                b = timed_fit(cls, split, True)
                off.append(a[0])
                on.append(b[0])
                ratios.append(b[0] / a[0])
                kept = f"{b[2]:.2f}"
            print(f"| {split.name} | {cls} | {statistics.median(off):.2f} | {statistics.median(on):.2f} | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {kept} |", flush=True)


if __name__ == "__main__":
    main()
