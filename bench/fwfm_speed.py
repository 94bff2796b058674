"""FwFM (and FM) training speed against modern-fm's on Criteo- or Frappe-shaped rows (issue 25).

    python bench/fwfm_speed.py [--rows 20000] [--k 16] [--epochs 2] [--threads 2] [--rounds 3] [--shape criteo]

Rows: one-hot fields with Criteo's cardinalities (39 fields, each capped at 25,000 ids) or Frappe's (10 fields),
each field's ids in its own range of n_features (so every feature has one field). Both libraries fit the same
rows for the same epochs with k factors, Adagrad, batch 1 for modern-fm (its only mode) and fastafm's default
batch (128), no early stopping, the given threads. The rounds alternate the libraries (interleaved, so a
disturbance of the machine hits both); prints rows/s (rows x epochs / fit seconds) per round, the median and
spread, the ratio of medians, and the pair-term FLOPs per row of fastafm's kernels with the FMA peak measured in
the same run (bench/fma_peak.py). bench/shape_sweep.py runs `compare` for its FwFM and peers table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import CRITEO_CARDINALITIES, FRAPPE_FIELDS  # noqa: E402


def criteo_fielded(n_rows: int, per_field: int = 25_000, alpha: float = 1.1, seed: int = 0):
    """(X csr float32, y, fields): field f's ids in [offset_f, offset_f + min(card_f, per_field))."""
    return fielded([min(c, per_field) for c in CRITEO_CARDINALITIES], n_rows, alpha, seed)


def fielded(sizes, n_rows: int, alpha: float = 1.1, seed: int = 0):
    """(X csr float32, y, fields): one Zipf-drawn id per field, field f's ids in [offset_f, offset_f + sizes[f])."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ids = np.empty((n_rows, len(sizes)), dtype=np.int64)
    for f, size in enumerate(sizes):
        ids[:, f] = offsets[f] + (rng.zipf(alpha, n_rows) - 1) % size
    n = int(sum(sizes))
    X = sp.csr_matrix((np.ones(ids.size, np.float32), ids.ravel(), np.arange(0, ids.size + 1, len(sizes))),
                      shape=(n_rows, n))
    fields = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    y = (rng.random(n_rows) < 0.25).astype(np.int64)
    return X, y, fields


def fit_fastafm(X, y, fields, k, epochs, threads):
    import fastafm

    m = fastafm.FwFMClassifier(embedding_dim=k, n_epochs=epochs, fields=fields, n_threads=threads,
                               early_stopping=False, random_state=0, dropout=0.0)
    t0 = time.perf_counter()
    m.fit(X, y)
    return time.perf_counter() - t0


def fit_fastafm_fm(X, y, fields, k, epochs, threads):
    import fastafm

    m = fastafm.FMClassifier(embedding_dim=k, n_epochs=epochs, n_threads=threads, early_stopping=False,
                             random_state=0, dropout=0.0)
    t0 = time.perf_counter()
    m.fit(X, y)
    return time.perf_counter() - t0


def fit_modern(X, y, fields, k, epochs, threads):
    import modern_fm

    m = modern_fm.FwFMClassifier(n_factors=k, max_iter=epochs, n_jobs=threads, random_state=0)
    t0 = time.perf_counter()
    m.fit(X, y, field_ids=fields)
    return time.perf_counter() - t0


def fit_modern_fm(X, y, fields, k, epochs, threads):
    import modern_fm

    m = modern_fm.FMClassifier(n_factors=k, max_iter=epochs, n_jobs=threads, random_state=0)
    t0 = time.perf_counter()
    m.fit(X, y)
    return time.perf_counter() - t0


#: the fits `compare` times, by name
FITS = {"fastafm FwFM": fit_fastafm, "modern-fm FwFM": fit_modern, "fastafm FM": fit_fastafm_fm,
        "modern-fm FM": fit_modern_fm}


def shape_rows(shape: str, n_rows: int):
    """(X, y, fields) of `n_rows` Criteo- or Frappe-shaped one-hot rows."""
    return criteo_fielded(n_rows) if shape == "criteo" else fielded(list(FRAPPE_FIELDS.values()), n_rows)


def compare(shape: str, k: int, n_rows: int, epochs: int, threads: int, rounds: int, names=tuple(FITS)) -> dict:
    """{name: [rows/s per round]} of the fits `names` on the same rows, interleaved round by round (a
    warm-up fit of each on 2,000 rows first)."""
    X, y, fields = shape_rows(shape, n_rows)
    for name in names:
        FITS[name](X[:2000], y[:2000], fields, k, 1, threads)
    rates: dict = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            rates[name].append(n_rows * epochs / FITS[name](X, y, fields, k, epochs, threads))
    return rates


def flops_per_row(F: int, k: int) -> int:
    """Pair-term FLOPs per one-hot row of F fields (multiply-adds count 2) in fastafm's FwFM kernels."""
    tri = F * (F - 1) // 2
    # forward: q = sum_{a<b} r_ab S_a S_b (one triangle); backward: T = R_off S (both triangles) and
    # G_ab = (c S_a) . S_b (one triangle)
    return 2 * k * (tri + F * (F - 1) + tri)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shape", choices=["criteo", "frappe"], default="criteo")
    ap.add_argument("--no-modern", action="store_true")
    ap.add_argument("--no-peak", action="store_true", help="skip the FMA peak measurement")
    args = ap.parse_args(argv)
    X, y, fields = shape_rows(args.shape, args.rows)
    runs = {"fastafm": fit_fastafm} if args.no_modern else {"fastafm": fit_fastafm, "modern-fm": fit_modern}
    for fn in runs.values():  # warm-up (imports, JIT, page faults)
        fn(X[:2000], y[:2000], fields, args.k, 1, args.threads)
    rates = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, fn in runs.items():
            s = fn(X, y, fields, args.k, args.epochs, args.threads)
            rates[name].append(args.rows * args.epochs / s)
            print(f"round {r} {name:9s} {rates[name][-1]:10.0f} rows/s", flush=True)
    try:
        if args.no_peak:
            raise RuntimeError("--no-peak")
        import fma_peak

        peak = fma_peak.peak_gflops(fma_peak.measure([args.threads], isas=["avx512", "avx2fma"]), args.threads)[0] * 1e9
    except Exception as e:  # noqa: BLE001
        print(f"fma peak: not measured ({e})")
        peak = None
    fl = flops_per_row(X[0].nnz, args.k)
    for name, v in rates.items():
        med = statistics.median(v)
        line = f"{name:9s} median {med:10.0f} rows/s  (min {min(v):.0f}, max {max(v):.0f})"
        if name == "fastafm":
            line += f"  pair-term {fl * med / 1e9:.2f} GFLOP/s"
            if peak:
                line += f" = {100 * fl * med / peak:.1f}% of the FMA peak {peak / 1e9:.0f} GFLOP/s"
        print(line)
    if "modern-fm" in rates:
        print(f"ratio fastafm / modern-fm: {statistics.median(rates['fastafm']) / statistics.median(rates['modern-fm']):.2f}"
              f" (per round: {', '.join(f'{a / b:.2f}' for a, b in zip(rates['fastafm'], rates['modern-fm']))})")
    print(f"k={args.k} epochs={args.epochs} threads={args.threads} rows={args.rows} fields={X[0].nnz} "
          f"cpu={cpu_name()}")


def cpu_name() -> str:
    from fma_peak import cpu_model

    return cpu_model()


if __name__ == "__main__":
    main()
