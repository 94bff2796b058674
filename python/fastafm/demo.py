"""`fastafm demo`: AFM against FM-like uniform pooling on synthetic data with planted pair interactions.

No download: the data are made here. The target is driven by three planted field pairs; with a small
embedding, uniform pooling cannot keep the pairs apart while attention can, so AFM reaches a clearly
lower test RMSE and its attention singles out the planted pairs.
"""
from __future__ import annotations

import time

from . import metrics
from .data.synthetic import make_planted
from .models.estimators import AFMRegressor
from .interpret import field_pair_attention, top_field_pairs

PLANTED = ((0, 1), (2, 3), (4, 5))


def run_demo(n_rows: int = 30000, n_fields: int = 8, cardinality: int = 10, embedding_dim: int = 8,
             n_epochs: int = 20, n_threads: int = 0, random_state: int = 0, verbose: int = 1, out=print) -> dict:
    X, y, fields = make_planted(n_rows=n_rows, n_fields=n_fields, cardinality=cardinality, planted_pairs=PLANTED,
                                noise=0.1, random_state=random_state)
    n_train = int(0.8 * n_rows)
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    out(f"synthetic data: {n_rows} rows, {n_fields} one-hot fields of {cardinality} values, "
        f"planted field pairs {list(PLANTED)}; {n_train} rows train, {n_rows - n_train} test")
    results = {}
    for name, attention in (("uniform pooling (FM-like)", False), ("AFM (attention)", True)):
        out(f"\ntraining {name}, embedding_dim={embedding_dim}, {n_epochs} epochs")
        model = AFMRegressor(embedding_dim=embedding_dim, attention_dim=embedding_dim, attention=attention,
                             dropout=0.0, n_epochs=n_epochs, n_threads=n_threads, random_state=random_state,
                             verbose=verbose)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        rmse = metrics.rmse(y_test, model.predict(X_test))
        results[name] = (model, rmse, seconds)
        out(f"{name}: test RMSE {rmse:.4f} ({seconds:.1f} s)")
    (_, fm_rmse, _), (afm, afm_rmse, _) = results.values()
    out("\n| model | test RMSE |\n|---|---|")
    out(f"| uniform pooling (FM-like) | {fm_rmse:.4f} |\n| AFM | {afm_rmse:.4f} |")
    out(f"AFM's RMSE is {100 * (1 - afm_rmse / fm_rmse):.1f}% lower than uniform pooling's")
    table = field_pair_attention(afm, X_test, fields)
    top = top_field_pairs(table, n=len(PLANTED) + 2)
    out("\nfield pairs with the largest mean attention (test rows):")
    for a, b, w in top:
        mark = "planted" if (a, b) in PLANTED else ""
        out(f"  fields ({a}, {b})  mean attention {w:.4f}  {mark}".rstrip())
    return {"fm_rmse": fm_rmse, "afm_rmse": afm_rmse, "top_pairs": top}
