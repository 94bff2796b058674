"""Latency of an exported model in onnxruntime (docs/serving.md), next to fastafm's own decision_function.

Frappe-shaped rows (bench/data.py: 10 one-hot fields, 5,382 features), an AFMRegressor with k = t = 64 fitted
for one epoch (latency does not depend on the parameter values), and the FMRegressor of the same k. For each
batch size (1, 64 and 4,096 rows by default) the rows are padded once (fastafm.onnx.to_padded, not timed) and
`session.run` is timed `--repeats` times after a warm-up; the median and 90th percentile per call are reported,
with decision_function on the same CSR rows for comparison. onnxruntime runs with `--threads` intra-op threads
(0: its default, one per core), fastafm with n_threads of the same value.

    python bench/onnx_latency.py                          # k = t = 64, 1/64/4096 rows
    python bench/onnx_latency.py --threads 1 --json onnx_latency.json
    python bench/onnx_latency.py --rows 200 --batches 1,8 --repeats 20   # a quick check
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

import numpy as np  # noqa: E402

import data as bench_data  # noqa: E402
from fma_peak import cpu_model  # noqa: E402


def raw_output(model):
    """The raw model output y(x): a classifier's decision_function, a regressor's predict (it has no other)."""
    return getattr(model, "decision_function", model.predict)



def timed(fn, repeats: int) -> dict:
    fn()  # warm-up (first-run allocations, onnxruntime's thread pool)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_us": statistics.median(times) * 1e6, "p90_us": times[int(0.9 * (len(times) - 1))] * 1e6,
            "min_us": times[0] * 1e6, "repeats": repeats}


def repeats_for(batch: int, base: int) -> int:
    return max(10, min(base, base * 64 // max(batch, 1)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=64, help="embedding_dim = attention_dim (default 64)")
    parser.add_argument("--rows", type=int, default=8192, help="Frappe-shaped rows generated (default 8192)")
    parser.add_argument("--batches", default="1,64,4096", help="batch sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=400, help="timed calls for batches up to 64 rows (fewer "
                                                                  "for larger batches, at least 10)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of onnxruntime and n_threads of "
                                                               "fastafm (0: all cores)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    import fastafm
    import fastafm.onnx

    batches = [int(b) for b in args.batches.split(",")]
    ds = bench_data.frappe_like(max(args.rows, max(batches)), seed=0)
    X, y = ds.X, ds.y
    models = {
        "AFM": fastafm.AFMRegressor(embedding_dim=args.k, attention_dim=args.k, n_epochs=1, random_state=0,
                                    n_threads=args.threads),
        "FM": fastafm.FMRegressor(embedding_dim=args.k, n_epochs=1, random_state=0, n_threads=args.threads),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    result = {"cpu": cpu_model(), "cores": _cores(), "onnxruntime": ort.__version__, "opset": fastafm.onnx.OPSET,
              "k": args.k, "t": args.k, "row_nnz": int(X.indptr[1] - X.indptr[0]), "threads": args.threads,
              "cases": []}
    print(f"CPU: {result['cpu']} ({result['cores']} cores); onnxruntime {ort.__version__}, opset "
          f"{fastafm.onnx.OPSET}; k = t = {args.k}; rows of {result['row_nnz']} non-zeros; threads {args.threads}")
    print(f"{'model':5} {'rows':>6} {'onnx median':>12} {'onnx p90':>10} {'per row':>9} {'fastafm median':>15} "
          f"{'ratio':>6}")
    for name, model in models.items():
        model.fit(X[:min(X.shape[0], 8192)], y[:min(X.shape[0], 8192)])
        sess = ort.InferenceSession(fastafm.onnx.export(model).SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
        for batch in batches:
            rows = X[:batch]
            indices, values = fastafm.onnx.to_padded(rows)
            feed = {"indices": indices, "values": values}
            score = sess.run(["score"], feed)[0]
            want = raw_output(model)(rows)
            err = float(np.max(np.abs(score - want) / np.maximum(np.abs(want), 0.1)))
            n = repeats_for(batch, args.repeats)
            onnx_t = timed(lambda: sess.run(["score"], feed), n)
            core_t = timed(lambda: raw_output(model)(rows), n)
            case = {"model": name, "rows": batch, "onnx": onnx_t, "fastafm": core_t, "max_rel_error": err}
            result["cases"].append(case)
            print(f"{name:5} {batch:6d} {onnx_t['median_us']:10.1f}us {onnx_t['p90_us']:8.1f}us "
                  f"{onnx_t['median_us'] / batch:7.2f}us {core_t['median_us']:13.1f}us "
                  f"{onnx_t['median_us'] / core_t['median_us']:6.2f}   (max rel error {err:.1e})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if __name__ == "__main__":
    main()
