"""Dask data-parallel training (issue 7): throughput and accuracy of fastafm.dask against one process.

Same Frappe-shaped rows (bench/data.py: 10 one-hot fields, 5,382 features, Zipf-skewed) and epochs for
every configuration:

* `single`:  AFMRegressor(n_threads=1) in this process;
* `dask-1x1`: DaskAFMRegressor on a LocalCluster of 1 worker process with 1 thread;
* `dask-2x1`: DaskAFMRegressor on a LocalCluster of 2 worker processes with 1 thread each.

The synthetic benchmark labels are random, so for the accuracy column the target is planted instead: a
low-rank interaction of three field pairs (daytime x weekday, weather x country, homework x city) plus noise,
which an AFM can learn; test RMSE is on held-out rows (the last 20%). Test RMSE after a few epochs moves by
several percent with the seed alone, so single-process and 2-worker training each run with every seed of
--seeds and the gap compares the means. Reported per configuration: training rows/s
(rows x epochs over the training wall time, without cluster start and data loading), the speedup of 2 workers
over 1, the test RMSE and its gap to single-process, and the synchronisation cost (rounds, bytes up/down per
round, share of the wall time outside the slowest worker's core).

    python bench/dask_scaling.py                          # k = t = 64, 200,000 rows, 3 epochs, seeds 0,1,2
    python bench/dask_scaling.py --k 16 --rows 100000 --sync-rows 2048,8192 --combine average,sum --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402  (bench/data.py)

PLANTED_PAIRS = (("daytime", "weekday"), ("weather", "country"), ("homework", "city"))


def planted_frappe(n_rows: int, seed: int = 0, rank: int = 4, noise: float = 0.1, target_seed: int = 0):
    """Frappe-shaped rows (drawn from `seed`) whose target is sum over PLANTED_PAIRS of <E_f[c_f], E_g[c_g]>
    plus noise; the embeddings E come from `target_seed`, so draws of other seeds share one target."""
    ds = data.frappe_like(n_rows, seed=seed)
    rng = np.random.default_rng(target_seed + 1)
    names = list(data.FRAPPE_FIELDS)
    offsets = np.concatenate([[0], np.cumsum(list(data.FRAPPE_FIELDS.values()))[:-1]])
    emb = {f: rng.normal(0.0, 1.0 / np.sqrt(rank), (size, rank)) for f, size in data.FRAPPE_FIELDS.items()}
    if seed != target_seed:  # the noise of these rows
        rng = np.random.default_rng([seed, 1])
    y = rng.normal(0.0, noise, n_rows)
    for f, g in PLANTED_PAIRS:
        cf = ds.ids[:, names.index(f)] - offsets[names.index(f)]
        cg = ds.ids[:, names.index(g)] - offsets[names.index(g)]
        y += np.einsum("ij,ij->i", emb[f][cf], emb[g][cg])
    return ds.X, y.astype(np.float32)


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def fit_dask(client, n_workers: int, X, Xt, yt, params: dict, chunk_rows: int, y=None, label: str = "") -> dict:
    """One DaskAFMRegressor fit on `client` (X dask-chunked with y, or X a list of cache files), scored on the
    test rows."""
    import dask.array as da

    from fastafm.dask import DaskAFMRegressor

    if isinstance(X, list):
        data = (X,)
    else:
        data = (da.from_array(X, chunks=(chunk_rows, -1), asarray=False), da.from_array(y, chunks=chunk_rows))
    start = time.perf_counter()
    model = DaskAFMRegressor(**params, n_threads=1, early_stopping=False, client=client).fit(*data)
    fit_seconds = time.perf_counter() - start
    stats = model.sync_stats_
    pred = model.to_local().predict(Xt)
    train_rows = stats["rows_per_round"] * stats["rounds"]
    return {"config": label or f"dask-{n_workers}x1", "sync_rows": params["sync_rows"],
            "combine": params["combine"], "seed": params["random_state"],
            "rows_per_s": train_rows / stats["wall_seconds"], "fit_seconds": fit_seconds,
            "train_seconds": stats["wall_seconds"], "rmse": rmse(pred, yt), "sync": stats}


def _line(res: dict) -> str:
    s = res["sync"]
    return (f"{res['config']:9s} seed {res['seed']}  {res['combine']:7s} sync_rows {res['sync_rows']:6d}  rows/s "
            f"{res['rows_per_s']:9,.0f}  test RMSE {res['rmse']:.4f}  rounds {s['rounds']}  up "
            f"{s['bytes_up_per_round'] / 1e6:.2f} MB/round  down {s['bytes_down_per_round'] / 1e6:.2f} MB/round "
            f"(whole model: {s['bytes_down_full_per_round'] / 1e6:.2f})  "
            f"merge {1e3 * s['merge_seconds'] / max(s['rounds'], 1):.1f} ms/round  "
            f"sync share {100 * s['sync_share']:.1f}%")


def write_caches(X, y, n_files: int, directory: Path, name: str = "part") -> list:
    import fastafm

    bounds = np.linspace(0, X.shape[0], n_files + 1).astype(int)
    paths = []
    for i in range(n_files):
        path = directory / f"{name}{i}.afmcache"
        fastafm.convert((X[bounds[i]:bounds[i + 1]], y[bounds[i]:bounds[i + 1]]), path)
        paths.append(str(path))
    return paths


def cluster(n_workers: int, memory_limit=None):
    from dask.distributed import LocalCluster

    kw = dict(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    if memory_limit:
        kw["memory_limit"] = memory_limit
    return LocalCluster(**kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows in all (the last 20%% are the test set)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=64, help="embedding_dim = attention_dim")
    ap.add_argument("--sync-rows", default="16384", help="comma-separated sync_rows values to run")
    ap.add_argument("--combine", default="average", help="comma-separated: average, sum")
    ap.add_argument("--chunk-rows", type=int, default=20_000, help="rows per dask chunk")
    ap.add_argument("--seeds", default="0,1,2", help="random_state values: single, 1 worker and 2 workers run each, "
                    "interleaved (test RMSE moves with the seed, so the accuracy gap compares means)")
    ap.add_argument("--stream", action="store_true", help="also train 2 workers from cache files (4 files, "
                    "--block-rows rows per block) of the same training rows")
    ap.add_argument("--block-rows", type=int, default=20_000, help="rows per streamed block (--stream, --limit-rows)")
    ap.add_argument("--limit-rows", type=int, default=0, help="also train 2 workers under --memory-limit from cache "
                    "files of this many planted rows (more data than the limit), 1 epoch, seed 0")
    ap.add_argument("--memory-limit", default="350MiB", help="per worker, for --limit-rows")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    import fastafm

    X_all, y_all = planted_frappe(args.rows, seed=0)
    n_train = int(args.rows * 0.8)
    X, y, Xt, yt = X_all[:n_train], y_all[:n_train], X_all[n_train:], y_all[n_train:]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"Frappe-shaped planted data: {n_train} training rows, {Xt.shape[0]} test rows, {X.shape[1]} features; "
          f"k = t = {args.k}, {args.epochs} epochs, batch 128, seeds {seeds}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    base = dict(embedding_dim=args.k, attention_dim=args.k, n_epochs=args.epochs, batch_size=128)

    results: list = []
    summary = []
    c1, c2 = cluster(1), cluster(2)
    from dask.distributed import Client

    with c1, c2, Client(c1) as client1, Client(c2, set_as_default=False) as client2:
        for combine in args.combine.split(","):
            for sync_rows in (int(s) for s in args.sync_rows.split(",")):
                runs: dict = {}
                # Interleaved rounds: per seed, one process, then 1 worker, then 2 workers, so the machine's
                # load (shared with other jobs) hits each configuration alike; ratios are per round.
                for seed in seeds:
                    params = dict(base, random_state=seed)
                    start = time.perf_counter()
                    # the same rows and epochs: no pretraining FM, no held-out rows
                    model = fastafm.AFMRegressor(**params, n_threads=1, pretrain=None, early_stopping=False).fit(X, y)
                    seconds = time.perf_counter() - start
                    runs[("single", seed)] = {"config": "single", "seed": seed, "rows_per_s": n_train * args.epochs /
                                              seconds, "train_seconds": seconds, "rmse": rmse(model.predict(Xt), yt)}
                    print(f"single    seed {seed}  rows/s {runs[('single', seed)]['rows_per_s']:9,.0f}  test RMSE "
                          f"{runs[('single', seed)]['rmse']:.4f}", flush=True)
                    dparams = dict(params, sync_rows=sync_rows, combine=combine)
                    for n_workers, client in ((1, client1), (2, client2)):
                        res = fit_dask(client, n_workers, X, Xt, yt, dparams, args.chunk_rows, y)
                        runs[(n_workers, seed)] = res
                        print(_line(res), flush=True)
                results.extend(runs.values())
                single_mean = float(np.mean([runs[("single", s)]["rmse"] for s in seeds]))
                two = float(np.mean([runs[(2, s)]["rmse"] for s in seeds]))
                ratios = [runs[(2, s)]["rows_per_s"] / runs[(1, s)]["rows_per_s"] for s in seeds]
                sync = runs[(2, seeds[0])]["sync"]
                row = {"combine": combine, "sync_rows": sync_rows,
                       "single_rows_per_s": [runs[("single", s)]["rows_per_s"] for s in seeds],
                       "dask1_rows_per_s": [runs[(1, s)]["rows_per_s"] for s in seeds],
                       "dask2_rows_per_s": [runs[(2, s)]["rows_per_s"] for s in seeds],
                       "speedup_2_vs_1": ratios, "speedup_2_vs_1_median": float(np.median(ratios)),
                       "single_rmse_mean": single_mean, "dask2_rmse_mean": two,
                       "rmse_gap_pct": 100.0 * (two / single_mean - 1.0),
                       "dask1_rmse_mean": float(np.mean([runs[(1, s)]["rmse"] for s in seeds])),
                       "bytes_down_per_round": sync["bytes_down_per_round"],
                       "bytes_down_full_per_round": sync["bytes_down_full_per_round"],
                       "bytes_up_per_round": sync["bytes_up_per_round"], "sync": sync}
                summary.append(row)
                print(f"  {combine} sync_rows {sync_rows}: 2 workers vs 1 (same seed, adjacent runs): "
                      f"{', '.join(f'{r:.2f}x' for r in ratios)}, median {row['speedup_2_vs_1_median']:.2f}x "
                      f"(target >= 1.6x); mean test RMSE 2 workers {two:.4f} vs one process {single_mean:.4f}: "
                      f"{row['rmse_gap_pct']:+.2f}% (target within 1%); 1 worker {row['dask1_rmse_mean']:.4f}; "
                      f"bytes down per round {sync['bytes_down_per_round'] / 1e6:.2f} MB (whole model, before: "
                      f"{sync['bytes_down_full_per_round'] / 1e6:.2f} MB)", flush=True)
        if args.stream:
            with tempfile.TemporaryDirectory() as tmp:
                files = [fastafm.CacheFile(p, block_rows=args.block_rows)
                         for p in write_caches(X, y, 4, Path(tmp))]
                params = dict(base, random_state=seeds[0], sync_rows=int(args.sync_rows.split(",")[0]),
                              combine=args.combine.split(",")[0])
                res = fit_dask(client2, 2, files, Xt, yt, params, args.chunk_rows, label="stream-2x1")
            results.append(res)
            print(_line(res) + f"  (4 cache files, blocks of {args.block_rows} rows)", flush=True)
    if args.limit_rows:
        results.append(limit_case(args, base, Xt, yt, seeds[0]))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "load_average": os.getloadavg(),
                                               "summary": summary, "results": results}, indent=2))
    return 0


def limit_case(args, base: dict, Xt, yt, seed: int) -> dict:
    """2 workers under --memory-limit train 1 epoch from cache files holding more than the limit per worker."""
    from dask.distributed import Client

    import fastafm

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        per = args.limit_rows // 4
        for i in range(4):  # written one file at a time: the client never holds all rows either
            Xi, yi = planted_frappe(per, seed=10 + i, target_seed=0)
            paths += write_caches(Xi, yi, 1, Path(tmp), name=f"big{i}_")
            del Xi, yi
        shard = sum(os.path.getsize(p) for p in paths) / 2
        files = [fastafm.CacheFile(p, block_rows=args.block_rows) for p in paths]
        params = dict(base, n_epochs=1, random_state=seed, sync_rows=int(args.sync_rows.split(",")[0]),
                      combine=args.combine.split(",")[0])
        with cluster(2, args.memory_limit) as c, Client(c) as client:
            res = fit_dask(client, 2, files, Xt, yt, params, args.chunk_rows, label="limit-2x1")
    res.update(shard_bytes_per_worker=shard, memory_limit=args.memory_limit, rows=args.limit_rows)
    print(_line(res) + f"  ({args.limit_rows:,} rows in 4 cache files, {shard / 2**20:.0f} MiB per worker under a "
          f"{args.memory_limit} limit, 1 epoch; test rows from another planted draw of the same pairs)", flush=True)
    return res


if __name__ == "__main__":
    sys.exit(main())
