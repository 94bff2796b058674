"""The schema of a raw click log: which column is the label, which are numeric, categorical or ignored, how the
text is split, and how each field is encoded (vocabulary or hash buckets, numeric scaling or bins). The same
options as `fastafm convert`'s (--label, --numeric, --categorical, --ignore, --sep, --no-header,
--hash-buckets, --min-frequency, --numeric-scaling, --numeric-bins, --numeric-missing) and, for the encoding,
the meaning and defaults of `FieldEncoder`'s.

A column is named by its header name, or, without a header (`header=False`), by its 0-based index (an int or a
string of digits). Columns are resolved against the file's column list by `RawSchema.resolve`.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from ..data.columns import MISSING_CHOICES, SCALINGS

DEFAULT_MAX_CATEGORIES = 4_000_000  # distinct values counted exactly, over all fields (docs/data.md)


def _names(value, option: str) -> list:
    """A list of column references from a list, or a comma-separated string (the command line's form)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip() != ""]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)]
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{option} must be a column, a list of columns or a comma-separated string, got "
                        f"{value!r}") from None


def _positive(value, option: str, low: int, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ValueError(f"{option} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass
class RawSchema:
    """The options of a raw-log conversion, checked. `resolve(columns, where)` gives the resolved layout."""

    label: object = None
    numeric: list = field(default_factory=list)
    categorical: list | None = None      # None: every column not named elsewhere
    ignore: list = field(default_factory=list)
    sep: str | None = None               # None: from the file's extension (',' for .csv, tab for .tsv/.txt)
    header: bool = True
    hash_buckets: int | None = None
    min_frequency: int = 1
    numeric_scaling: str | None = "standard"
    numeric_bins: object = "auto"        # "auto" (count-like columns binned), None, int >= 2, {column: int >= 2}
    numeric_missing: str = "zero"
    max_categories: int = DEFAULT_MAX_CATEGORIES

    def __post_init__(self):
        self.numeric = _names(self.numeric, "numeric")
        self.ignore = _names(self.ignore, "ignore")
        if self.categorical is not None:
            self.categorical = _names(self.categorical, "categorical")
        if self.label is not None and isinstance(self.label, str) and "," in self.label:
            raise ValueError(f"label names one column, got {self.label!r}")
        if self.sep is not None and (not isinstance(self.sep, str) or len(self.sep.encode()) != 1):
            raise ValueError(f"sep must be one character (e.g. ',' or '\\t'), got {self.sep!r}")
        self.hash_buckets = _positive(self.hash_buckets, "hash_buckets", 1)
        self.min_frequency = _positive(self.min_frequency, "min_frequency", 1, allow_none=False)
        self.max_categories = _positive(self.max_categories, "max_categories", 1, allow_none=False)
        if self.numeric_scaling not in SCALINGS:
            raise ValueError(f"numeric_scaling must be None, 'standard' or 'minmax', got {self.numeric_scaling!r}")
        if self.numeric_missing not in MISSING_CHOICES:
            raise ValueError(f"numeric_missing must be 'zero' or 'indicator', got {self.numeric_missing!r}")
        bins = self.numeric_bins
        per = list(bins.values()) if isinstance(bins, dict) else ([] if bins in (None, "auto") else [bins])
        for n in per:
            _positive(n, "numeric_bins", 2, allow_none=False)
        if self.hash_buckets is not None and self.min_frequency != 1:
            raise ValueError("min_frequency applies to vocabularies; with hash_buckets every value is hashed "
                             "(give one of the two)")
        # The same column named twice in the options is an error, whatever the file holds.
        listed = ([("label", self.label)] if self.label is not None else []) + [("numeric", c) for c in self.numeric]
        listed += [("categorical", c) for c in self.categorical or []] + [("ignore", c) for c in self.ignore]
        seen: dict = {}
        for option, col in listed:
            key = self._key(col)
            if key in seen:
                where = option if seen[key] == option else f"{seen[key]} and {option}"
                raise ValueError(f"column {col!r} is named twice in the options ({where})")
            seen[key] = option

    def _key(self, col):
        if not self.header:
            return self._index(col, "column")
        return str(col)

    def _index(self, col, option: str) -> int:
        if isinstance(col, numbers.Integral) and not isinstance(col, bool):
            return int(col)
        if isinstance(col, str) and col.strip().isdigit():
            return int(col)
        raise ValueError(f"{option} {col!r}: without a header, columns are named by their 0-based index")

    def options(self) -> dict:
        """The options as JSON-able values (stored with the encoding)."""
        return {"label": self.label, "numeric": list(self.numeric), "ignore": list(self.ignore),
                "categorical": None if self.categorical is None else list(self.categorical), "sep": self.sep,
                "header": bool(self.header), "hash_buckets": self.hash_buckets, "min_frequency": self.min_frequency,
                "numeric_scaling": self.numeric_scaling, "numeric_bins": self.numeric_bins,
                "numeric_missing": self.numeric_missing}

    def resolve(self, columns: list, where: str) -> "Layout":
        """The layout of a file whose columns are `columns` (header names, or str indices without a header):
        each field's column and kind, in file order. ValueError naming `where` for a column not in it."""
        def find(col, option):
            if not self.header:
                i = self._index(col, option)
                if not 0 <= i < len(columns):
                    raise ValueError(f"{where}: {option} column {i} does not exist: the file has {len(columns)} "
                                     "columns (0-based indices)")
                return columns[i]
            if str(col) not in columns:
                raise ValueError(f"{where}: {option} column {str(col)!r} is not in the header {columns[:50]}")
            return str(col)

        if len(set(columns)) != len(columns):
            dup = sorted({c for c in columns if columns.count(c) > 1})
            raise ValueError(f"{where}: the header names the columns {dup} more than once")
        label = None if self.label is None else find(self.label, "label")
        numeric = [find(c, "numeric") for c in self.numeric]
        ignore = [find(c, "ignore") for c in self.ignore]
        if self.categorical is None:
            taken = set(numeric) | set(ignore) | {label}
            categorical = [c for c in columns if c not in taken]
        else:
            categorical = [find(c, "categorical") for c in self.categorical]
        bins = self.numeric_bins
        if isinstance(bins, dict):
            named = {find(c, "numeric_bins"): n for c, n in bins.items()}
            stray = [c for c in named if c not in numeric]
            if stray:
                raise ValueError(f"numeric_bins names columns that are not numeric: {stray}")
        kinds = {c: "numeric" for c in numeric}
        kinds.update({c: "categorical" for c in categorical})
        fields = [c for c in columns if c in kinds]
        if not fields:
            raise ValueError(f"{where}: no column is left to encode (all are the label or ignored)")
        n_bins = {c: (named.get(c) if isinstance(bins, dict) else bins) for c in numeric}
        return Layout(list(columns), label, fields, [kinds[c] for c in fields], n_bins)


@dataclass
class Layout:
    """A schema resolved against a file's columns: `fields` are column names (str indices without a header) in
    file order, `kinds` "numeric" or "categorical", `bins` numeric column -> number of bins or None."""

    columns: list
    label: str | None
    fields: list
    kinds: list
    bins: dict

    def used(self) -> list:
        return ([self.label] if self.label is not None else []) + self.fields
