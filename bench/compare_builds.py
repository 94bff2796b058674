"""Two builds of fastafm side by side: the same benchmarks, interleaved round by round, each build in its own
checkout (its own bench/ scripts, and its .venv with that build installed), so that a refactoring is judged
against the commit before it on the same machine at the same time.

    git worktree add ../base <commit before>      # then build it there: python3 -m venv .venv; pip install -e .
    python bench/compare_builds.py --before ../base --after . --rounds 3

Each round runs, for each build in turn (the order alternates between rounds), bench/thread_scaling.py
(Frappe-shaped rows, k = t = 64, 1 and 2 threads) and bench/shape_sweep.py with --sweep's arguments (default
--quick: Frappe and Criteo shapes, k = t in {10, 16, 64}, every instruction set the CPU has, 2 threads, short
measurements; longer ones, e.g. --sweep "--ks 10,16,64 --isas avx512 --rounds 3 --seconds 1", are steadier). Reported: per measurement the median over
rounds of after/before rows/s (above 1: the new build is faster) with the spread of the per-round ratios, and
the FMA peak measured once at the start (bench/fma_peak.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fma_peak  # noqa: E402


def _run(tree: Path, script: str, args: list, out: Path) -> dict:
    python = tree / ".venv" / "bin" / "python"
    subprocess.run([str(python), str(tree / "bench" / script), *args, "--json", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def measure(tree: Path, tmp: Path, scaling_rows: int, sweep_args: list) -> dict:
    """{measurement name: rows/s} of the build in checkout `tree`."""
    out: dict = {}
    scaling = _run(tree, "thread_scaling.py", ["--rows", str(scaling_rows), "--threads", "1,2", "--rounds", "1",
                                                 "--epochs", "2"], tmp / "scaling.json")
    for row in scaling["results"]:
        out[f"thread_scaling frappe k=64 threads={row['threads']}"] = row["rows_per_s"]
    sweep = _run(tree, "shape_sweep.py", sweep_args + ["--no-torch", "--no-contention"], tmp / "sweep.json")
    for row in sweep["rows"]:
        out[f"shape_sweep {row['shape']} k={row['k']} t={row['t']} {row['isa']} train"] = row["train_rows_s"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="checkout of the build before the change (with its .venv)")
    ap.add_argument("--after", required=True, help="checkout of the build after it")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scaling-rows", type=int, default=100_000)
    ap.add_argument("--sweep", default="--quick", help="shape_sweep.py's arguments (default: --quick)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    cpu = fma_peak.cpu_info()
    peak = fma_peak.measure(threads=[1, 2])
    runs: dict = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for which in order:
                runs[which].append(measure(Path(getattr(args, which)).resolve(), Path(tmp), args.scaling_rows,
                                           args.sweep.split()))
                print(f"round {r + 1}: {which} done", flush=True)
    names = [n for n in runs["before"][0] if all(n in m for m in runs["before"] + runs["after"])]
    table = []
    print(f"\n{cpu['model_name']}; FMA peak (GFLOP/s) {json.dumps(peak.get('gflops', peak))[:200]}")
    print("\n| measurement | before rows/s (median) | after rows/s (median) | after / before (median) | spread |")
    print("|---|---:|---:|---:|---:|")
    for n in names:
        ratios = [a[n] / b[n] for a, b in zip(runs["after"], runs["before"])]
        row = {"name": n, "before": statistics.median(m[n] for m in runs["before"]),
               "after": statistics.median(m[n] for m in runs["after"]), "ratio": statistics.median(ratios),
               "ratios": ratios}
        table.append(row)
        print(f"| {n} | {row['before']:,.0f} | {row['after']:,.0f} | {row['ratio']:.3f} | "
              f"{min(ratios):.3f}-{max(ratios):.3f} |")
    all_ratios = [r["ratio"] for r in table]
    print(f"\nmedian of the medians: {statistics.median(all_ratios):.3f} over {len(table)} measurements")
    result = {"cpu": cpu, "peak": peak, "rounds": args.rounds, "table": table, "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
