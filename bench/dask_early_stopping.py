"""Dask early stopping (issue 16): the best epoch of DaskAFMRegressor against one process on the same data.

Two planted data sets (fastafm.make_planted, 4 fields of 6 values, noise 1.0), the same eval_set for every
fit, no dropout, Adagrad, n_iter_no_change 3, up to 30 epochs:

* `sharp`: plus an id field of 300 values that lets the model memorise the noise: the eval RMSE has a sharp
  minimum (the data of tests/test_dask_training.py's early-stopping test);
* `flat`: 4 fields of 10 values, learning rate 0.3: the eval RMSE is flat near its minimum.

Per random_state: the best epoch of AFMRegressor(pretrain=None), of a 1-worker Dask fit (one partition: the
same training as one process with another row order) and of 2-worker Dask fits at two sync_rows values, on an
in-process LocalCluster of 2 workers x 1 thread.

    python bench/dask_early_stopping.py --seeds 0,1,2,3 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def sharp_data():
    import fastafm

    n, n_ids = 4000, 300
    X, y, _ = fastafm.make_planted(n, n_fields=4, cardinality=6, noise=1.0, random_state=4)
    ids = np.random.default_rng(4).integers(0, n_ids, n)
    X = sp.hstack([X, sp.csr_matrix((np.ones(n, np.float32), ids, np.arange(n + 1)), shape=(n, n_ids))],
                  format="csr")
    return X[:3000], y[:3000], X[3000:], y[3000:], 0.1


def flat_data():
    import fastafm

    X, y, _ = fastafm.make_planted(6000, n_fields=4, cardinality=10, noise=1.0, random_state=4)
    return X[:2000], y[:2000], X[2000:], y[2000:], 0.3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--sync-rows", default="256,1024", help="2-worker fits at these sync_rows")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import dask.array as da
    from distributed import Client, LocalCluster

    import fastafm
    from fastafm.dask import DaskAFMRegressor

    sync_rows = [int(s) for s in args.sync_rows.split(",")]
    out = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for name, make in (("sharp", sharp_data), ("flat", flat_data)):
            X, y, Xv, yv, lr = make()
            n = X.shape[0]
            params = dict(embedding_dim=8 if name == "sharp" else 16, attention_dim=8 if name == "sharp" else 16,
                          n_epochs=30, dropout=0.0, attention_l2=0.0, batch_size=64, n_threads=1,
                          early_stopping=True, n_iter_no_change=3, learning_rate=lr)
            for seed in (int(s) for s in args.seeds.split(",")):
                p = dict(params, random_state=seed)
                row = {"data": name, "seed": seed,
                       "single": fastafm.AFMRegressor(**p, pretrain=None).fit(X, y, eval_set=(Xv, yv)).best_epoch_}
                with warnings.catch_warnings():  # one partition: the second worker idles, as intended
                    warnings.simplefilter("ignore", UserWarning)
                    row["dask_1_worker"] = DaskAFMRegressor(**p, sync_rows=n, client=client).fit(
                        da.from_array(X, chunks=(n, -1), asarray=False), da.from_array(y, chunks=n),
                        eval_set=(Xv, yv)).best_epoch_
                for s in sync_rows:
                    row[f"dask_2_workers_sync_{s}"] = DaskAFMRegressor(**p, sync_rows=s, client=client).fit(
                        da.from_array(X, chunks=(n // 4, -1), asarray=False), da.from_array(y, chunks=n // 4),
                        eval_set=(Xv, yv)).best_epoch_
                out.append(row)
                print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    for name in ("sharp", "flat"):
        rows = [r for r in out if r["data"] == name]
        for key in [k for k in rows[0] if k.startswith("dask")]:
            gaps = [r[key] - r["single"] for r in rows]
            print(f"{name}: {key} - single: {gaps} (within one epoch: {sum(abs(g) <= 1 for g in gaps)} of "
                  f"{len(gaps)})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
