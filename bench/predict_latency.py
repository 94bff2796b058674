"""Latency of small predictions (issue 14 item 5): `predict` on 1, 8, 64 and 4,096 rows, CSR and dense; and the
serving predictor (issue 25 B, `model.predictor()`): one row's median and p99, batched rows/s.

An AFMRegressor with k = t = 64 fitted for one epoch on Frappe-shaped rows (bench/data.py; latency does not
depend on the parameter values) predicts the first n rows, `--repeats` times after a warm-up (median and p90 per
call). For one CSR row the time is also split into its parts: input validation (`as_csr`), the memory check and
the core's `predict` (binding + kernels), so a regression shows where it is.

    python bench/predict_latency.py                       # n_threads=0 (all cores), the default
    python bench/predict_latency.py --threads 1 --json predict_latency.json
    python bench/predict_latency.py --batches 1 --serve afm,fm,fwfm --serve-rows 65536   # the predictor

--serve: for each model (AFM with attention_dim = k, FM, FwFM over Frappe's 10 fields), fitted one epoch at
embedding_dim k: `predictor.row(ids, values)` and `predictor(X[:1])` on one row (median and p99 of --repeats
calls, the rows cycling through 256 different ones), `decision_function` of one row beside them, and
`predictor(X)` on --serve-rows rows with 1 and 2 threads (rows/s, median of 5 calls), with the FLOPs of a row
and the FMA peak measured in the same run (bench/fma_peak.py).
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
    parser.add_argument("--serve", default="", help="models for the predictor's timings: afm,fm,fwfm (default none)")
    parser.add_argument("--serve-rows", type=int, default=65536, help="rows of the predictor's batch")
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
    if args.serve:
        result["predictor"] = serving(args, args.serve.split(","))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


def percentiles(fn, repeats: int) -> dict:
    """Median and p99 (and min) of `repeats` calls of fn(i), i the call number, after 50 warm-up calls."""
    for i in range(50):
        fn(i)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_us": statistics.median(times) * 1e6, "p99_us": times[int(0.99 * (len(times) - 1))] * 1e6,
            "min_us": times[0] * 1e6, "repeats": repeats}


def row_flops(model: str, nnz: int, k: int) -> int:
    """FLOPs (multiply-add = 2) of one row's output: FM's sum-of-squares identity (3 multiply-adds a non-zero
    and dimension) and the linear part; AFM's pairs (the product, the attention GEMM with t = k, its ReLU, h and
    the pooling: about k^2 + 3k multiply-adds a pair); FwFM's field sums and the triangle U = R_up S."""
    pairs = nnz * (nnz - 1) // 2
    if model == "fm":
        return 2 * (3 * nnz * k + nnz + k)
    if model == "afm":
        return 2 * (pairs * (k * k + 3 * k) + nnz * k + nnz + k)
    return 2 * (2 * nnz * k + pairs * k + nnz * k + nnz + k)


def serving(args, models) -> list:
    import fma_peak

    ds = bench_data.frappe_like(n_rows=max(args.rows, args.serve_rows))
    X = ds.X[:args.serve_rows]
    X = type(X)((X.data.astype("float32"), X.indices.astype("int32"), X.indptr), shape=X.shape)
    fields = [f for f, size in enumerate(bench_data.FRAPPE_FIELDS.values()) for _ in range(size)]
    out = []
    print(f"predictor: Frappe-shaped rows (10 non-zeros), k = {args.k} (AFM: attention_dim = k), "
          f"{X.shape[0]} rows a batch")
    print(f"{'model':>5} {'row() median':>13} {'p99':>8} {'pred(X1)':>9} {'decision_function':>18} "
          f"{'1 thread':>14} {'2 threads':>14} {'FLOPs/row':>10}")
    for name in models:
        cls = {"afm": fastafm.AFMRegressor, "fm": fastafm.FMRegressor, "fwfm": fastafm.FwFMRegressor}[name]
        kw = {"attention_dim": args.k} if name == "afm" else {"fields": fields} if name == "fwfm" else {}
        model = cls(embedding_dim=args.k, n_epochs=1, random_state=0, n_threads=1, **kw).fit(
            ds.X[:args.rows], ds.y[:args.rows])
        pred = model.predictor(n_threads=1)
        rows = [(X.indices[X.indptr[i]:X.indptr[i + 1]], X.data[X.indptr[i]:X.indptr[i + 1]]) for i in range(256)]
        singles = [X[i] for i in range(256)]
        row_t = percentiles(lambda i: pred.row(*rows[i % 256]), args.repeats)
        csr_t = percentiles(lambda i: pred(singles[i % 256]), args.repeats)
        est_t = percentiles(lambda i: model.predict(singles[i % 256]), max(args.repeats // 4, 50))
        rate = {}
        for threads in (1, 2):
            p = model.predictor(n_threads=threads)
            p(X)
            secs = []
            for _ in range(5):
                start = time.perf_counter()
                p(X)
                secs.append(time.perf_counter() - start)
            rate[threads] = X.shape[0] / statistics.median(secs)
        flops = row_flops(name, 10, args.k)
        entry = {"model": name, "row": row_t, "csr_one_row": csr_t, "estimator_one_row": est_t,
                 "rows_per_s": rate, "flops_per_row": flops}
        out.append(entry)
        print(f"{name:>5} {row_t['median_us']:>11.1f}us {row_t['p99_us']:>6.1f}us {csr_t['median_us']:>7.1f}us "
              f"{est_t['median_us']:>16.1f}us {rate[1]:>10.0f}/s {rate[2]:>10.0f}/s {flops:>10}")
    peak = fma_peak.measure([1, 2], isas=["avx512", "avx2fma"])
    for entry in out:
        for threads in (1, 2):
            g = fma_peak.peak_gflops(peak, threads)[0]
            used = entry["rows_per_s"][threads] * entry["flops_per_row"] / 1e9
            entry.setdefault("peak_share", {})[threads] = used / g
            print(f"{entry['model']:>5} {threads} thread(s): {used:.2f} GFLOP/s = {100 * used / g:.1f}% of the "
                  f"FMA peak {g:.0f} GFLOP/s; 1M rows/s would need {entry['flops_per_row'] / 1e3:.0f} GFLOP/s")
    return out


if __name__ == "__main__":
    main()
