"""Raw logs to caches and to rows: `convert_raw` (the statistics pass, then the writing pass into a version 3
cache holding the rows, the field of every feature and the encoding) and `encode_rows` (rows of a file or table
encoded with a model's encoding, for predict and eval).
"""
from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from .encoding import RawEncoding, labels_of
from .prefetch import prefetched
from .reader import PARQUET, TABLE, Source, expand, is_table
from .schema import Layout, RawSchema
from .spill import Spill, replay
from .stats import Statistics

PROGRESS_BYTES = 64 << 20  # inputs at least this large show a progress bar (with progress=None)


def _sources(source, schema: RawSchema, block_bytes: int) -> list:
    """The opened inputs; every one must have the first one's columns (header names, or count)."""
    sources = [Source(item, schema, block_bytes) for item in expand(source)]
    first = sources[0]
    for other in sources[1:]:
        if other.columns != first.columns:
            what = "columns" if schema.header or other.kind != "csv" else "column count"
            raise ValueError(f"{other.name}: its {what} {_short(other.columns)} differ from {first.name}'s "
                             f"{_short(first.columns)}; every input of one conversion has the same columns")
    return sources


def _short(columns: list) -> str:
    return f"({len(columns)} columns)" if columns and columns[0] == "0" else str(columns[:40])


class _Progress:
    def __init__(self, total: int, progress, what: str, unit: str = "B"):
        show = progress if progress is not None else total >= PROGRESS_BYTES
        self.bar = None
        if show and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit=unit, unit_scale=True, desc=what, leave=False)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def batches(self, sources: list, layout, types):
        for source in sources:
            done = 0
            for batch in source.batches(layout, types):
                if batch.position:
                    self.update(batch.position - done)
                    done = batch.position
                yield batch
            self.update(source.size - done)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def learn(source, schema: RawSchema, *, block_bytes: int, progress=None, spill_folder=None) -> tuple:
    """(Statistics, sources, layout, Spill or None, the encoding's source dict): the statistics pass over every
    input (stats.encoding(source dict) is the encoding; stats.summary() what parts are merged from). With
    `spill_folder` the pass also checks the labels and spills every batch's encoded columns to a temporary file
    there (rawlog.spill), for the writing without a second parse; without, it reads only what it counts."""
    sources = _sources(source, schema, block_bytes)
    first = sources[0]
    layout = schema.resolve(first.columns, first.name)
    if layout.label is None:
        raise ValueError("label is required: the column that holds the label (--label COL)")
    bar = _Progress(sum(s.size for s in sources), progress, "reading")
    spill = None
    stats = Statistics(schema, layout, spills=spill_folder is not None)
    try:
        if spill_folder is None:  # hashed categoricals need no statistics: only the columns counted or measured
            needed = [(c, k) for c, k in zip(layout.fields, layout.kinds)
                      if k == "numeric" or schema.hash_buckets is None]
            read = Layout(layout.columns, layout.label, [c for c, _ in needed], [k for _, k in needed], layout.bins)
        else:
            read = layout
            spill = Spill(spill_folder, [np.int32 if k == "categorical" else np.float64 for k in layout.kinds])
        for batch in prefetched(bar.batches(sources, read, _types(read, schema))):  # parsed while counted
            columns = stats.add(batch)
            if spill is not None:
                spill.add(batch.name, batch.first_line, labels_of(batch, layout.label), columns)
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    finally:
        bar.close()
    if stats.n_rows == 0:
        if spill is not None:
            spill.close()
        names = ", ".join(s.name for s in sources)
        raise ValueError(f"{names}: no rows (the input is empty but for its header)")
    _release_arrow_memory()
    kind = "csv" if first.kind not in (PARQUET, TABLE) else first.kind
    src = {"columns": layout.columns, "label": layout.label, "header": bool(schema.header),
           "sep": getattr(first, "sep", None), "kind": kind, "options": schema.options()}
    return stats, sources, layout, spill, src


def _release_arrow_memory() -> None:
    """Hands the memory pyarrow's pool keeps cached (the CSV reader's blocks) back to the system before the
    vocabularies and the writing allocate theirs (20-40 MiB of peak RSS on the 100 MB log)."""
    from .reader import pyarrow

    pyarrow().default_memory_pool().release_unused()


def _types(layout: Layout, schema: RawSchema) -> dict:
    from .reader import pyarrow

    pa = pyarrow()
    out = {c: (pa.string() if k == "categorical" else pa.float64()) for c, k in zip(layout.fields, layout.kinds)}
    if layout.label is not None:
        out[layout.label] = pa.float64()
    return out


def convert_raw(source, dest, schema: RawSchema, *, weights=None, block_rows=None, block_bytes=64 << 20,
                read_block_bytes: int = 1 << 20, progress=None):
    """One parse: the statistics pass (the encoding) spills the encoded columns next to `dest`, then they are
    mapped to the final ids and written to the cache `dest` (version 3)."""
    from ..data.cache import fspath
    from ..data.convert import refuse_overwrite, with_weights, write_cache

    dest = fspath(dest, "dest")
    for item in expand(source):
        if not is_table(item):
            refuse_overwrite(item, dest)
    stats, sources, _, spill, src = learn(source, schema, block_bytes=read_block_bytes, progress=progress,
                                          spill_folder=os.path.dirname(os.path.abspath(dest)))
    try:
        encoding = stats.encoding(src)
    except BaseException:
        spill.close()
        raise
    shown = progress if progress is not None else sum(s.size for s in sources) >= PROGRESS_BYTES
    bar = _Progress(stats.n_rows, shown, "writing", unit="rows")
    mapped = prefetched(replay(spill, encoding, stats.maps, bar.update), depth=1)  # mapped while written
    try:
        stored = np.frombuffer(encoding.to_json(), np.uint8)
        for spec in encoding.fields:  # the vocabularies are in `stored` now, and the spill maps ids without them
            spec.pop("categories", None)
        chunks = mapped if weights is None else with_weights(mapped, weights)
        extra = {"fields": encoding.feature_field_pieces(), "encoding": [stored]}
        known = {"rows": stats.n_rows, "nnz": stats.n_rows * len(encoding.fields), "fields": encoding.n_features,
                 "encoding": stored.shape[0]}  # every section's size: written in place
        return write_cache(chunks, sources[0].name, dest, encoding.n_features, block_rows, block_bytes, extra,
                           known)
    finally:
        mapped.close()  # stops its thread before the spill it reads is closed (an error while writing)
        bar.close()
        spill.close()


def convert_encoded(source, dest, encoding: RawEncoding, *, block_rows=None, block_bytes=64 << 20,
                    read_block_bytes: int = 1 << 20):
    """A cache of labelled raw rows (a file, a glob, a list of files or DataFrames) encoded with a given encoding
    (the Dask route: every worker writes its own part with the merged encoding), the same cache convert_raw
    writes when the encoding is the one learnt from these rows."""
    from ..data.cache import fspath
    from ..data.convert import refuse_overwrite, write_cache

    dest = fspath(dest, "dest")
    items = expand(source)
    for item in items:
        if not is_table(item):
            refuse_overwrite(item, dest)
    n_fields = len(encoding.fields)

    def chunks():
        for item in items:
            reader = Source(item, _reading_schema(encoding, None), read_block_bytes)
            layout = _predict_layout(reader, encoding, True)
            types = {c: t for c, t in encoding.types().items() if c in layout.used()}
            for batch in reader.batches(layout, types):
                ids, vals = encoding.encode(batch)
                n = ids.shape[0]
                yield (np.arange(0, n * n_fields + 1, n_fields, dtype=np.int64), ids.reshape(-1), vals.reshape(-1),
                       encoding.labels(batch), encoding.n_features - 1)

    name = "DataFrame" if is_table(items[0]) else str(items[0])
    extra = {"fields": encoding.feature_field_pieces(), "encoding": [np.frombuffer(encoding.to_json(), np.uint8)]}
    return write_cache(chunks(), name, dest, encoding.n_features, block_rows, block_bytes, extra)


def _reading_schema(encoding: RawEncoding, sep) -> RawSchema:
    """The options a file of the encoding's format is read with (header, separator)."""
    src = encoding.source
    return RawSchema(header=src["header"], sep=sep if sep is not None else src.get("sep") if src["kind"] == "csv"
                     else None)


def encode_rows(source, encoding: RawEncoding, *, labels: bool = False, sep=None, block_bytes: int = 1 << 20):
    """(CSR rows, labels or None) of raw rows (a file, a glob, a list, a DataFrame) encoded with `encoding`: the
    format the encoding was learnt from (columns by header name, or the same columns without a header, the label
    column there or left out). `labels=True` requires the label column (eval)."""
    schema = _reading_schema(encoding, sep)
    parts, ys = [], []
    for item in expand(source):
        reader = Source(item, schema, block_bytes)
        layout = _predict_layout(reader, encoding, labels)
        types = {c: t for c, t in encoding.types().items() if c in layout.used()}
        for batch in reader.batches(layout, types):
            ids, vals = encoding.encode(batch)
            n, f = ids.shape
            parts.append(sp.csr_matrix((vals.reshape(-1), ids.reshape(-1),
                                        np.arange(0, n * f + 1, f, dtype=np.int64)), shape=(n, encoding.n_features)))
            if layout.label is not None:
                ys.append(encoding.labels(batch))
    X = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, encoding.n_features), dtype=np.float32)
    y = np.concatenate(ys) if ys else None
    return X.astype(np.float32), y


def _predict_layout(reader: Source, encoding: RawEncoding, labels: bool) -> Layout:
    src = encoding.source
    trained = list(src["columns"])
    label = src["label"]
    fields = encoding.field_names
    text_no_header = reader.kind not in (PARQUET, TABLE) and not src["header"]
    if text_no_header:
        if len(reader.columns) == len(trained):
            columns = trained
        elif len(reader.columns) == len(trained) - 1:  # the label column left out
            columns = [c for c in trained if c != label]
            label = None
        else:
            raise ValueError(f"{reader.name}:1: {len(reader.columns)} columns, but the model reads rows of "
                             f"{len(trained)} columns (or {len(trained) - 1} without the label column "
                             f"{label}) without a header")
        reader.columns = columns
    else:
        missing = [c for c in fields if c not in reader.columns]
        if missing:
            raise ValueError(f"{reader.name}: lacks the columns {missing[:20]} the model's encoding reads (it was "
                             f"trained on rows with the columns {trained[:40]})")
        if label not in reader.columns:
            label = None
    if labels and label is None:
        raise ValueError(f"{reader.name}: the label column {src['label']!r} is missing (needed to evaluate; the file "
                         f"has {len(reader.columns)} columns)")
    kinds = ["categorical" if f["kind"] in ("category", "hash") else "numeric" for f in encoding.fields]
    return Layout(reader.columns, label, fields, kinds, {})
