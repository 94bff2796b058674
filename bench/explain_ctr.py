"""Issue 24's worked CTR example and its measurements (recorded in docs/explain.md).

    python bench/explain_ctr.py [--rows 200000] [--write]    # --write: the PNGs into docs/

1. A synthetic click log (fastafm.make_clicks: 6 named categorical fields, clicks ~ Bernoulli(sigmoid(-3 + the
   planted site x app and device x hour interactions)), ~8% clicks), encoded with FieldEncoder.
2. Negatives downsampled to 10% for training, as click logs are; AFMClassifier told the rate
   (negative_sampling_rate=0.1) and the same parameters told nothing, against a model trained on all rows:
   mean probability vs the test base rate, log loss, NE, ECE; the reliability diagram (explain_calibration.png).
3. One test row explained (model.explain with the encoder's names): its waterfall (explain_waterfall.png), its
   top pairs, and the mean |pair term| per field pair over 10,000 rows (the planted pairs should lead).
4. Aggregated rows: the 4-field, 5-category rows grouped into (rate, impressions) and trained with
   AFMRegressor(loss="logistic", sample_weight=impressions) against the expanded 0/1 rows: held-out log loss.
5. Speed: 10,000 rows at k = t = 64, 10 fields: decision_function vs explain (AFM; FM with and without the pair
   terms), medians of interleaved rounds.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy.sparse as sp

import fastafm
from fastafm import metrics

FIELDS = ["site", "app", "device", "hour", "banner_pos", "ad_type"]
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f", {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return platform.processor()


def click_frame(n_rows: int, seed: int):
    import pandas as pd

    X, y, fields, proba = fastafm.make_clicks(n_rows, n_fields=len(FIELDS), cardinality=10, random_state=seed)
    cats = (X.indices.reshape(n_rows, len(FIELDS)) - np.arange(len(FIELDS)) * 10)
    df = pd.DataFrame({name: [f"{name[0]}{c}" for c in cats[:, f]] for f, name in enumerate(FIELDS)})
    return df, y, proba


def calibration_part(args, enc, X, y, Xt, yt):
    keep = (y == 1) | (np.random.default_rng(1).random(y.shape[0]) < 0.1)
    kw = dict(embedding_dim=16, attention_dim=16, random_state=0)
    told = fastafm.AFMClassifier(negative_sampling_rate=0.1, **kw).fit(X[keep], y[keep])
    full = fastafm.AFMClassifier(**kw).fit(X, y)
    p_told = told.predict_proba(Xt)[:, 1]
    p_naive = 1.0 / (1.0 + np.exp(-(told.decision_function(Xt) - np.log(0.1))))  # the same model, told nothing
    p_full = full.predict_proba(Xt)[:, 1]
    print(f"\n## 2. downsampled negatives (kept with probability 0.1): {int(keep.sum())} of {y.shape[0]} training "
          f"rows, click rate {y[keep].mean():.4f} there, {y.mean():.4f} in the log, {yt.mean():.4f} in the test rows")
    print("| model | mean p | / base rate | log loss | NE | ECE |\n|---|---|---|---|---|---|")
    for name, p in (("downsampled, told negative_sampling_rate=0.1", p_told),
                    ("downsampled, told nothing (same parameters)", p_naive), ("all rows", p_full)):
        print(f"| {name} | {p.mean():.4f} | {p.mean() / yt.mean():.3f} | {metrics.log_loss(yt, p):.4f} | "
              f"{metrics.normalized_entropy(yt, p):.4f} | {metrics.expected_calibration_error(yt, p):.4f} |")
    if args.write:
        from fastafm import plot

        ax = plot.calibration(yt, p_told, label="told the rate", n_bins=15)
        plot.calibration(yt, p_naive, ax=ax, label="told nothing", n_bins=15)
        plot.calibration(yt, p_full, ax=ax, label="all rows", n_bins=15)
        ax.set_title("AFM on a click log with negatives kept at 10%")
        ax.figure.savefig(os.path.join(DOCS, "explain_calibration.png"), dpi=110)
    return told


def explain_part(args, enc, model, Xt):
    e = model.explain(Xt[:10000], feature_names=enc.feature_names_, fields=enc.fields_, field_names=enc.field_names_)
    df = model.decision_function(Xt[:10000])
    gap = np.abs(e.base_values + e.values.sum(1) - df)
    rel = gap / np.maximum(np.abs(df), 1e-12)
    scale = np.abs(e.base_values) + np.abs(e.values).sum(1)  # the terms' magnitude: float32 rounds at its scale
    over = rel > 1e-5
    print(f"\n## 3. explanations of 10,000 test rows: |sum - decision_function| / |decision_function| max "
          f"{rel.max():.2e}, above 1e-5 in {int(over.sum())} rows (|decision_function| there at most "
          f"{np.abs(df[over]).max() if over.any() else 0:.2e}); / the row's Σ|terms| max {(gap / scale).max():.2e}")
    r = int(np.argmax(df))
    row = e.row(r)
    print(f"row {r} (the most likely click): base value {row['base_value']:.4f} (w0 + log 0.1), score "
          f"{row['score']:.4f}, p = {1 / (1 + np.exp(-row['score'])):.4f}")
    for i, j, term, a in e.top_pairs(r, 4):
        print(f"  pair {enc.feature_names_[i]} x {enc.feature_names_[j]}: term {term:+.4f}, attention {a:.4f}")
    mean_abs = np.abs(e.field_pairs()).mean(axis=0)
    order = np.argsort(-mean_abs, axis=None)[:4]
    print("mean |pair term| by field pair: " + ", ".join(
        f"{FIELDS[a]} x {FIELDS[b]} {mean_abs[a, b]:.4f}" for a, b in zip(*np.unravel_index(order, mean_abs.shape))))
    if args.write:
        from fastafm import plot

        ax = plot.waterfall(e, r, max_features=6, title=f"row {r}: why AFM predicts p = "
                                                        f"{1 / (1 + np.exp(-row['score'])):.3f}")
        ax.figure.savefig(os.path.join(DOCS, "explain_waterfall.png"), dpi=110)


def aggregated_part():
    X, y, _, _ = fastafm.make_clicks(105000, n_fields=4, cardinality=5, base_logit=-2.0, random_state=3)
    Xt, yt, X, y = X[100000:], y[100000:], X[:100000], y[:100000]
    keys, inv = np.unique(X.toarray(), axis=0, return_inverse=True)
    inv = inv.ravel()
    n = np.bincount(inv).astype(np.float64)
    rate = np.bincount(inv, weights=y) / n
    kw = dict(embedding_dim=8, attention_dim=8, random_state=0)
    t0 = time.perf_counter()
    expanded = fastafm.AFMClassifier(n_epochs=10, early_stopping=False, **kw).fit(X, y)
    t1 = time.perf_counter()
    agg = fastafm.AFMRegressor(loss="logistic", n_epochs=60, batch_size=16, early_stopping=False, **kw)
    agg.fit(sp.csr_matrix(keys), rate, sample_weight=n)
    t2 = time.perf_counter()
    want, got = metrics.log_loss(yt, expanded.predict_proba(Xt)[:, 1]), metrics.log_loss(yt, agg.predict(Xt))
    print(f"\n## 4. aggregated rows: {X.shape[0]} 0/1 rows = {keys.shape[0]} (rate, impressions) rows")
    print(f"held-out log loss: expanded {want:.4f} ({t1 - t0:.1f} s), aggregated {got:.4f} ({t2 - t1:.1f} s), "
          f"ratio {got / want:.4f}")


def speed_part(rounds: int = 7):
    X, y, _, _ = fastafm.make_clicks(20000, n_fields=10, cardinality=50, random_state=5)
    Xt = X[10000:]
    afm = fastafm.AFMClassifier(embedding_dim=64, attention_dim=64, n_epochs=1, random_state=0).fit(X[:10000], y[:10000])
    fm = fastafm.FMClassifier(embedding_dim=64, n_epochs=1, random_state=0).fit(X[:10000], y[:10000])
    cases = {"AFM predict": lambda: afm.decision_function(Xt), "AFM explain": lambda: afm.explain(Xt),
             "AFM explain (CSR values)": lambda: afm.explain(Xt, dense=False),
             "FM predict": lambda: fm.decision_function(Xt), "FM explain": lambda: fm.explain(Xt),
             "FM explain pairs=False, CSR": lambda: fm.explain(Xt, pairs=False, dense=False)}
    times: dict = {name: [] for name in cases}
    for _ in range(rounds):
        for name, f in cases.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    med = {name: float(np.median(v)) for name, v in times.items()}
    print("\n## 5. speed: 10,000 rows, 10 fields (45 pairs a row), k = t = 64, 2 threads, median of "
          f"{rounds} interleaved rounds")
    print("| call | ms | x predict |\n|---|---|---|")
    for name, t in med.items():
        base = med["AFM predict" if name.startswith("AFM") else "FM predict"]
        print(f"| {name} | {1000 * t:.1f} | {t / base:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--write", action="store_true", help="write the PNGs into docs/")
    args = ap.parse_args()
    if args.write:
        import matplotlib

        matplotlib.use("Agg")
    print(f"# issue 24 on {cpu_model()}, fastafm {fastafm.__version__}")
    df, y, _ = click_frame(args.rows, seed=0)
    n_train = int(args.rows * 0.8)
    enc = fastafm.FieldEncoder(categorical=FIELDS).fit(df[:n_train])
    X, Xt = enc.transform(df[:n_train]), enc.transform(df[n_train:])
    print(f"## 1. {args.rows} rows, {len(FIELDS)} fields, {X.shape[1]} features, click rate {y.mean():.4f}")
    model = calibration_part(args, enc, X, y[:n_train], Xt, y[n_train:])
    explain_part(args, enc, model, Xt)
    aggregated_part()
    speed_part()


if __name__ == "__main__":
    main()
