"""The serving predictor's 2 threads against 1, idle and with one core busy (issue 25's "2 threads >= 1 thread
under contention"): `predictor(X)` rows/s on Frappe-shaped rows (k = 64; AFM: attention_dim = 64), 1 and 2
threads interleaved in every round (in turn first and last), the ratio taken per round. Each measurement calls one persistent predictor
for about --seconds (as a serving loop would: its judgements and probes between calls included).

    OPENBLAS_NUM_THREADS=1 python bench/predict_contention.py                 # idle, then one core busy
    OPENBLAS_NUM_THREADS=1 python bench/predict_contention.py --only busy --rounds 9
    OPENBLAS_NUM_THREADS=1 python bench/predict_contention.py --team   # and a 2-thread one that never goes solo

"one core busy": a busy-loop process of this script's own spins on CPU 0 (shape_sweep.busy_loop).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as bench_data  # noqa: E402
import fma_peak  # noqa: E402
import shape_sweep  # noqa: E402

import fastafm  # noqa: E402


def models(k: int, fit_rows: int, serve_rows: int, names):
    ds = bench_data.frappe_like(n_rows=max(fit_rows, serve_rows))
    X = ds.X[:serve_rows]
    X = type(X)((X.data.astype("float32"), X.indices.astype("int32"), X.indptr), shape=X.shape)
    fields = [f for f, size in enumerate(bench_data.FRAPPE_FIELDS.values()) for _ in range(size)]
    out = {}
    for name in names:
        cls = {"afm": fastafm.AFMRegressor, "fm": fastafm.FMRegressor, "fwfm": fastafm.FwFMRegressor}[name]
        kw = {"attention_dim": k} if name == "afm" else {"fields": fields} if name == "fwfm" else {}
        out[name] = cls(embedding_dim=k, n_epochs=1, random_state=0, n_threads=1, **kw).fit(
            ds.X[:fit_rows], ds.y[:fit_rows])
    return X, out


def rate(pred, X, seconds: float) -> float:
    """Rows/s of back-to-back calls over about `seconds` (at least 3 calls)."""
    calls, start = 0, time.perf_counter()
    while True:
        pred(X)
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= 3 and elapsed >= seconds:
            return calls * X.shape[0] / elapsed


def predictor(model, n: int, mode: str):
    """model.predictor(n_threads=n); mode "team": one made with FASTAFM_TEAM_MODE=team (never alone)."""
    saved = os.environ.get("FASTAFM_TEAM_MODE")
    if mode == "team":
        os.environ["FASTAFM_TEAM_MODE"] = "team"
    try:
        return model.predictor(n_threads=n)
    finally:
        if saved is None:
            os.environ.pop("FASTAFM_TEAM_MODE", None)
        else:
            os.environ["FASTAFM_TEAM_MODE"] = saved


def measure(X, fitted, rounds: int, seconds: float, variants) -> dict:
    """Rows/s per model and variant ("1", "2", "2team"), the variants interleaved in every round."""
    preds = {name: {v: predictor(m, int(v[0]), v[1:]) for v in variants} for name, m in fitted.items()}
    for by_v in preds.values():
        for p in by_v.values():
            p(X)
    rates: dict = {name: {v: [] for v in variants} for name in fitted}
    for i in range(rounds):
        for name in fitted:
            for v in variants if i % 2 == 0 else variants[::-1]:  # ABBA: no variant always runs first
                rates[name][v].append(rate(preds[name][v], X, seconds))
    alone = {name: by_v["2"].solo_calls / max(by_v["2"].solo_calls + by_v["2"].team_calls, 1)
             for name, by_v in preds.items()}
    return rates, alone


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="time of one measurement")
    ap.add_argument("--rows", type=int, default=65536, help="rows of a predictor call")
    ap.add_argument("--fit-rows", type=int, default=8192)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--models", default="afm,fm,fwfm")
    ap.add_argument("--only", choices=["idle", "busy"], help="one condition (default both, idle first)")
    ap.add_argument("--team", action="store_true",
                    help="also a 2-thread predictor made with FASTAFM_TEAM_MODE=team (never alone), interleaved")
    args = ap.parse_args()
    print(f"{shape_sweep.cpu_model()}, {os.cpu_count()} CPUs; load average before: {loadavg()}; "
          f"FASTAFM_TEAM_MODE={os.environ.get('FASTAFM_TEAM_MODE', '(unset)')}")
    variants = ["1", "2"] + (["2team"] if args.team else [])
    X, fitted = models(args.k, args.fit_rows, args.rows, args.models.split(","))
    for label in ("idle", "busy") if args.only is None else (args.only,):
        busy = shape_sweep.busy_loop() if label == "busy" else None
        try:
            if busy is not None:
                time.sleep(0.3)
            rates, alone = measure(X, fitted, args.rounds, args.seconds, variants)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        print(f"{label if label == 'idle' else 'one core busy'}: {X.shape[0]:,} rows a call, {args.rounds} rounds "
              f"of ~{args.seconds} s a measurement; load average after: {loadavg()}")
        for name, by_v in rates.items():
            line = f"  {name:>4}: 1 thread {statistics.median(by_v['1']):>11,.0f} rows/s"
            for v in variants[1:]:
                ratios = [two / one for one, two in zip(by_v["1"], by_v[v])]
                line += (f"; {'2 threads' if v == '2' else '2 forced team'} {statistics.median(by_v[v]):>11,.0f}, "
                         f"/1 per round {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
                if v == "2":
                    line += f" [{100 * alone[name]:.0f}% of calls alone]"
            print(line)
    peak = fma_peak.measure([1, 2], isas=["avx512", "avx2fma"])
    print("FMA peak in this run: " + ", ".join(f"{n} thread(s) {fma_peak.peak_gflops(peak, n)[0]:.0f} GFLOP/s"
                                               for n in (1, 2)))


if __name__ == "__main__":
    main()
