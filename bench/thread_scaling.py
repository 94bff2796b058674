"""Thread scaling of AFMRegressor training: epochs at n_threads = 1, 2, 4, 8, 16 (capped at the core count).

Frappe-shaped data (200,000 rows by default), k = t = 64, batch 256: the issue's scaling target is 2 threads
at least 1.8x one thread. Each round fits a fresh model with every thread count in turn (interleaved, so
background load hits all counts alike) for --epochs epochs; an epoch's time is AFMRegressor.history_'s
"seconds" (the core's epoch). The best epoch per thread count is reported (the median too).

    python bench/thread_scaling.py                                   # all defaults, on the machine's cores
    python bench/thread_scaling.py --rows 20000 --threads 1,2 --rounds 1 --epochs 1   # a quick check
    python bench/thread_scaling.py --json scaling.json --peak .benchmarks/fma_peak.json
    python bench/thread_scaling.py --threads 1,2 --independent      # + the machine's own ceiling (see below)

--independent also runs, for each thread count n > 1, n separate one-thread fits at the same time (processes
sharing nothing) and reports their combined rows/s over one fit alone: the speedup the machine itself allows
for this work (shared caches, memory, clock and the host's other guests), which the threaded trainer can
approach but not exceed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data as bench_data  # noqa: E402
import flops  # noqa: E402
import fma_peak  # noqa: E402


def run(ds, k: int, t: int, batch: int, threads, rounds: int, epochs: int, seed: int = 0) -> dict:
    """{threads: [epoch seconds, ...]} over `rounds` interleaved fits of `epochs` epochs each."""
    import fastafm

    times = {n: [] for n in threads}
    for _ in range(rounds):
        for n in threads:
            model = fastafm.AFMRegressor(embedding_dim=k, attention_dim=t, batch_size=batch, n_epochs=epochs,
                                         n_threads=n, random_state=seed)
            model.fit(ds.X, ds.y)
            times[n] += [h["seconds"] for h in model.history_]
    return times


def _independent_worker(args_tuple, barrier, queue) -> None:
    data_name, rows, k, t, batch, rounds, epochs = args_tuple
    ds = bench_data.make(data_name, rows)
    barrier.wait()
    queue.put(run(ds, k, t, batch, [1], rounds, epochs)[1])


def run_independent(data_name: str, rows: int, k: int, t: int, batch: int, n: int, rounds: int, epochs: int):
    """Epoch seconds of each of n one-thread fits run at the same time in separate processes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no fork after OpenMP started in this process
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_independent_worker, args=((data_name, rows, k, t, batch, rounds, epochs),
                                                            barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="AFMRegressor training speed per thread count")
    ap.add_argument("--data", default="frappe", choices=["frappe", "frappe-real", "criteo"])
    ap.add_argument("--rows", type=int, default=bench_data.FRAPPE_ROWS)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--t", type=int, default=None, help="attention size (default k)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", default="1,2,4,8,16", help="comma-separated thread counts (default 1,2,4,8,16)")
    ap.add_argument("--allow-oversubscribe", action="store_true", help="keep counts above the core count")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved fits per thread count (default 3)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per fit (default 2)")
    ap.add_argument("--peak", help="fma_peak JSON for %% of peak (bench/fma_peak.py --json ...)")
    ap.add_argument("--measure-peak", action="store_true", help="measure the FMA peak for these counts first")
    ap.add_argument("--independent", action="store_true",
                    help="also time n separate one-thread fits at once per count n > 1 (the machine's ceiling)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    cores = fma_peak.n_cores()
    wanted = sorted({int(x) for x in args.threads.split(",") if int(x) >= 1})
    threads = wanted if args.allow_oversubscribe else [n for n in wanted if n <= cores]
    if not threads:
        threads = [1]
    skipped = [n for n in wanted if n not in threads]
    t = args.t or args.k

    peak = None
    if args.measure_peak:
        peak = fma_peak.measure(threads=threads)
    elif args.peak:
        peak = json.loads(Path(args.peak).read_text())

    ds = bench_data.make(args.data, args.rows)
    epoch_flops = flops.epoch_flops_train(ds.row_nnz, args.k, t, args.batch)
    start = time.perf_counter()
    times = run(ds, args.k, t, args.batch, threads, args.rounds, args.epochs)
    wall = time.perf_counter() - start

    cpu = fma_peak.cpu_info()
    print(f"{cpu['model_name']}, {cores} cores; {ds.name} rows={ds.n_rows} k={args.k} t={t} batch={args.batch}; "
          f"{args.rounds} rounds x {args.epochs} epochs per count ({wall:.0f} s)"
          + (f"; skipped {skipped} (> {cores} cores)" if skipped else ""))
    print()
    print("| threads | s/epoch (best) | s/epoch (median) | rows/s | speedup vs 1 | efficiency | GFLOP/s | % of peak |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    base = min(times[threads[0]]) * threads[0] if threads[0] == 1 else None
    for n in threads:
        best, med = min(times[n]), statistics.median(times[n])
        row = {"threads": n, "best_s": best, "median_s": med, "epoch_seconds": times[n],
               "rows_per_s": ds.n_rows / best, "gflops": epoch_flops / best / 1e9}
        if base:
            row["speedup"] = base / best
            row["efficiency"] = row["speedup"] / n
        if peak:
            try:
                g, isa, how = fma_peak.peak_gflops(peak, n)
                row.update(peak_gflops=g, peak_isa=isa, peak_how=how, pct_peak=100 * row["gflops"] / g)
            except KeyError:
                pass
        results.append(row)
        print(f"| {n} | {best:.3f} | {med:.3f} | {row['rows_per_s']:,.0f} | "
              + (f"{row['speedup']:.2f}x | {100 * row['efficiency']:.0f}% | " if base else " |  | ")
              + f"{row['gflops']:.2f} | " + (f"{row['pct_peak']:.1f}% |" if "pct_peak" in row else " |"))
    independent = []
    if args.independent and base:
        print()
        print("| separate 1-thread fits at once | s/epoch (best of each) | combined rows/s | speedup vs 1 alone |")
        print("|---:|---:|---:|---:|")
        for n in threads[1:]:
            runs = run_independent(args.data, args.rows, args.k, t, args.batch, n, args.rounds, args.epochs)
            bests = [min(r) for r in runs]
            combined = sum(ds.n_rows / b for b in bests)
            independent.append({"processes": n, "best_s": bests, "rows_per_s": combined,
                                "speedup": combined / (ds.n_rows / base)})
            print(f"| {n} | {', '.join(f'{b:.3f}' for b in bests)} | {combined:,.0f} | "
                  f"{independent[-1]['speedup']:.2f}x |")
    if args.json:
        out = {"format": "fastafm-thread-scaling/1", "cpu": cpu, "command": " ".join(sys.argv),
               "settings": {"data": ds.name, "rows": ds.n_rows, "k": args.k, "t": t, "batch": args.batch,
                            "rounds": args.rounds, "epochs": args.epochs, "skipped": skipped},
               "epoch_flops": epoch_flops, "results": results, "independent": independent, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if peak:
            out["fma_peak"] = {k: peak[k] for k in ("gflops", "best", "clock_ghz") if k in peak}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
