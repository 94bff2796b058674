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
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402  (bench/data.py)

PLANTED_PAIRS = (("daytime", "weekday"), ("weather", "country"), ("homework", "city"))


def planted_frappe(n_rows: int, seed: int = 0, rank: int = 4, noise: float = 0.1):
    """Frappe-shaped rows whose target is sum over PLANTED_PAIRS of <E_f[c_f], E_g[c_g]> plus noise."""
    ds = data.frappe_like(n_rows, seed=seed)
    rng = np.random.default_rng(seed + 1)
    names = list(data.FRAPPE_FIELDS)
    offsets = np.concatenate([[0], np.cumsum(list(data.FRAPPE_FIELDS.values()))[:-1]])
    emb = {f: rng.normal(0.0, 1.0 / np.sqrt(rank), (size, rank)) for f, size in data.FRAPPE_FIELDS.items()}
    y = rng.normal(0.0, noise, n_rows)
    for f, g in PLANTED_PAIRS:
        cf = ds.ids[:, names.index(f)] - offsets[names.index(f)]
        cg = ds.ids[:, names.index(g)] - offsets[names.index(g)]
        y += np.einsum("ij,ij->i", emb[f][cf], emb[g][cg])
    return ds.X, y.astype(np.float32)


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def run_dask(n_workers: int, X, y, Xt, yt, params: dict, sync_rows: int, combine: str, chunk_rows: int) -> dict:
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    from fastafm.dask import DaskAFMRegressor

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        dX = da.from_array(X, chunks=(chunk_rows, -1), asarray=False)
        dy = da.from_array(y, chunks=chunk_rows)
        start = time.perf_counter()
        model = DaskAFMRegressor(**params, n_threads=1, sync_rows=sync_rows, combine=combine, client=client)
        model.fit(dX, dy)
        fit_seconds = time.perf_counter() - start
        stats = model.sync_stats_
        pred = model.predict(da.from_array(Xt, chunks=(chunk_rows, -1), asarray=False)).compute()
    train_rows = X.shape[0] * params["n_epochs"]
    return {"config": f"dask-{n_workers}x1", "sync_rows": sync_rows, "combine": combine,
            "rows_per_s": train_rows / stats["wall_seconds"], "fit_seconds": fit_seconds,
            "train_seconds": stats["wall_seconds"], "rmse": rmse(pred, yt), "sync": stats}


def _line(res: dict) -> str:
    s = res["sync"]
    return (f"{res['config']}  seed {res['seed']}  {res['combine']:7s} sync_rows {res['sync_rows']:6d}  rows/s "
            f"{res['rows_per_s']:9,.0f}  test RMSE {res['rmse']:.4f}  rounds {s['rounds']}  up "
            f"{s['bytes_up_per_round'] / 1e6:.2f} MB/round  down {s['bytes_down_per_round'] / 1e6:.2f} MB/round  "
            f"merge {1e3 * s['merge_seconds'] / max(s['rounds'], 1):.1f} ms/round  "
            f"sync share {100 * s['sync_share']:.1f}%")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows in all (the last 20%% are the test set)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=64, help="embedding_dim = attention_dim")
    ap.add_argument("--sync-rows", default="16384", help="comma-separated sync_rows values to run")
    ap.add_argument("--combine", default="average", help="comma-separated: average, sum")
    ap.add_argument("--chunk-rows", type=int, default=20_000, help="rows per dask chunk")
    ap.add_argument("--seeds", default="0,1,2", help="random_state values: single and 2 workers run each (test "
                    "RMSE moves with the seed, so the accuracy gap compares means); 1 worker runs the first")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    import fastafm

    X_all, y_all = planted_frappe(args.rows, seed=0)
    n_train = int(args.rows * 0.8)
    X, y, Xt, yt = X_all[:n_train], y_all[:n_train], X_all[n_train:], y_all[n_train:]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"Frappe-shaped planted data: {n_train} training rows, {Xt.shape[0]} test rows, {X.shape[1]} features; "
          f"k = t = {args.k}, {args.epochs} epochs, batch 128, seeds {seeds}", flush=True)

    results = []
    single = {}
    for seed in seeds:
        params = dict(embedding_dim=args.k, attention_dim=args.k, n_epochs=args.epochs, batch_size=128,
                      random_state=seed)
        start = time.perf_counter()
        model = fastafm.AFMRegressor(**params, n_threads=1).fit(X, y)
        seconds = time.perf_counter() - start
        res = {"config": "single", "seed": seed, "rows_per_s": n_train * args.epochs / seconds,
               "train_seconds": seconds, "rmse": rmse(model.predict(Xt), yt)}
        single[seed] = res
        results.append(res)
        print(f"single    seed {seed}  rows/s {res['rows_per_s']:9,.0f}  test RMSE {res['rmse']:.4f}", flush=True)
    base = float(np.mean([r["rmse"] for r in single.values()]))
    summary = []
    for combine in args.combine.split(","):
        for sync_rows in (int(s) for s in args.sync_rows.split(",")):
            runs = {}
            for n_workers, seed in [(1, seeds[0])] + [(2, s) for s in seeds]:
                params = dict(embedding_dim=args.k, attention_dim=args.k, n_epochs=args.epochs, batch_size=128,
                              random_state=seed)
                res = run_dask(n_workers, X, y, Xt, yt, params, sync_rows, combine, args.chunk_rows)
                res["seed"] = seed
                runs[(n_workers, seed)] = res
                results.append(res)
                print(_line(res), flush=True)
            two = [runs[(2, s)]["rmse"] for s in seeds]
            row = {"combine": combine, "sync_rows": sync_rows,
                   "single_rows_per_s": single[seeds[0]]["rows_per_s"],
                   "dask1_rows_per_s": runs[(1, seeds[0])]["rows_per_s"],
                   "dask2_rows_per_s": runs[(2, seeds[0])]["rows_per_s"],
                   "speedup_2_vs_1": runs[(2, seeds[0])]["rows_per_s"] / runs[(1, seeds[0])]["rows_per_s"],
                   "single_rmse_mean": base, "dask2_rmse_mean": float(np.mean(two)),
                   "rmse_gap_pct": 100.0 * (float(np.mean(two)) / base - 1.0),
                   "dask1_rmse_gap_pct": 100.0 * (runs[(1, seeds[0])]["rmse"] / single[seeds[0]]["rmse"] - 1.0),
                   "sync": runs[(2, seeds[0])]["sync"]}
            summary.append(row)
            print(f"  {combine} sync_rows {sync_rows}: 2 workers vs 1: {row['speedup_2_vs_1']:.2f}x (target >= 1.6x); "
                  f"mean test RMSE 2 workers {row['dask2_rmse_mean']:.4f} vs single {base:.4f}: "
                  f"{row['rmse_gap_pct']:+.2f}% (target within 1%); 1 worker vs single, seed {seeds[0]}: "
                  f"{row['dask1_rmse_gap_pct']:+.2f}%", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "results": results},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
