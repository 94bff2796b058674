"""The statistics of several parts of one raw log merged into one encoding (the Dask route: each worker counts
its own files or partitions, fastafm.dask.raw merges their summaries, and every worker then encodes its rows
with the same encoding): counts added value by value, moments by Chan's merge, a column "auto"-binned only if
every part found it count-like. The merged encoding is the one a single process learns from all the parts."""
from __future__ import annotations

import numpy as np

from .stats import Statistics


class _MergedCounts:
    """The merged values and counts of one column, as rawlog.strings.ValueCounts gives them."""

    def __init__(self, values, counts: np.ndarray):
        self.values, self.counts = values, counts

    def strings(self) -> tuple:
        return self.values, self.counts

    def floats(self) -> tuple:
        return self.values, self.counts

    def size(self) -> int:
        return int(self.counts.shape[0])


def _merge_strings(parts: list) -> _MergedCounts:
    import pyarrow as pa

    table = pa.table({"values": pa.concat_arrays([v.cast(pa.large_string()) for v, _ in parts]),
                      "counts": pa.array(np.concatenate([c for _, c in parts]).astype(np.int64))})
    table = table.group_by("values").aggregate([("counts", "sum")])
    return _MergedCounts(table.column("values").combine_chunks(), table.column("counts_sum").to_numpy())


def _merge_floats(parts: list) -> _MergedCounts:
    values, inverse = np.unique(np.concatenate([v for v, _ in parts]), return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=np.concatenate([c for _, c in parts]), minlength=values.size)
    return _MergedCounts(values, counts.astype(np.int64))


def merged_statistics(schema, layout, summaries: list) -> Statistics:
    """A Statistics of `layout` holding the merge of the parts' summaries (Statistics.summary()); its
    encoding(source) is the log's encoding."""
    stats = Statistics(schema, layout, spills=False)
    stats.n_rows = sum(int(s["n_rows"]) for s in summaries)
    for column in list(stats.auto):
        stats.auto[column] = all(s["auto"].get(column, True) for s in summaries)
        if not stats.auto[column]:
            del stats.counts[column]
    kinds = dict(zip(layout.fields, layout.kinds))
    for column in list(stats.counts):
        parts = [s["counts"][column] for s in summaries if column in s["counts"]]
        stats.counts[column] = (_merge_strings(parts) if kinds[column] == "categorical"  # type: ignore[assignment]
                                else _merge_floats(parts))
    for column, moments in stats.moments.items():
        for s in summaries:
            moments.merge(*s["moments"][column])
    total = sum(c.size() for c in stats.counts.values())
    if total > schema.max_categories:
        worst = max(stats.counts, key=lambda k: stats.counts[k].size())
        raise ValueError(f"more than max_categories={schema.max_categories} distinct values to count over all the "
                         f"parts (column {worst} alone has {stats.counts[worst].size()}); hash them instead "
                         "(hash_buckets=N) or raise max_categories")
    return stats
