"""Worker memory of Dask training from cache files (issue 16): the workers stream their files in blocks.

Frappe-shaped rows (bench/data.py) are written as `--files` cache files (fastafm.convert) per size in --rows;
a LocalCluster of 2 worker processes x 1 thread (optionally with a `--memory-limit` per worker, which Dask
enforces by pausing and finally restarting a worker above it) trains one epoch of DaskAFMRegressor on them.
Per worker: the shard (the bytes of its cache files), its RSS before `fit` (after a warm-up fit that imports
and initialises everything), its peak RSS during `fit` (sampled every 5 ms on the worker), and the growth. The
target: growth below half of the shard, and flat as the shard grows (2x the rows: growth within 10%).

    python bench/dask_memory.py                                   # 2M and 4M rows in 4 files, k = t = 16
    python bench/dask_memory.py --rows 4000000 8000000 --json out.json
    python bench/dask_memory.py --rows 12000000 --memory-limit 400MiB --block-rows 200000   # shard > limit
    python bench/dask_memory.py --rows 4000000 8000000 --eval-fraction 0.25     # + an eval_set of cache files

With --eval-fraction F, an eval_set of F x the training rows (cache files, as many as the training files) is
given to fit with early stopping on: each worker streams its share of the eval files at every evaluation.

With a memory limit, keep the worker's RSS (about 200 MiB after imports) plus one block under Dask's spill
threshold (60% of the limit), or Dask spills and re-reads the shard's block at every round.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import data  # noqa: E402  (bench/data.py)
from fma_peak import cpu_model  # noqa: E402


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _start_sampler(dask_worker=None) -> int:
    """On a worker: a thread that samples this process's RSS every 5 ms and keeps the maximum, kept on the
    Worker object between calls. (ru_maxrss and VmHWM would do, but a forked worker inherits them from the
    process that started the cluster.)"""
    import threading

    stop = threading.Event()
    state = {"stop": stop, "peak": _rss_now()}

    def sample():
        while not stop.wait(0.005):  # timing: a sampling period, asserts nothing
            state["peak"] = max(state["peak"], _rss_now())

    state["thread"] = threading.Thread(target=sample, daemon=True)
    state["thread"].start()
    dask_worker.fastafm_rss_sampler = state  # client.run passes the Worker as dask_worker
    return state["peak"]


def _stop_sampler(dask_worker=None) -> int:
    state = dask_worker.fastafm_rss_sampler
    state["stop"].set()
    state["thread"].join()
    return max(state["peak"], _rss_now())


def write_caches(n_rows: int, n_files: int, directory: Path, seed: int) -> list:
    import fastafm

    paths = []
    per = n_rows // n_files
    for i in range(n_files):
        ds = data.frappe_like(per, seed=seed + i)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"part{i}.afmcache"
        fastafm.convert((ds.X, ds.y), path)
        paths.append(str(path))
    return paths


def measure(paths: list, args, eval_paths=None) -> dict:
    from dask.distributed import Client, LocalCluster

    import fastafm
    from fastafm.dask import DaskAFMRegressor

    # early_stopping=False: "auto" (on from 10,000 rows) would hold 10% of the rows out, read into memory
    params = dict(embedding_dim=args.k, attention_dim=args.k, n_epochs=1, random_state=0, sync_rows=args.sync_rows,
                  early_stopping=bool(eval_paths))
    cluster_kw = dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    if args.memory_limit:
        cluster_kw["memory_limit"] = args.memory_limit
    with LocalCluster(**cluster_kw) as cluster, Client(cluster) as client:
        # Warm-up on a small file: imports, the core's first allocations, Dask's own buffers.
        small = fastafm.convert((fastafm.CacheFile(paths[0]).read_rows(0, 5000)), Path(paths[0]).with_suffix(".w"))
        DaskAFMRegressor(client=client, **params).fit([small.path, small.path],
                                                      eval_set=([small.path, small.path], None) if eval_paths else None)
        before = client.run(_start_sampler)
        start = time.perf_counter()
        files = [fastafm.CacheFile(p, block_rows=args.block_rows) for p in paths]
        eval_set = None if not eval_paths else ([fastafm.CacheFile(p, block_rows=args.block_rows)
                                                  for p in eval_paths], None)
        model = DaskAFMRegressor(client=client, **params).fit(files, eval_set=eval_set)
        seconds = time.perf_counter() - start
        peak = client.run(_stop_sampler)
        workers = sorted(before)
    n_rows = sum(fastafm.CacheFile(p).n_rows for p in paths)
    sizes = [os.path.getsize(p) for p in paths]
    half = len(paths) // 2  # contiguous runs of equal files: the first half to the first worker
    shards = [sum(sizes[:half]), sum(sizes[half:])]
    out = {"rows": n_rows, "files": len(paths), "seconds": seconds, "rows_per_s": n_rows / seconds,
           "train_loss": model.history_[-1]["train_loss"], "workers": [],
           "eval_rows": sum(fastafm.CacheFile(p).n_rows for p in eval_paths) if eval_paths else 0,
           "eval_rmse": model.history_[-1].get("eval_rmse")}
    for w, shard in zip(workers, shards):
        growth = peak[w] - before[w]
        out["workers"].append({"shard_bytes": shard, "rss_before": before[w], "peak_rss": peak[w],
                               "growth": growth, "growth_over_shard": growth / shard})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000_000, 4_000_000])
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--k", type=int, default=16, help="embedding_dim = attention_dim (default 16)")
    ap.add_argument("--sync-rows", type=int, default=16384)
    ap.add_argument("--memory-limit", default=None, help="per worker, e.g. 400MiB (default: none)")
    ap.add_argument("--block-rows", type=int, default=None,
                    help="rows per streamed block (fastafm.CacheFile(block_rows=...); default: ~64 MiB of rows)")
    ap.add_argument("--eval-fraction", type=float, default=0.0,
                    help="an eval_set of this share of the training rows, as cache files (early stopping on)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    result = {"cpu": cpu_model(), "load_average": os.getloadavg(), "k": args.k, "memory_limit": args.memory_limit,
              "eval_fraction": args.eval_fraction, "runs": []}
    mib = 2 ** 20
    result["block_rows"] = args.block_rows
    print(f"{result['cpu']}; 2 workers x 1 thread; k = t = {args.k}; memory limit {args.memory_limit or 'none'}; "
          f"block rows {args.block_rows or 'default'}; eval_set {args.eval_fraction:g} x the training rows")
    for n in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            train = write_caches(n, args.files, Path(tmp) / "train", seed=0)
            evals = (write_caches(int(n * args.eval_fraction), args.files, Path(tmp) / "eval", seed=1000)
                     if args.eval_fraction > 0 else None)
            run = measure(train, args, evals)
        result["runs"].append(run)
        for i, w in enumerate(run["workers"]):
            print(f"{n:>10,} rows  worker {i}: shard {w['shard_bytes'] / mib:7.1f} MiB  RSS before "
                  f"{w['rss_before'] / mib:6.1f} MiB  peak {w['peak_rss'] / mib:6.1f} MiB  growth "
                  f"{w['growth'] / mib:6.1f} MiB ({w['growth_over_shard']:.2f} of the shard)")
        print(f"{n:>10,} rows  {run['rows_per_s']:,.0f} rows/s, train loss {run['train_loss']:.4f}")
    if len(result["runs"]) >= 2:
        g = [np.mean([w["growth"] for w in r["workers"]]) for r in result["runs"]]
        result["growth_ratio_last_first"] = float(g[-1] / g[0])
        print(f"growth at {args.rows[-1]:,} rows / at {args.rows[0]:,} rows: {g[-1] / g[0]:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
