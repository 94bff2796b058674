"""AUC parity of the raw-log route (issue 23) on the shared Criteo head: FieldEncoder on the DataFrame, the raw
TSV route (convert -> fit(cache) -> predict_proba(test TSV)) and the Parquet route, with the same options and
the split of bench/click_logs.py (stratified 70/30, random_state 0). The split files go to a temporary folder
(never commit them).

    python bench/raw_parity.py ../shared/data [--seeds 0 1 2]

Prints the test AUC of each route for two trainings: the defaults (early stopping holds out the same stratified
tenth of the rows in memory and from a cache, the linear fallback solves the same rows) and early_stopping=False
with 10 epochs. Either way a one-block cache trains bit for bit as the same rows in memory, so equal encodings
give equal AUCs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastafm  # noqa: E402
from click_logs import CRITEO_COLUMNS  # noqa: E402

NUMERIC = CRITEO_COLUMNS[1:14]
CATEGORICAL = CRITEO_COLUMNS[14:]


def main() -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.model_selection import train_test_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    path = Path(args.folder) / "criteo-head" / "criteo.head10k.txt"
    lines = path.read_bytes().splitlines(keepends=True)
    df = pd.read_csv(path, sep="\t", header=None, names=CRITEO_COLUMNS)
    for c in CATEGORICAL:
        df[c] = df[c].astype(object)
    train_idx, test_idx = train_test_split(np.arange(len(df)), test_size=0.3, random_state=0, stratify=df["label"])
    train, test = df.iloc[train_idx].reset_index(drop=True), df.iloc[test_idx].reset_index(drop=True)
    y_test = test["label"].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        tsv_train, tsv_test = os.path.join(tmp, "train.txt"), os.path.join(tmp, "test.txt")
        with open(tsv_train, "wb") as fh:  # the raw lines themselves, in the split's order
            fh.writelines(lines[i] for i in train_idx)
        with open(tsv_test, "wb") as fh:
            fh.writelines(lines[i] for i in test_idx)
        pq_train, pq_test = os.path.join(tmp, "train.parquet"), os.path.join(tmp, "test.parquet")
        for frame, dest in ((train, pq_train), (test, pq_test)):
            pq.write_table(pa.Table.from_pandas(frame.astype({c: "Int64" for c in NUMERIC}), preserve_index=False),
                           dest)
        encoder = fastafm.FieldEncoder(categorical=CATEGORICAL, numeric=NUMERIC)
        X = encoder.fit_transform(train.drop(columns=["label"]))
        X_test = encoder.transform(test.drop(columns=["label"]))
        tsv_cache = fastafm.convert(tsv_train, os.path.join(tmp, "tsv.cache"), label=0,
                                    numeric=list(range(1, 14)), header=False)
        pq_cache = fastafm.convert(pq_train, os.path.join(tmp, "pq.cache"), label="label", numeric=NUMERIC)
        print(f"criteo head: {len(train)} train / {len(test)} test rows, {X.shape[1]} features "
              f"(TSV cache {tsv_cache.n_features}, Parquet cache {pq_cache.n_features}); rows equal: "
              f"TSV {_same_rows(tsv_cache, X)}, Parquet {_same_rows(pq_cache, X)}; fields equal: "
              f"{np.array_equal(tsv_cache.read_fields(), encoder.fields_)}, "
              f"{np.array_equal(pq_cache.read_fields(), encoder.fields_)}")
        for settings in ({}, {"early_stopping": False, "n_epochs": 10}):
            for seed in args.seeds:
                aucs = {}
                # the encoder's fields, as the caches carry theirs (AFMClassifier's field_aware="auto" takes both)
                model = fastafm.AFMClassifier(random_state=seed, fields=encoder.fields_, **settings)
                model.fit(X, train["label"].to_numpy())
                aucs["FieldEncoder"] = fastafm.metrics.roc_auc(y_test, model.predict_proba(X_test)[:, 1])
                model = fastafm.AFMClassifier(random_state=seed, **settings).fit(tsv_cache)
                aucs["raw TSV"] = fastafm.metrics.roc_auc(y_test, model.predict_proba(tsv_test)[:, 1])
                model = fastafm.AFMClassifier(random_state=seed, **settings).fit(pq_cache)
                aucs["Parquet"] = fastafm.metrics.roc_auc(y_test, model.predict_proba(pq_test)[:, 1])
                print(f"{settings or 'defaults'} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items()),
                      flush=True)


def _same_rows(cache, X) -> bool:
    Xc, _ = cache.read_rows(0, cache.n_rows)
    return bool(Xc.shape == X.shape and np.array_equal(Xc.indices, X.indices)
                and np.allclose(Xc.data, X.data, rtol=1e-6, atol=1e-6))


if __name__ == "__main__":
    main()
