"""Benchmark data: Frappe-shaped and Criteo-shaped one-hot rows, and a ~100 MB libFM file.

* `frappe_like(n_rows)`: 10 one-hot fields with Frappe's field sizes (5,382 features; the default 200,000 rows is
  the issue's benchmark size). Categories are drawn with a Zipf-like skew inside each field (popular users and
  items, as in the real logs), labels are +1 / -1 with a third positive, as Frappe's.
* `criteo_like(n_rows)`: 39 fields (13 discretised counts + 26 categorical, P = 741 pairs per row) with Criteo's
  published cardinalities, each (field, category) hashed into `n_features` (default 1e6) ids; Zipf-skewed.
* `frappe_real(n_rows)`: the real Frappe rows (validation + test files from ../shared/data) tiled to n_rows.
* `replicated_libfm(target_bytes)`: the Frappe validation file (or, when it is not there, a synthetic
  Frappe-shaped file with the same CRLF format) copied end to end into a temporary directory until it
  reaches target_bytes (~100 MB by default).

Every dataset is a `Dataset`: CSR X (float32 values, int32 indices, int64 indptr: the dtypes the core takes),
float32 y, the (n_rows, n_fields) id matrix for PyTorch, and the field sizes.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent

#: Frappe's fields and their sizes (../shared/data/README.md): ids are laid out in this order, 5,382 in all.
FRAPPE_FIELDS = {
    "user": 957, "item": 4082, "daytime": 7, "weekday": 7, "isweekend": 2,
    "homework": 3, "cost": 2, "weather": 9, "country": 80, "city": 233,
}
FRAPPE_N_FEATURES = sum(FRAPPE_FIELDS.values())  # 5382
FRAPPE_ROWS = 200_000

#: Criteo (Kaggle display advertising): 13 integer features (discretised, about 100 buckets each, as FM/AFM
#: pipelines do) and the 26 categorical features' distinct-value counts over the training set.
CRITEO_CARDINALITIES = [100] * 13 + [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
]
CRITEO_N_FEATURES = 1_000_000


@dataclass
class Dataset:
    """Rows for a benchmark. `ids` is None for data with variable-length rows."""

    name: str
    X: sp.csr_matrix
    y: np.ndarray
    ids: np.ndarray | None
    field_sizes: list

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def row_nnz(self) -> np.ndarray:
        return np.diff(self.X.indptr)

    def arrays(self):
        """(indptr int64, indices int32, values float32): what `_core` functions take."""
        return (np.ascontiguousarray(self.X.indptr, dtype=np.int64),
                np.ascontiguousarray(self.X.indices, dtype=np.int32),
                np.ascontiguousarray(self.X.data, dtype=np.float32))

    def head(self, n: int) -> "Dataset":
        """The first n rows."""
        n = min(int(n), self.n_rows)
        X = self.X[:n]
        X = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int64)), shape=X.shape)
        return Dataset(self.name, X, self.y[:n], None if self.ids is None else self.ids[:n], self.field_sizes)

    def nbytes(self) -> int:
        """Bytes of the arrays training reads (CSR arrays and y)."""
        return sum(a.nbytes for a in self.arrays()) + self.y.nbytes


def _zipf_categories(rng, size: int, n: int, alpha: float) -> np.ndarray:
    """n draws from {0..size-1} with P(r) proportional to 1/(r+1)^alpha, ranks shuffled to random ids."""
    if alpha <= 0 or size == 1:
        return rng.integers(0, size, n)
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** alpha
    cdf = np.cumsum(weights)
    ranks = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return rng.permutation(size)[np.minimum(ranks, size - 1)]


def _csr_from_ids(ids: np.ndarray, n_features: int, values=None) -> sp.csr_matrix:
    n_rows, n_fields = ids.shape
    indptr = np.arange(0, (n_rows + 1) * n_fields, n_fields, dtype=np.int64)
    data = np.ones(ids.size, np.float32) if values is None else np.asarray(values, np.float32).reshape(-1)
    return sp.csr_matrix((data, ids.reshape(-1).astype(np.int32), indptr), shape=(n_rows, n_features))


def _labels(rng, n_rows: int) -> np.ndarray:
    return np.where(rng.random(n_rows) < 1 / 3, 1.0, -1.0).astype(np.float32)


def frappe_like(n_rows: int = FRAPPE_ROWS, alpha: float = 1.0, seed: int = 0) -> Dataset:
    """Synthetic rows with Frappe's shape: 10 one-hot fields, 5,382 features, labels +-1."""
    rng = np.random.default_rng(seed)
    sizes = list(FRAPPE_FIELDS.values())
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ids = np.empty((n_rows, len(sizes)), dtype=np.int32)
    for f, (size, off) in enumerate(zip(sizes, offsets)):
        ids[:, f] = off + _zipf_categories(rng, size, n_rows, alpha)
    return Dataset("frappe", _csr_from_ids(ids, FRAPPE_N_FEATURES), _labels(rng, n_rows), ids, sizes)


def _hash_ids(field: int, cats: np.ndarray, n_features: int) -> np.ndarray:
    """splitmix64 of (field, category) modulo n_features: the hashing trick, collisions included."""
    with np.errstate(over="ignore"):
        z = cats.astype(np.uint64) + np.uint64(field) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_features)).astype(np.int32)


def criteo_like(n_rows: int = 100_000, n_features: int = CRITEO_N_FEATURES, alpha: float = 1.1,
                seed: int = 0) -> Dataset:
    """Synthetic rows with Criteo's shape: 39 one-hot fields (P = 741 pairs), ids hashed into n_features.

    Categories follow a Zipf law of exponent `alpha` within each field (ranks beyond the field's cardinality
    wrap around), which gives the skew of click logs: a few ids in most rows, a long tail seen once.
    """
    rng = np.random.default_rng(seed)
    ids = np.empty((n_rows, len(CRITEO_CARDINALITIES)), dtype=np.int32)
    for f, card in enumerate(CRITEO_CARDINALITIES):
        ranks = (rng.zipf(alpha, n_rows) - 1) % card
        ids[:, f] = _hash_ids(f, ranks, n_features)
    return Dataset("criteo", _csr_from_ids(ids, n_features), _labels(rng, n_rows), ids,
                   list(CRITEO_CARDINALITIES))


def frappe_dir() -> Path:
    """Where the real Frappe files are: $FASTAFM_FRAPPE_DIR, else ../shared/data/frappe next to the checkout."""
    env = os.environ.get("FASTAFM_FRAPPE_DIR")
    if env:
        return Path(env)
    for base in (HERE.parent.parent, HERE.parent):
        cand = base / "shared" / "data" / "frappe"
        if cand.is_dir():
            return cand
    return HERE.parent.parent / "shared" / "data" / "frappe"


def frappe_real(n_rows: int = FRAPPE_ROWS) -> Dataset:
    """The real Frappe rows (validation then test file), tiled to n_rows. Raises FileNotFoundError without them."""
    import fastafm

    parts = [fastafm.load_libfm(frappe_dir() / name, n_features=FRAPPE_N_FEATURES)
             for name in ("frappe.validation.libfm", "frappe.test.libfm")]
    X = sp.vstack([p[0] for p in parts]).tocsr()
    y = np.concatenate([p[1] for p in parts])
    reps = -(-n_rows // X.shape[0])
    sel = np.tile(np.arange(X.shape[0]), reps)[:n_rows]
    ids = X.indices.reshape(X.shape[0], -1)[sel]  # every Frappe row has exactly 10 ids, in field order
    return Dataset("frappe-real", _csr_from_ids(ids, FRAPPE_N_FEATURES), y[sel].astype(np.float32), ids,
                   list(FRAPPE_FIELDS.values()))


def write_libfm(ds: Dataset, path, crlf: bool = True) -> Path:
    """Write rows as libFM text ('label id:value ...'), values printed as %g (1 for one-hot)."""
    path = Path(path)
    eol = "\r\n" if crlf else "\n"
    X = ds.X
    with open(path, "w", newline="") as fh:
        for r in range(X.shape[0]):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            feats = " ".join(f"{i}:{v:g}" for i, v in zip(X.indices[lo:hi].tolist(), X.data[lo:hi].tolist()))
            fh.write(f"{ds.y[r]:g} {feats}{eol}")
    return path


def replicate_file(src, target_bytes: int, dst) -> Path:
    """Copy `src` end to end into `dst` until it holds at least target_bytes (whole copies only)."""
    src, dst = Path(src), Path(dst)
    size = src.stat().st_size
    if size == 0:
        raise ValueError(f"{src} is empty")
    copies = max(1, -(-int(target_bytes) // size))
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for _ in range(copies):
            fin.seek(0)
            shutil.copyfileobj(fin, fout, 1 << 22)
    return dst


def replicated_libfm(target_bytes: int = 100_000_000, directory=None, source=None) -> Path:
    """A libFM file of about target_bytes in `directory` (default a new temp dir; the caller removes it).

    The source is `source`, else the real Frappe validation file, else a synthetic Frappe-shaped file
    (57,722 rows, same format: 10 one-hot ids per line, CRLF) written next to the result.
    """
    directory = Path(directory or tempfile.mkdtemp(prefix="fastafm-libfm-"))
    directory.mkdir(parents=True, exist_ok=True)
    if source is None:
        real = frappe_dir() / "frappe.validation.libfm"
        if real.is_file():
            source = real
        else:
            source = write_libfm(frappe_like(57_722, seed=1), directory / "frappe_like.libfm")
    mb = int(round(target_bytes / 1e6))
    return replicate_file(source, target_bytes, directory / f"{Path(source).stem}.x{mb}MB.libfm")


def make(name: str, n_rows: int, seed: int = 0) -> Dataset:
    """A dataset by name: 'frappe' (synthetic), 'frappe-real' or 'criteo'."""
    if name == "frappe":
        return frappe_like(n_rows, seed=seed)
    if name == "frappe-real":
        return frappe_real(n_rows)
    if name == "criteo":
        return criteo_like(n_rows, seed=seed)
    raise ValueError(f"unknown dataset {name!r} (frappe, frappe-real, criteo)")
