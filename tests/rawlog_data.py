"""Small raw click logs the raw-log tests write for themselves (CSV, TSV, Parquet, compressed): a seeded
DataFrame with a label, an id to ignore, categorical columns (with missing values) and numeric columns."""
from __future__ import annotations

import bz2
import gzip
import lzma

import numpy as np

OPENERS = {"": open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def click_frame(n: int = 600, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    site = rng.choice(["news", "shop", "game", "mail", "bank", "rare1"], n, p=[.3, .3, .2, .1, .09, .01])
    device = rng.choice(["ios", "android", "web"], n)
    count = rng.poisson(3.0, n).astype(float)
    price = rng.normal(10.0, 3.0, n)
    logit = (site == "shop") * 1.5 - (device == "web") * 1.0 + 0.2 * (count - 3)
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame({"id": np.arange(n), "click": click, "site": site, "device": device, "count": count,
                       "price": price})
    df["site"] = df["site"].astype(object)
    df.loc[rng.random(n) < 0.05, "site"] = None
    df.loc[rng.random(n) < 0.05, "price"] = np.nan
    return df


def write_text(df, path, sep=",", header=True) -> str:
    """`df` as text at `path`, compressed by its extension; missing values as empty fields."""
    path = str(path)
    ext = next((e for e in (".gz", ".bz2", ".xz") if path.endswith(e)), "")
    text = df.to_csv(sep=sep, header=header, index=False, na_rep="", lineterminator="\n")
    with OPENERS[ext](path, "wt") as fh:
        fh.write(text)
    return path
