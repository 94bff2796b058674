"""Rows of any length in bounded memory (issue 15): the figures of docs/reliability.md, "Long rows".

    python bench/long_rows.py bounded      # 2 rows of 4,000 non-zeros (8 million pairs each) at k = t = 64:
                                           # fit (2 epochs) and predict under prlimit --as=2 GiB, 2 threads,
                                           # against a float64 forward pass of the fitted model
    python bench/long_rows.py huge         # 1 row of 20,000 non-zeros (2e8 pairs), same limit: time and peak
                                           # RSS (--epochs, default 1; --k for k = t, default 64)
    python bench/long_rows.py soak         # 200 fit/predict/attention cycles with a streamed row: RSS
    python bench/long_rows.py speed --baseline DIR   # Frappe- and Criteo-shaped epochs, this core vs the
                                           # _core*.so in DIR (a build from before streaming), interleaved rounds,
                                           # each core in its own worker process

Each case runs in a child process (`prlimit --as` where asked) that prints one JSON line; peak RSS is the
child's ru_maxrss. Timings are wall clock on whatever machine runs it: on a machine shared with other jobs
they are disturbed, and `speed` reports same-run ratios (best of interleaved rounds) for that reason.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LIMIT = 2 * 1024**3


def long_rows(n_long: int, nnz: int, n_short: int, n_features: int, seed: int = 0) -> tuple:
    """n_long rows of nnz non-zeros (multi-hot bags: distinct ids, value 1) and n_short Frappe-like rows of 10."""
    rng = np.random.default_rng(seed)
    lens = [nnz] * n_long + [10] * n_short
    indices = np.concatenate([rng.choice(n_features, size=m, replace=False) for m in lens]).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    X = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(len(lens), n_features))
    y = rng.normal(size=len(lens)).astype(np.float32)
    return X, y


def forward64(params: dict, X: sp.csr_matrix, r: int) -> tuple:
    """(y, pair term) of row r in float64, streamed over each non-zero's run of pairs with an online softmax
    (O(nnz k) memory: the reference's dense pair matrix of a row of 4,000 non-zeros would take 4 GB)."""
    p64 = {n: np.asarray(a, np.float64) for n, a in params.items()}
    idx = X.indices[X.indptr[r]:X.indptr[r + 1]]
    val = X.data[X.indptr[r]:X.indptr[r + 1]].astype(np.float64)
    G = p64["V"][idx] * val[:, None]
    M, S, Q = -np.inf, 0.0, np.zeros(G.shape[1])
    for i in range(len(idx) - 1):
        E = G[i] * G[i + 1:]
        s = np.maximum(E @ p64["W"].T + p64["b"], 0.0) @ p64["h"]
        Mn = max(M, float(s.max()))
        e = np.exp(s - Mn)
        scale = np.exp(M - Mn) if np.isfinite(M) else 0.0
        S = S * scale + e.sum()
        Q = Q * scale + e @ E
        M = Mn
    pair = float(p64["p"] @ (Q / S)) if S > 0 else 0.0
    lin = float(np.ravel(p64["w0"])[0] + p64["w"][idx] @ val)
    return lin + pair, pair


def child(args) -> dict:
    """One case, in this process (run under prlimit by the parent)."""
    import fastafm

    if args.case == "soak":
        return soak()
    nnz, n_long, epochs, k = (4000, 2, 2, 64) if args.case == "bounded" else (20_000, 1, args.epochs, args.k)
    X, y = long_rows(n_long, nnz, n_short=30, n_features=50_000)
    fastafm.set_max_pairs_per_row(nnz * (nnz - 1) // 2)  # huge is over the default limit on purpose
    model = fastafm.AFMRegressor(embedding_dim=k, attention_dim=k, n_epochs=epochs, n_threads=2, pretrain=None,
                                 early_stopping=False, init_std=0.1, random_state=0)
    start = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(X)
    predict_s = time.perf_counter() - start
    out = dict(case=args.case, nnz=nnz, pairs=nnz * (nnz - 1) // 2, long_rows=n_long, epochs=epochs, k=k, t=k,
               fit_s=round(fit_s, 1), predict_s=round(predict_s, 1),
               peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               scratch_mib_per_thread=round(fastafm._core.scratch_bytes(nnz, k, k, 1) / 2**20, 2))
    if args.params:
        np.savez(args.params, pred=pred, **{n: np.asarray(a) for n, a in model.get_model_params().items()})
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def soak() -> dict:
    """200 cycles of fit (1 epoch), predict and attention_weights with a row of 600 non-zeros (179,700 pairs:
    streamed at k = t = 8, whose block holds 131,072) next to short rows; RSS after 20 warm-up cycles and after
    the last one."""
    import fastafm

    X, y = long_rows(2, 600, n_short=60, n_features=5000)

    def cycle(i):
        m = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=1, n_threads=2, pretrain=None,
                                 early_stopping=False, random_state=i).fit(X, y)
        m.predict(X)
        m.attention_weights(X[:3])

    for i in range(20):
        cycle(i)
    first = _rss()
    samples = []
    for i in range(200):
        cycle(20 + i)
        if i % 50 == 49:
            samples.append(round(_rss() / 2**20, 1))
    last = _rss()
    return dict(case="soak", cycles=200, rss_after_warmup_mib=round(first / 2**20, 1),
                rss_every_50_mib=samples, rss_last_mib=round(last / 2**20, 1),
                growth_mib=round((last - first) / 2**20, 2))


def run_child(case: str, limit: bool, extra=()) -> dict:
    cmd = [sys.executable, __file__, "--child", case, *extra]
    if limit:
        cmd = ["prlimit", f"--as={LIMIT}", *cmd]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="2")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{case} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bounded_case(case: str, epochs: int, k: int) -> dict:
    params_file = f"/tmp/fastafm_long_rows_{os.getpid()}.npz"
    out = run_child(case, limit=True, extra=["--params", params_file, "--epochs", str(epochs), "--k", str(k)])
    if case == "bounded":  # the float64 check (outside the limit: NumPy's temporaries are not the point)
        saved = dict(np.load(params_file))
        X, _ = long_rows(2, 4000, n_short=30, n_features=50_000)
        errs, pair_errs, pairs64, ys64 = [], [], [], []
        for r in range(2):
            y64, pair64 = forward64(saved, X, r)
            errs.append(abs(float(saved["pred"][r]) - y64) / abs(y64))
            lin = y64 - pair64  # the pair term's own error: y's part that the pair layer computes
            pair_errs.append(abs((float(saved["pred"][r]) - lin) - pair64) / abs(pair64))
            pairs64.append(float(f"{pair64:.5g}"))
            ys64.append(float(f"{y64:.5g}"))
        out.update(max_rel_err_y=float(f"{max(errs):.2e}"), max_rel_err_pair_term=float(f"{max(pair_errs):.2e}"),
                   y_float64=ys64, pair_term_float64=pairs64)
    os.unlink(params_file)
    out["address_space_limit_gib"] = LIMIT / 2**30
    return out


def load_core(which: str):
    """fastafm._core ("new"), or the _core*.so in folder `which` (a build from another commit). One per
    process: pybind11 registers the types of both under the same names."""
    if which == "new":
        from fastafm import _core

        return _core
    so = sorted(Path(which).glob("_core*.so"))
    if not so:
        raise SystemExit(f"no _core*.so in {which}")
    spec = importlib.util.spec_from_file_location("baseline_pkg._core", so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SPEED_CASES = [("frappe", 16), ("frappe", 64), ("criteo", 16), ("criteo", 64)]


def speed_worker(which: str, rows: int, threads: int, cpu_time: bool) -> None:
    """Reads case indices from stdin, answers each with the seconds of one training epoch of that case on a
    fresh copy of its initial model (so every round trains the same thing). cpu_time (1 thread: the team's one
    thread is the caller): the calling thread's CPU time, which other jobs on the machine disturb much less."""
    import data as bench_data

    core = load_core(which)
    sets = {"frappe": bench_data.frappe_like(n_rows=rows), "criteo": bench_data.criteo_like(n_rows=rows // 4)}
    cases = []
    for name, k in SPEED_CASES:
        X = sets[name].X
        arrays = (X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32))
        rng = np.random.default_rng(1)
        start = {"w0": np.zeros(1, np.float32), "w": np.zeros(X.shape[1], np.float32),
                 "V": rng.normal(0, 0.01, (X.shape[1], k)).astype(np.float32),
                 "W": rng.normal(0, 0.2, (k, k)).astype(np.float32), "b": rng.normal(0, 0.2, k).astype(np.float32),
                 "h": rng.normal(0, 1, k).astype(np.float32), "p": np.ones(k, np.float32)}
        order = np.random.default_rng(0).permutation(X.shape[0]).astype(np.int64)
        cases.append((arrays, sets[name].y.astype(np.float32), order, start))
    cfg = core.TrainConfig()
    cfg.learning_rate, cfg.batch_size, cfg.n_threads, cfg.dropout = 0.05, 256, threads, 0.2
    print("ready", flush=True)
    for line in sys.stdin:
        arrays, y, order, start = cases[int(line)]
        params = {n: a.copy() for n, a in start.items()}
        slots = {"G": {n: np.full_like(a, 1e-8) for n, a in start.items()}}
        clock = time.thread_time if cpu_time else time.perf_counter
        t0 = clock()
        core.train_epoch(params, slots, *arrays, y, order, cfg)
        print(clock() - t0, flush=True)


def speed(args) -> list:
    """Training epochs of Frappe- (45 pairs) and Criteo-shaped (741 pairs) rows at k = t = 16 and 64, this core
    vs the baseline, each in its own worker process, alternating every case of every round (which goes first
    alternates too); ratio = baseline seconds / this core's seconds (best rounds), >= 1 is no slower."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    workers = {}
    for which in ("new", args.baseline):
        workers[which] = subprocess.Popen(
            [sys.executable, __file__, "speed", "--worker", which, "--rows", str(args.rows),
             "--threads", str(args.threads)] + (["--cpu-time"] if args.cpu_time else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert workers[which].stdout.readline().strip() == "ready"
    times = {(w, c): [] for w in workers for c in range(len(SPEED_CASES))}
    for rnd in range(args.rounds):
        for c in range(len(SPEED_CASES)):
            for which in (list(workers) if (rnd + c) % 2 == 0 else list(workers)[::-1]):
                workers[which].stdin.write(f"{c}\n")
                workers[which].stdin.flush()
                times[(which, c)].append(float(workers[which].stdout.readline()))
    for w in workers.values():
        w.stdin.close()
        w.wait()
    results = []
    for c, (name, k) in enumerate(SPEED_CASES):
        new, base = times[("new", c)], times[(args.baseline, c)]
        ratios = sorted(b / n for n, b in zip(new, base))  # per round, the two runs back to back
        results.append(dict(shape=name, k=k, t=k, threads=args.threads, rounds=args.rounds,
                            clock="thread CPU" if args.cpu_time else "wall",
                            new_best_s=round(min(new), 4), base_best_s=round(min(base), 4),
                            ratio_of_best=round(min(base) / min(new), 3),
                            ratio_median_of_rounds=round(ratios[len(ratios) // 2], 3)))
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=["bounded", "huge", "soak", "speed"])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=1, help="huge: epochs of the 20,000-non-zero row")
    ap.add_argument("--k", type=int, default=64, help="huge: k = t (bounded: always 64)")
    ap.add_argument("--baseline", help="speed: folder holding the baseline build's _core*.so")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rows", type=int, default=20_000, help="speed: Frappe-shaped rows (Criteo: a quarter)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true", help="speed, 1 thread: time the thread's CPU time")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
    elif args.worker:
        speed_worker(args.worker, args.rows, args.threads, args.cpu_time)
    elif args.case == "speed":
        speed(args)
    elif args.case == "soak":
        print(json.dumps(run_child("soak", limit=False)))
    else:
        print(json.dumps(bounded_case(args.case, 2 if args.case == "bounded" else args.epochs, args.k)))


if __name__ == "__main__":
    main()
