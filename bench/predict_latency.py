"""Latency of small predictions (issue 14 item 5): `predict` on 1, 8, 64 and 4,096 rows, CSR and dense.

An AFMRegressor with k = t = 64 fitted for one epoch on Frappe-shaped rows (bench/data.py; latency does not
depend on the parameter values) predicts the first n rows, `--repeats` times after a warm-up (median and p90 per
call). For one CSR row the time is also split into its parts: input validation (`as_csr`), the memory check and
the core's `predict` (binding + kernels), so a regression shows where it is.

    python bench/predict_latency.py                       # n_threads=0 (all cores), the default
    python bench/predict_latency.py --threads 1 --json predict_latency.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data as bench_data  # noqa: E402
from fma_peak import cpu_model  # noqa: E402
from onnx_latency import repeats_for, timed  # noqa: E402

import fastafm  # noqa: E402
from fastafm import _core  # noqa: E402
from fastafm.data.validation import as_csr, check_kernel_memory, csr_arrays  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=64, help="embedding_dim = attention_dim (default 64)")
    parser.add_argument("--rows", type=int, default=8192, help="rows to fit on (default 8192)")
    parser.add_argument("--batches", default="1,8,64,4096", help="rows per predict call (default 1,8,64,4096)")
    parser.add_argument("--repeats", type=int, default=2000, help="calls per 1-row timing (fewer for larger)")
    parser.add_argument("--threads", type=int, default=0, help="n_threads of the model (default 0: all cores)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    ds = bench_data.frappe_like(n_rows=max(args.rows, max(batches)))
    model = fastafm.AFMRegressor(embedding_dim=args.k, attention_dim=args.k, n_epochs=1, random_state=0,
                                 n_threads=args.threads).fit(ds.X[:args.rows], ds.y[:args.rows])
    result = {"cpu": cpu_model(), "isa": _core.active_isa(), "threads": _core.resolve_threads(args.threads),
              "load_average": os.getloadavg(), "k": args.k, "t": args.k, "rows": []}
    print(f"{result['cpu']} ({result['isa']}), n_threads={args.threads}, load average "
          f"{result['load_average'][0]:.1f}; k = t = {args.k}, Frappe-shaped rows (10 non-zeros)")
    print(f"{'rows':>6} {'CSR median':>11} {'CSR p90':>9} {'dense median':>13} {'dense p90':>10}")
    for n in batches:
        X = ds.X[:n]
        dense = X.toarray()
        reps = repeats_for(n, args.repeats)
        csr_t = timed(lambda: model.predict(X), reps)
        dense_t = timed(lambda: model.predict(dense), reps)
        result["rows"].append({"rows": n, "csr": csr_t, "dense": dense_t})
        print(f"{n:>6} {csr_t['median_us']:>9.1f}us {csr_t['p90_us']:>7.1f}us {dense_t['median_us']:>11.1f}us "
              f"{dense_t['p90_us']:>8.1f}us")
    # Where one CSR row's time goes.
    X1 = ds.X[:1]
    state = model.training_state_
    arrays = csr_arrays(X1)
    n_features = int(state.spec.n_features)
    parts = {
        "as_csr (validation)": timed(lambda: as_csr(X1, n_features=n_features), args.repeats),
        "memory check": timed(lambda: check_kernel_memory(X1, args.k, args.k, args.threads), args.repeats),
        "core predict (binding + kernels)": timed(
            lambda: _core.predict(state.params, *arrays, True, args.threads), args.repeats),
    }
    result["one_row_parts"] = parts
    print("one CSR row: " + ", ".join(f"{name} {t['median_us']:.1f}us" for name, t in parts.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
