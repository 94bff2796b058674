"""Raw click logs on a dask cluster (docs/data.md, "Dask"): `convert` turns a list (or glob) of CSV/TSV/Parquet
files, or a dask DataFrame, into one row cache per worker. Each worker counts its own files or partitions
(fastafm.rawlog's statistics pass), the client merges the counts (fastafm.rawlog.merge: the encoding one process
would learn from all the rows), and each worker then encodes its rows with that one encoding into its cache.
The caches carry the encoding, so the Dask estimators trained from them keep it and predict raw rows.

    caches = fastafm.dask.convert("logs/day-*.csv.gz", "/shared/caches", label="click", ignore=["id"])
    model = DaskAFMClassifier(client=client).fit(caches)
    model.predict_proba("logs/day-08.csv.gz")        # raw rows, encoded as the training rows were

or in one step, `RawLog`: `DaskAFMClassifier(client=client).fit(RawLog("logs/day-*.csv.gz", "/shared/caches",
label="click", ignore=["id"]))` converts on the estimator's client, then trains on the caches.

The files and the folder must be visible to every worker at the same paths (a shared file system).
"""
from __future__ import annotations

import os

from ..data.cache import DEFAULT_BLOCK_BYTES
from ..rawlog.reader import expand, is_table
from ..rawlog.schema import DEFAULT_MAX_CATEGORIES, RawSchema
from .inputs import assign, get_client

__all__ = ["RawLog", "convert"]


class RawLog:
    """A raw log for the Dask estimators' `fit`: `source` (files, a glob, or a dask DataFrame), the `folder` its
    caches go to, and `convert`'s schema keywords (label=..., numeric=..., hash_buckets=...). `fit(RawLog(...))`
    runs `convert` on the estimator's client (each worker its own files, the statistics merged first), then
    trains on the caches, which stay in `folder`."""

    def __init__(self, source, folder, **options) -> None:
        if "client" in options:
            raise TypeError("RawLog takes no client: the estimator's client converts it")
        if options.get("label") is None:
            raise ValueError("RawLog needs label=: the column that holds the label")
        self.source, self.folder, self.options = source, folder, options

    def caches(self, client) -> list:
        """The log converted on `client`'s workers: one fastafm.CacheFile per worker that got inputs."""
        return convert(self.source, self.folder, client=client, **self.options)

    def __repr__(self) -> str:
        return f"RawLog({self.source!r}, {self.folder!r}, {', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def _statistics(items: list, schema: RawSchema, read_block_bytes: int) -> dict:
    """On a worker: the statistics pass over its inputs, as a summary to merge."""
    from ..rawlog.pipeline import learn

    stats, sources, _, _, src = learn(items, schema, block_bytes=read_block_bytes, progress=False)
    return {"summary": stats.summary(), "columns": sources[0].columns, "name": sources[0].name, "source": src}


def _write(items: list, dest: str, encoding_json: bytes, block_rows, block_bytes: int, read_block_bytes: int) -> str:
    """On a worker: its inputs encoded with the merged encoding into the cache `dest`."""
    from ..rawlog.encoding import RawEncoding
    from ..rawlog.pipeline import convert_encoded

    encoding = RawEncoding.from_json(encoding_json, "the merged encoding")
    convert_encoded(items, dest, encoding, block_rows=block_rows, block_bytes=block_bytes,
                    read_block_bytes=read_block_bytes)
    return dest


def convert(source, folder, *, client=None, label=None, numeric=None, categorical=None, ignore=None, sep=None,
            header: bool = True, hash_buckets=None, min_frequency: int = 1, numeric_scaling="standard",
            numeric_bins="auto", numeric_missing="zero", max_categories: int = DEFAULT_MAX_CATEGORIES,
            block_rows=None, block_bytes: int = DEFAULT_BLOCK_BYTES, read_block_bytes: int = 1 << 20) -> list:
    """Convert a raw log on the workers of `client` (default: the current dask client) into row caches in
    `folder`, one per worker that gets inputs (part-00000.cache, ...), and return them as fastafm.CacheFile.

    source: a path, a glob pattern or a list of CSV/TSV/Parquet files (each worker reads its share, in order,
    whole files), or a dask DataFrame (each worker its share of the partitions). The schema keywords are
    fastafm.convert's; the encoding is learnt from all the inputs (statistics merged on the client), so it is
    the encoding fastafm.convert learns from the same rows, and every cache carries it.
    """
    if label is None:
        raise ValueError("label is required: the column that holds the label")
    schema = RawSchema(label=label, numeric=numeric, categorical=categorical, ignore=ignore, sep=sep, header=header,
                       hash_buckets=hash_buckets, min_frequency=min_frequency, numeric_scaling=numeric_scaling,
                       numeric_bins=numeric_bins, numeric_missing=numeric_missing, max_categories=max_categories)
    client = get_client(client)
    if hasattr(source, "to_delayed") and hasattr(source, "columns"):  # a dask DataFrame
        items = client.compute(source.to_delayed())  # futures: each moves to the worker its task runs on
        sizes = [1] * len(items)
    else:
        items = expand(source)
        if any(is_table(i) for i in items):
            raise TypeError("fastafm.dask.convert takes files or a dask DataFrame; convert a pandas DataFrame with "
                            "fastafm.convert")
        sizes = [max(os.path.getsize(i), 1) for i in items]
    workers = sorted(client.nthreads())
    if not workers:
        raise ValueError("the dask cluster has no workers")
    runs = [(a, lo, hi) for a, (lo, hi) in zip(workers, assign(len(items), sizes, len(workers))) if hi > lo]
    parts = client.gather([client.submit(_statistics, items[lo:hi], schema, read_block_bytes, workers=[a],
                                         allow_other_workers=False, pure=False) for a, lo, hi in runs])
    first = parts[0]
    for other in parts[1:]:
        if other["columns"] != first["columns"]:
            raise ValueError(f"{other['name']}: its columns {other['columns'][:40]} differ from {first['name']}'s "
                             f"{first['columns'][:40]}; every input of one conversion has the same columns")
    from ..rawlog.merge import merged_statistics

    layout = schema.resolve(first["columns"], first["name"])
    encoding = merged_statistics(schema, layout, [p["summary"] for p in parts]).encoding(first["source"])
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(os.fspath(folder), f"part-{i:05d}.cache") for i in range(len(runs))]
    data = encoding.to_json()
    written = client.gather([client.submit(_write, items[lo:hi], path, data, block_rows, block_bytes,
                                           read_block_bytes, workers=[a], allow_other_workers=False, pure=False)
                             for (a, lo, hi), path in zip(runs, paths)])
    from ..data.cache import CacheFile

    return [CacheFile(p, block_rows=block_rows, block_bytes=block_bytes) for p in written]
