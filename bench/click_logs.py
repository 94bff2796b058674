"""The real click logs of ../shared/data (README.md there: provenance, splits, licences) as (train, test) rows,
encoded the way a user would: raw columns through fastafm.FieldEncoder, libFM files through load_libfm. Never
commit the data or anything derived from it row by row; scripts take the folder as an argument.

    from click_logs import load
    sets = load("../shared/data", ["avazu", "criteo", "ipinyou", "frappe-clf"])   # name -> ClickLog

Splits (as the accuracy issue measured them): Avazu head: train.csv, test dev.csv + test.csv, `id` and `hour`
dropped, every other column categorical; Criteo head: a stratified 70/30 split (random_state 0), label then
I1-I13 (counts, numeric) then C1-C26 (categorical), empty fields missing; iPinYou: train.fm.txt / test.fm.txt;
Frappe as clicks: frappe.validation.libfm / frappe.test.libfm, label 1 the click.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fastafm

AVAZU_COLUMNS = ["id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
                 "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
                 "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21"]
CRITEO_COLUMNS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


@dataclass
class ClickLog:
    name: str
    X: object         # CSR rows of the training part
    y: np.ndarray     # 0/1
    X_test: object
    y_test: np.ndarray
    fields: object = None  # the feature -> field map where the encoder knows it

    def describe(self) -> str:
        return (f"{self.name}: {self.X.shape[0]} train / {self.X_test.shape[0]} test rows, {self.X.shape[1]} "
                f"features, {self.X.nnz / self.X.shape[0]:.1f} non-zeros a row, {self.y.mean():.3f} positive")


def _encoded(name, train_df, test_df, label: str, encoder_kw: dict) -> ClickLog:
    encoder = fastafm.FieldEncoder(**encoder_kw)
    X = encoder.fit_transform(train_df.drop(columns=[label]))
    X_test = encoder.transform(test_df.drop(columns=[label]))
    return ClickLog(name, X, train_df[label].to_numpy().astype(int), X_test, test_df[label].to_numpy().astype(int),
                    encoder.fields_)


def avazu(folder: Path, **encoder_kw) -> ClickLog:
    import pandas as pd

    read = dict(dtype=str, keep_default_na=False)
    train = pd.read_csv(folder / "avazu-head" / "train.csv", **read)
    test = pd.concat([pd.read_csv(folder / "avazu-head" / f, header=None, names=AVAZU_COLUMNS, **read)
                      for f in ("dev.csv", "test.csv")], ignore_index=True)
    train, test = (df.drop(columns=["id", "hour"]).astype({"click": int}) for df in (train, test))
    return _encoded("avazu-head", train, test, "click", {"categorical": [c for c in train.columns if c != "click"],
                                                          **encoder_kw})


def criteo(folder: Path, **encoder_kw) -> ClickLog:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(folder / "criteo-head" / "criteo.head10k.txt", sep="\t", header=None, names=CRITEO_COLUMNS)
    for c in CRITEO_COLUMNS[14:]:
        df[c] = df[c].astype(object)
    train, test = train_test_split(df, test_size=0.3, random_state=0, stratify=df["label"])
    kw = {"categorical": CRITEO_COLUMNS[14:], "numeric": CRITEO_COLUMNS[1:14], **encoder_kw}
    return _encoded("criteo-head", train.reset_index(drop=True), test.reset_index(drop=True), "label", kw)


def _libfm(name: str, train: Path, test: Path) -> ClickLog:
    X, y = fastafm.load_libfm(str(train))
    X_test, y_test = fastafm.load_libfm(str(test), n_features=X.shape[1])
    if X_test.shape[1] > X.shape[1]:  # ids only the test part has: widen the training rows
        X.resize((X.shape[0], X_test.shape[1]))
    return ClickLog(name, X, (y > 0).astype(int), X_test, (y_test > 0).astype(int))


def ipinyou(folder: Path, **_) -> ClickLog:
    return _libfm("ipinyou", folder / "ipinyou" / "train.fm.txt", folder / "ipinyou" / "test.fm.txt")


def frappe_clicks(folder: Path, **_) -> ClickLog:
    return _libfm("frappe-clf", folder / "frappe" / "frappe.validation.libfm", folder / "frappe" / "frappe.test.libfm")


LOADERS = {"avazu": avazu, "criteo": criteo, "ipinyou": ipinyou, "frappe-clf": frappe_clicks}


def load(folder, names=None, **encoder_kw) -> dict:
    """name -> ClickLog for `names` (default: all four)."""
    folder = Path(folder)
    return {n: LOADERS[n](folder, **encoder_kw) for n in (names or list(LOADERS))}


def subsample(log: ClickLog, n_rows: int, seed: int = 0) -> ClickLog:
    """The first-come `n_rows` of a seeded permutation of the training rows (the test rows unchanged)."""
    keep = np.sort(np.random.default_rng(seed).permutation(log.X.shape[0])[:n_rows])
    return ClickLog(f"{log.name}[{n_rows}]", log.X[keep], log.y[keep], log.X_test, log.y_test, log.fields)
