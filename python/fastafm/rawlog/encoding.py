"""`RawEncoding`: how the columns of a raw log become feature ids, learnt by the statistics pass
(fastafm.rawlog.stats) and carried by the cache and the model, so rows read at prediction time are encoded
exactly as the training rows were: the same vocabularies (unseen and missing values to the field's unknown id),
the same hash, the same bins and scaling.

The meaning is FieldEncoder's (fastafm.data.encoder), field by field in column order, one non-zero a field:
a vocabulary field holds its categories (sorted, those seen at least min_frequency times) then the unknown id;
a hashed field `hash_buckets` ids (FNV-1a, fastafm.rawlog.hashing) then the id of missing values; a binned
numeric field its bins then the unknown id (missing values); a numeric field one id with the scaled value (and,
with numeric_missing="indicator", a second id for missing values). `to_field_encoder()` gives the equal
FieldEncoder of an encoding without hashing.
"""
from __future__ import annotations

import json

import numpy as np

from .arrow_numpy import float64_values, null_mask
from .hashing import fnv1a64
from .json_strings import SortedStrings, dumps
from .reader import pyarrow
from .strings import hash_strings

KINDS = ("category", "hash", "bins", "numeric")


def block_size(spec: dict) -> int:
    kind = spec["kind"]
    if kind == "category":
        return len(spec["categories"]) + 1
    if kind == "hash":
        return int(spec["buckets"]) + 1
    if kind == "bins":
        return len(spec["edges"]) + 2
    return 2 if spec.get("missing") == "indicator" else 1


class RawEncoding:
    """The fields of a raw log (`fields`: one dict per field, in column order) and how its files are read
    (`source`: the column list, the label, the separator and header, the options of the conversion)."""

    def __init__(self, fields: list, source: dict):
        self.fields = fields
        self.source = source
        sizes = [block_size(f) for f in fields]
        self.field_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_features = int(self.field_offsets[-1])
        self._lookups: dict = {}

    # -- facts
    @property
    def field_names(self) -> list:
        return [f["column"] for f in self.fields]

    def feature_field_pieces(self, piece: int = 1 << 20):
        """feature_fields() in int32 pieces of at most `piece` ids (a hashed log has millions of features)."""
        for f in range(len(self.fields)):
            start, stop = int(self.field_offsets[f]), int(self.field_offsets[f + 1])
            for lo in range(start, stop, piece):
                yield np.full(min(piece, stop - lo), f, dtype=np.int32)

    def feature_fields(self) -> np.ndarray:
        """The field of every feature id (int32), for the field-aware models."""
        return np.repeat(np.arange(len(self.fields), dtype=np.int32), np.diff(self.field_offsets))

    def types(self) -> dict:
        """column -> the pyarrow type it is read as."""
        pa = pyarrow()
        out = {f["column"]: (pa.string() if f["kind"] in ("category", "hash") else pa.float64()) for f in self.fields}
        if self.source.get("label") is not None:
            out[self.source["label"]] = pa.float64()
        return out

    # -- JSON
    def to_json(self) -> bytes:
        record = {"format": "fastafm-raw-encoding", "version": 1, "fields": self.fields, "source": self.source}
        lazy = {f: spec["categories"] for f, spec in enumerate(self.fields)
                if isinstance(spec.get("categories"), SortedStrings)}
        if lazy:  # the same bytes, the vocabularies written from their Arrow arrays
            return dumps(record, lazy)
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "RawEncoding":
        try:
            record = json.loads(bytes(data).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: the raw-log encoding is not valid JSON ({exc})") from None
        ok = (isinstance(record, dict) and record.get("format") == "fastafm-raw-encoding" and record.get("version") == 1
              and isinstance(record.get("fields"), list) and isinstance(record.get("source"), dict))
        if ok:
            for f in record["fields"]:
                ok = ok and isinstance(f, dict) and f.get("kind") in KINDS and isinstance(f.get("column"), str) and (
                    (f["kind"] == "category" and isinstance(f.get("categories"), list)
                     and all(isinstance(c, str) for c in f["categories"]))
                    or (f["kind"] == "hash" and isinstance(f.get("buckets"), int) and f["buckets"] >= 1)
                    or (f["kind"] == "bins" and isinstance(f.get("edges"), list)
                        and all(isinstance(e, (int, float)) for e in f["edges"]))
                    or (f["kind"] == "numeric" and isinstance(f.get("center"), (int, float))
                        and isinstance(f.get("scale"), (int, float)) and f["scale"] != 0))
        if not ok:
            raise ValueError(f"{where}: the raw-log encoding is damaged or of an unknown version")
        return cls(record["fields"], record["source"])

    def __eq__(self, other) -> bool:
        return isinstance(other, RawEncoding) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"RawEncoding({len(self.fields)} fields, {self.n_features} features)"

    # -- encoding rows
    def labels(self, batch) -> np.ndarray:
        """The float32 labels of a batch; ValueError naming the line of a missing one."""
        return labels_of(batch, self.source["label"])

    def encode(self, batch) -> tuple:
        """(ids int32 (n, n_fields), values float32 (n, n_fields)) of a batch, one non-zero a field."""
        n = batch.data.num_rows
        n_fields = len(self.fields)
        ids = np.empty((n, n_fields), dtype=np.int32)
        vals = np.ones((n, n_fields), dtype=np.float32)
        for f, spec in enumerate(self.fields):
            start, stop = int(self.field_offsets[f]), int(self.field_offsets[f + 1])
            column = batch.data.column(spec["column"])
            kind = spec["kind"]
            if kind == "category":
                ids[:, f] = self._lookup(f).codes(column, stop - 1 - start) + start
            elif kind == "hash":
                h = hash_strings(column) % np.uint64(spec["buckets"])  # C++: fnv1a64's values
                codes = h.astype(np.int64) + start
                if column.null_count:
                    codes[null_mask(column)] = stop - 1
                ids[:, f] = codes
            else:
                x = float64_values(column)
                if np.isinf(x).any():
                    row = int(np.flatnonzero(np.isinf(x))[0])
                    raise ValueError(f"{batch.name}:{batch.first_line + row}: column {spec['column']}: "
                                     f"{float(x[row])!r} is not a finite number (a numeric column)")
                encode_numeric(spec, x, start, stop, ids[:, f], vals[:, f],
                               lambda row: f"{batch.name}:{batch.first_line + row}")
        return ids, vals

    def _lookup(self, f: int) -> "_Vocabulary":
        if f not in self._lookups:
            self._lookups[f] = _Vocabulary(self.fields[f]["categories"])
        return self._lookups[f]

    # -- the equal FieldEncoder
    def to_field_encoder(self):
        """The fitted FieldEncoder that encodes a DataFrame of these columns (categoricals as strings) exactly as
        this encoding encodes the log. ValueError for an encoding with hashed fields (FieldEncoder has none)."""
        from ..data.columns import bin_labels, feature_name
        from ..data.encoder import FieldEncoder

        if any(f["kind"] == "hash" for f in self.fields):
            raise ValueError("an encoding with hash_buckets has no FieldEncoder equivalent")
        options = self.source.get("options", {})
        enc = FieldEncoder(numeric_scaling=options.get("numeric_scaling", "standard"),
                           numeric_missing=options.get("numeric_missing", "zero"),
                           min_frequency=options.get("min_frequency", 1))
        names = self.field_names
        n = len(names)
        categories: list = []
        edges_list: list = []
        feature_map: list = []
        center, scale = np.zeros(n), np.ones(n)
        for f, spec in enumerate(self.fields):
            name = spec["column"]
            edges_list.append(None)
            if spec["kind"] == "category":
                cats = np.empty(len(spec["categories"]), dtype=object)
                cats[:] = list(spec["categories"])
                categories.append(cats)
                feature_map += [(name, "category", c) for c in cats] + [(name, "unknown", None)]
            elif spec["kind"] == "bins":
                edges = np.asarray(spec["edges"], dtype=np.float64)
                edges_list[f] = edges
                labels = bin_labels(edges)
                categories.append(labels)
                feature_map += [(name, "bin", b) for b in labels] + [(name, "unknown", None)]
            else:
                center[f], scale[f] = spec["center"], spec["scale"]
                categories.append(None)
                feature_map.append((name, "numeric", None))
                if spec.get("missing") == "indicator":
                    feature_map.append((name, "missing", None))
        enc.n_features_in_ = n
        enc.feature_names_in_ = np.asarray(names, dtype=object)
        enc.field_names_ = np.asarray(names, dtype=object)
        enc.categorical_ = np.asarray([f["kind"] != "numeric" for f in self.fields], dtype=bool)
        enc.categories_ = categories
        enc.bin_edges_ = edges_list
        enc.numeric_center_, enc.numeric_scale_ = center, scale
        enc.field_offsets_ = self.field_offsets.copy()
        enc.feature_map_ = feature_map
        enc.fields_ = self.feature_fields().astype(np.int64)
        enc.feature_names_ = np.asarray([feature_name(e) for e in feature_map], dtype=object)
        enc.n_features_out_ = len(feature_map)
        return enc


def labels_of(batch, label: str) -> np.ndarray:
    """The float32 labels of a batch (the column `label`); ValueError naming the line of a missing one."""
    column = batch.data.column(label)
    if column.null_count:
        row = int(np.flatnonzero(null_mask(column))[0])
        raise ValueError(f"{batch.name}:{batch.first_line + row}: the label (column {label}) is missing")
    y = float64_values(column)
    bad = ~np.isfinite(y) | (np.abs(y) > np.finfo(np.float32).max)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{batch.name}:{batch.first_line + row}: the label {float(y[row])!r} is not a finite number")
    return y.astype(np.float32)


def encode_numeric(spec: dict, x: np.ndarray, start: int, stop: int, ids: np.ndarray, vals: np.ndarray,
                   where) -> None:
    """A numeric field's ids and values (into the columns `ids`, `vals`, vals holding ones) from its finite
    float64 values x (NaN missing); `where(row)` names a row's file and line in errors."""
    missing = np.isnan(x)
    if spec["kind"] == "bins":
        codes = np.searchsorted(np.asarray(spec["edges"], dtype=np.float64), x, side="right")
        ids[:] = np.where(missing, stop - 1, start + codes)
        return
    scaled = (x - spec["center"]) / spec["scale"]
    ids[:] = start
    with np.errstate(over="ignore"):  # an overflow is the ValueError below, naming the line
        v = np.where(missing, 0.0, scaled).astype(np.float32)
    if not np.isfinite(v).all():
        row = int(np.flatnonzero(~np.isfinite(v))[0])
        raise ValueError(f"{where(row)}: column {spec['column']}: {float(x[row])!r} is too large for float32 after "
                         "scaling")
    vals[:] = v
    if spec.get("missing") == "indicator":
        ids[missing] = start + 1
        vals[missing] = 1.0


class _Vocabulary:
    """A field's categories, looked up by their FNV-1a hashes in an open-addressing table built once (pyarrow's
    index_in would rebuild its hash table on every call). Each batch is first dictionary-encoded (Arrow's C++
    hashing), so only its distinct values are hashed and looked up; a candidate is accepted only if the strings
    are equal, so a hash collision can never give a wrong id. Categories whose hashes collide use index_in."""

    def __init__(self, categories):
        pa = pyarrow()
        if isinstance(categories, SortedStrings):
            self.values = categories.values.cast(pa.string())
        else:
            self.values = pa.array(categories, type=pa.string())
        hashes = np.maximum(fnv1a64(self.values), np.uint64(1))  # 0 marks an empty slot
        self.collide = len(np.unique(hashes)) != len(hashes)
        bits = max(4, int(np.ceil(np.log2(max(2 * len(hashes), 2)))))
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        self.keys = np.zeros(1 << bits, dtype=np.uint64)
        self.slots = np.full(1 << bits, -1, dtype=np.int64)
        pending = np.arange(len(hashes))
        slot = (hashes >> self.shift).astype(np.int64)
        while pending.size:  # linear probing, one vectorised round per probe step
            free = self.keys[slot[pending]] == 0
            first = np.unique(slot[pending[free]], return_index=True)[1]
            won = pending[free][first]
            self.keys[slot[won]] = hashes[won]
            self.slots[slot[won]] = won
            pending = np.setdiff1d(pending, won, assume_unique=True)
            slot[pending] = (slot[pending] + 1) & self.mask

    def _find(self, h: np.ndarray) -> np.ndarray:
        """The index of the category with hash h, or -1."""
        h = np.maximum(h, np.uint64(1))
        out = np.full(h.shape[0], -1, dtype=np.int64)
        slot = (h >> self.shift).astype(np.int64)
        left = np.arange(h.shape[0])
        while left.size:
            keys = self.keys[slot[left]]
            hit = keys == h[left]
            out[left[hit]] = self.slots[slot[left[hit]]]
            left = left[~hit & (keys != 0)]
            slot[left] = (slot[left] + 1) & self.mask
        return out

    def codes(self, column, unknown: int) -> np.ndarray:
        """The category index of every value of a string column, `unknown` for unseen and missing values."""
        import pyarrow.compute as pc

        if self.collide or len(self.values) == 0:
            found = pc.index_in(column, value_set=self.values)
            return np.asarray(pc.fill_null(found, unknown)).astype(np.int64)
        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary
        candidate = self._find(fnv1a64(distinct))
        equal = pc.fill_null(pc.equal(distinct, pc.take(self.values, np.maximum(candidate, 0))), False)
        mapped = np.where((candidate >= 0) & np.asarray(equal), candidate, unknown)
        indices = np.asarray(pc.fill_null(encoded.indices, -1)).astype(np.int64)
        return np.where(indices >= 0, mapped[np.maximum(indices, 0)], unknown)
