"""The statistics pass over a raw log: per categorical field the count of every value (a vocabulary; nothing
with hash_buckets), per binned numeric field the count of every distinct value (exact quantiles), per scaled
numeric field the count, mean and sum of squared deviations (Chan's merge: the standard scaling) or min and max.

Counts are kept as pyarrow tables and merged batch by batch with a hash aggregation (C++), so memory grows with
the number of distinct values, not of rows. Past `max_categories` distinct values over all fields the pass stops
with a ValueError that names the column and suggests hash_buckets (docs/data.md: the memory bound).
"""
from __future__ import annotations

import numpy as np

from ..data.columns import AUTO, AUTO_BINS, count_like
from .encoding import RawEncoding
from .reader import pyarrow

_MERGE_ROWS = 1 << 19  # pending (value, count) pairs of a field before they are merged


class _Counts:
    """Exact counts of the values of one column (strings or float64)."""

    def __init__(self):
        self.merged = None
        self.pending: list = []
        self.pending_rows = 0

    def add(self, column) -> None:
        import pyarrow.compute as pc

        vc = pc.value_counts(column.drop_null() if column.null_count else column)
        self.pending.append(vc)
        self.pending_rows += len(vc)
        if self.pending_rows > _MERGE_ROWS:
            self.merge()

    def merge(self):
        pa = pyarrow()
        parts = ([self.merged] if self.merged is not None else []) + [
            pa.table({"values": vc.field("values"), "counts": vc.field("counts")}) for vc in self.pending]
        self.pending, self.pending_rows = [], 0
        if not parts:
            return self.merged
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if len(parts) > 1:
            table = table.group_by("values").aggregate([("counts", "sum")]).rename_columns(["values", "counts"])
        self.merged = table
        return table

    def size(self) -> int:
        return (len(self.merged) if self.merged is not None else 0) + self.pending_rows


class _Moments:
    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        x = x[~np.isnan(x)]
        if not x.size:
            return
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(np.sum((x - mean_b) ** 2))
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))


class Statistics:
    """Accumulates the statistics of a layout's fields over batches; `encoding(source)` gives the RawEncoding."""

    def __init__(self, schema, layout):
        self.schema, self.layout = schema, layout
        self.counts: dict = {}
        self.moments: dict = {}
        self.auto: dict = {}  # numeric_bins="auto": column -> whether every value so far is a count
        for column, kind in zip(layout.fields, layout.kinds):
            if kind == "categorical":
                if schema.hash_buckets is None:
                    self.counts[column] = _Counts()
            elif layout.bins.get(column) == AUTO:  # both until a value is not a count (data.columns.count_like)
                self.counts[column] = _Counts()
                self.moments[column] = _Moments()
                self.auto[column] = True
            elif layout.bins.get(column) is not None:
                self.counts[column] = _Counts()
            else:
                self.moments[column] = _Moments()
        self.n_rows = 0

    def add(self, batch) -> None:
        data = batch.data
        self.n_rows += data.num_rows
        for column, kind in zip(self.layout.fields, self.layout.kinds):
            if kind == "numeric":
                _check_finite(batch, column)
        for column, still in self.auto.items():
            if still and not count_like(data.column(column).to_numpy(zero_copy_only=False).astype(np.float64),
                                        empty=True):
                self.auto[column] = False
                del self.counts[column]  # scaled after all: its distinct values need not be counted
        for column, counts in self.counts.items():
            counts.add(data.column(column))
        total = sum(c.size() for c in self.counts.values())
        if total > self.schema.max_categories:
            for c in self.counts.values():
                c.merge()
            total = sum(c.size() for c in self.counts.values())
            if total > self.schema.max_categories:
                worst = max(self.counts, key=lambda k: self.counts[k].size())
                raise ValueError(f"{batch.name}: more than max_categories={self.schema.max_categories} distinct values "
                                 f"to count (column {worst} alone has {self.counts[worst].size()}); hash them instead "
                                 "(hash_buckets=N, --hash-buckets N) or raise max_categories")
        for column, moments in self.moments.items():
            moments.add(data.column(column).to_numpy(zero_copy_only=False).astype(np.float64))


    def encoding(self, source: dict) -> RawEncoding:
        fields = []
        schema = self.schema
        for column, kind in zip(self.layout.fields, self.layout.kinds):
            if kind == "categorical":
                if schema.hash_buckets is not None:
                    fields.append({"column": column, "kind": "hash", "buckets": schema.hash_buckets})
                else:
                    fields.append({"column": column, "kind": "category",
                                   "categories": vocabulary(self.counts[column].merge(), schema.min_frequency)})
            elif column in self.counts and (column not in self.auto or self._counted(column)):
                n_bins = AUTO_BINS if column in self.auto else self.layout.bins[column]
                edges = quantile_edges(self.counts[column].merge(), n_bins)
                fields.append({"column": column, "kind": "bins", "edges": [float(e) for e in edges]})
            else:
                center, scale = scaling(self.moments[column], schema.numeric_scaling)
                fields.append({"column": column, "kind": "numeric", "center": center, "scale": scale,
                               "missing": schema.numeric_missing})
        return RawEncoding(fields, source)

    def _counted(self, column) -> bool:
        """An "auto" column is binned when all its values were counts and at least one was present."""
        return self.auto[column] and self.moments[column].n > 0


def vocabulary(table, min_frequency: int) -> list:
    """The values seen at least min_frequency times, sorted (bytewise: the order of Python's sorted on str)."""
    import pyarrow.compute as pc

    if table is None or len(table) == 0:
        return []
    kept = table.filter(pc.greater_equal(table.column("counts"), min_frequency))
    values = kept.column("values")
    return pc.take(values, pc.sort_indices(values)).to_pylist()


def quantile_edges(table, n_bins: int) -> np.ndarray:
    """FieldEncoder's bin edges (fastafm.data.columns.fit_bins) from the counts of the distinct values: NumPy's
    linear quantiles of the implied sorted sample, computed as np.quantile computes them."""
    if table is None or len(table) == 0:
        return np.empty(0)
    values = table.column("values").to_numpy().astype(np.float64)
    counts = table.column("counts").to_numpy().astype(np.int64)
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


def _check_finite(batch, column: str) -> None:
    """ValueError naming the line of an infinite value in a numeric column (FieldEncoder refuses them too)."""
    import pyarrow.compute as pc

    values = batch.data.column(column)
    if not pc.any(pc.is_inf(values)).as_py():
        return
    row = int(np.flatnonzero(np.isinf(values.to_numpy(zero_copy_only=False)))[0])
    raise ValueError(f"{batch.name}:{batch.first_line + row}: column {column}: {values[row].as_py()!r} is not a finite "
                     "number (a numeric column)")
