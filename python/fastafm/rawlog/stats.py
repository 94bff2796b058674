"""The statistics pass over a raw log: per categorical field the count of every value (a vocabulary; nothing
with hash_buckets), per binned numeric field the count of every distinct value (exact quantiles), per scaled
numeric field the count, mean and sum of squared deviations (Chan's merge: the standard scaling) or min and max.

Counts are kept per column in a C++ hash table (rawlog.strings.ValueCounts), so memory grows with the number of
distinct values, not of rows. Past `max_categories` distinct values over all fields the pass stops with a
ValueError that names the column and suggests hash_buckets (docs/data.md: the memory bound). `add` also returns
each batch's columns as the one-pass conversion spills them (rawlog.spill): the values' first-seen ids, the
hashed ids, the numeric values.
"""
from __future__ import annotations

import numpy as np

from concurrent.futures import ThreadPoolExecutor

from ..data.columns import AUTO, AUTO_BINS, count_like
from .arrow_numpy import float64_values, int64_array, integer_values, null_mask
from .encoding import RawEncoding
from .json_strings import SortedStrings
from .strings import ValueCounts, count_columns, hash_strings


class _Moments:
    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        x = x[~np.isnan(x)]
        if not x.size:
            return
        mean_b = float(x.mean())
        self.merge(x.size, mean_b, float(np.sum((x - mean_b) ** 2)), float(x.min()), float(x.max()))

    def merge(self, n_b: int, mean_b: float, m2_b: float, lo: float, hi: float) -> None:
        """Chan's merge of the moments of another part (n_b values)."""
        if not n_b:
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)


class Statistics:
    """Accumulates the statistics of a layout's fields over batches; `encoding(source)` gives the RawEncoding."""

    def __init__(self, schema, layout, spills: bool = True):
        self.schema, self.layout, self.spills = schema, layout, spills
        self.counts: dict = {}
        self.moments: dict = {}
        self.auto: dict = {}  # numeric_bins="auto": column -> whether every value so far is a count
        for column, kind in zip(layout.fields, layout.kinds):
            if kind == "categorical":
                if schema.hash_buckets is None:
                    self.counts[column] = ValueCounts()
            elif layout.bins.get(column) == AUTO:  # both until a value is not a count (data.columns.count_like)
                self.counts[column] = ValueCounts()
                self.moments[column] = _Moments()
                self.auto[column] = True
            elif layout.bins.get(column) is not None:
                self.counts[column] = ValueCounts()
            else:
                self.moments[column] = _Moments()
        self.maps: dict = {}  # vocabulary column -> the vocabulary id of every first-seen id (encoding())
        self.n_threads = 0  # the categorical columns of a batch are counted on this many threads (0: all cores)
        self.n_rows = 0

    def add(self, batch) -> list:
        """Counts and measures a batch; returns its fields' columns as the conversion spills them: a vocabulary
        field's first-seen ids (int32, -1 missing), a hashed field's ids (int32, hash_buckets missing), a numeric
        field's values (float64, NaN missing)."""
        data = batch.data
        self.n_rows += data.num_rows
        numbers = {c: float64_values(data.column(c)) for c, k in zip(self.layout.fields, self.layout.kinds)
                   if k == "numeric"}
        for column, x in numbers.items():
            _check_finite(batch, column, x)
        for column, still in self.auto.items():
            if still and not count_like(numbers[column], empty=True):
                self.auto[column] = False
                del self.counts[column]  # scaled after all: its distinct values need not be counted
        out = []
        buckets = self.schema.hash_buckets
        vocab = [c for c, k in zip(self.layout.fields, self.layout.kinds) if k == "categorical" and buckets is None]
        counted = dict(zip(vocab, count_columns([self.counts[c] for c in vocab], [data.column(c) for c in vocab],
                                                self.n_threads))) if vocab else {}
        for column, kind in zip(self.layout.fields, self.layout.kinds):
            if kind == "categorical":
                if buckets is None:
                    out.append(counted[column])
                elif self.spills:  # else not read: hashing needs no statistics
                    values = data.column(column)
                    ids = (hash_strings(values) % np.uint64(buckets)).astype(np.int32)
                    if values.null_count:
                        ids[null_mask(values)] = buckets
                    out.append(ids)
                continue
            x = numbers[column]
            if column in self.counts:
                self.counts[column].add_floats(x)
            if column in self.moments:
                self.moments[column].add(x)
            out.append(x)
        total = sum(c.size() for c in self.counts.values())
        if total > self.schema.max_categories:
            worst = max(self.counts, key=lambda k: self.counts[k].size())
            raise ValueError(f"{batch.name}: more than max_categories={self.schema.max_categories} distinct values "
                             f"to count (column {worst} alone has {self.counts[worst].size()}); hash them instead "
                             "(hash_buckets=N, --hash-buckets N) or raise max_categories")
        return out

    def encoding(self, source: dict) -> RawEncoding:
        fields = []
        schema = self.schema
        vocab = [c for c, k in zip(self.layout.fields, self.layout.kinds)
                 if k == "categorical" and schema.hash_buckets is None]
        # two columns' vocabularies at a time (pyarrow's sort releases the GIL), in column order; each table is
        # freed once its vocabulary is read
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = {c: pool.submit(self._vocabulary, c) for c in vocab}
            for column, kind in zip(self.layout.fields, self.layout.kinds):
                if kind != "categorical":
                    continue
                if schema.hash_buckets is not None:
                    fields.append({"column": column, "kind": "hash", "buckets": schema.hash_buckets})
                else:
                    categories, self.maps[column] = pending.pop(column).result()
                    fields.append({"column": column, "kind": "category", "categories": categories})
        fields = self._numeric_fields(fields)
        self.counts.clear()
        return RawEncoding(fields, source)

    def _vocabulary(self, column) -> tuple:
        values, counts = self.counts.pop(column).strings()  # the table is freed once read
        return vocabulary(values, counts, self.schema.min_frequency)

    def _numeric_fields(self, categorical: list) -> list:
        """Every field's spec in column order: `categorical`'s, in order, and the numeric fields'."""
        fields, given = [], iter(categorical)
        schema = self.schema
        for column, kind in zip(self.layout.fields, self.layout.kinds):
            if kind == "categorical":
                fields.append(next(given))
            elif column in self.counts and (column not in self.auto or self._counted(column)):
                n_bins = AUTO_BINS if column in self.auto else self.layout.bins[column]
                numbers, counts = self.counts.pop(column).floats()
                edges = quantile_edges(numbers, counts, n_bins)
                fields.append({"column": column, "kind": "bins", "edges": [float(e) for e in edges]})
            else:
                center, scale = scaling(self.moments[column], schema.numeric_scaling)
                fields.append({"column": column, "kind": "numeric", "center": center, "scale": scale,
                               "missing": schema.numeric_missing})
        return fields

    def summary(self) -> dict:
        """What the statistics of several parts of one log are merged from (picklable: the Dask workers send it,
        fastafm.rawlog.merge merges it): rows, per counted column its values and counts, per measured column its
        moments, per "auto" column whether every value was a count."""
        counts = {c: (v.strings() if k == "categorical" else v.floats())
                  for c, v in self.counts.items()
                  for k in [self.layout.kinds[self.layout.fields.index(c)]]}
        moments = {c: (m.n, m.mean, m.m2, m.lo, m.hi) for c, m in self.moments.items()}
        return {"n_rows": self.n_rows, "counts": counts, "moments": moments, "auto": dict(self.auto)}

    def _counted(self, column) -> bool:
        """An "auto" column is binned when all its values were counts and at least one was present."""
        return self.auto[column] and self.moments[column].n > 0


def vocabulary(values, counts: np.ndarray, min_frequency: int) -> tuple:
    """(the values seen at least min_frequency times, sorted bytewise (the order of Python's sorted on str), a
    SortedStrings; the vocabulary id of every value by its first-seen id, int32, with one more entry, the unknown id,
    last: so that indexing with -1, a missing value, gives the unknown id)."""
    import pyarrow.compute as pc

    kept = np.flatnonzero(counts >= min_frequency)
    if kept.size == len(counts):  # every value kept: no take
        order = integer_values(pc.sort_indices(values)).astype(np.int64)
    else:
        order = integer_values(pc.sort_indices(values.take(int64_array(kept)))).astype(np.int64) if kept.size \
            else np.zeros(0, dtype=np.int64)
    ids = np.full(len(counts) + 1, kept.size, dtype=np.int32)
    ids[kept[order]] = np.arange(kept.size, dtype=np.int32)
    return SortedStrings(values.take(int64_array(kept[order]))), ids


def quantile_edges(values: np.ndarray, counts: np.ndarray, n_bins: int) -> np.ndarray:
    """FieldEncoder's bin edges (fastafm.data.columns.fit_bins) from the counts of the distinct values: NumPy's
    linear quantiles of the implied sorted sample, computed as np.quantile computes them."""
    if values.size == 0:
        return np.empty(0)
    counts = counts.astype(np.int64)
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    ends = np.cumsum(counts)  # the sorted sample's element k is values[searchsorted(ends, k, "right")]
    n = int(ends[-1])
    q = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    virtual = (n - 1) * q  # numpy's 'linear' method
    previous = np.floor(virtual)
    gamma = virtual - previous
    lo_idx = np.clip(previous.astype(np.int64), 0, n - 1)
    hi_idx = np.clip(previous.astype(np.int64) + 1, 0, n - 1)
    a = values[np.searchsorted(ends, lo_idx, side="right")]
    b = values[np.searchsorted(ends, hi_idx, side="right")]
    diff = b - a
    inner = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    inner = np.where(a == b, a, inner)
    return np.unique(inner[inner > values[0]])


def scaling(m: _Moments, how) -> tuple:
    """FieldEncoder's (center, scale) (fastafm.data.columns.fit_scaling) from streamed moments."""
    if how is None or m.n == 0:
        return 0.0, 1.0
    if how == "standard":
        center, spread = m.mean, float(np.sqrt(m.m2 / m.n))
    else:
        center, spread = m.lo, m.hi - m.lo
    return float(center), float(spread if spread > 0 and np.isfinite(spread) else 1.0)


def _check_finite(batch, column: str, x: np.ndarray) -> None:
    """ValueError naming the line of an infinite value in a numeric column (FieldEncoder refuses them too)."""
    if np.isfinite(x).all() or not np.isinf(x).any():  # NaN is a missing value
        return
    row = int(np.flatnonzero(np.isinf(x))[0])
    value = batch.data.column(column)[row].as_py()
    raise ValueError(f"{batch.name}:{batch.first_line + row}: column {column}: {value!r} is not a finite number "
                     "(a numeric column)")
