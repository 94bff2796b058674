"""How FieldEncoder (fastafm.data.encoder) reads one column: categorical or numeric, its categories (by
frequency), quantile bins, numeric values and scaling, and the names of the features it makes."""
from __future__ import annotations

from collections.abc import Hashable

import numbers

import numpy as np

UNKNOWN = "<unknown>"
MISSING = "<missing>"
SCALINGS = (None, "standard", "minmax")
MISSING_CHOICES = ("zero", "indicator")


def detect_categorical(series, name: str, pd) -> bool:
    dtype = series.dtype
    if (pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        return True
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return False
    raise TypeError(f"column {name!r} has dtype {dtype}, which FieldEncoder cannot encode; convert it to "
                    f"numbers or strings, or list it in categorical=")


# numeric_bins="auto" (the default): a count-like column -- every value present a non-negative integer, as
# clicks, impressions, dwell seconds, Criteo's I1-I13 -- is cut into AUTO_BINS quantile bins; any other numeric
# column is scaled. Chosen by measurement (docs/accuracy.md, "Count-like numeric columns"): 10 bins gained
# ~0.017 AUC for AFM on the Criteo head and won for every model on a synthetic count log.
AUTO = "auto"
AUTO_BINS = 10


def bins_for(numeric_bins, column):
    """The number of bins of a numeric column (None: scaled, not binned; "auto": decided by its values)."""
    if isinstance(numeric_bins, dict):
        return numeric_bins.get(column)
    return numeric_bins


def count_like(x: np.ndarray, empty: bool = False) -> bool:
    """Whether every value present (not NaN) is a non-negative integer; `empty`: the answer when none is."""
    present = x[~np.isnan(x)]
    if not present.size:
        return empty
    return bool(np.all(present >= 0)) and bool(np.all(present == np.floor(present)))


def resolve_bins(n_bins, x: np.ndarray):
    """The bins of a column of values x: "auto" -> AUTO_BINS if count-like, else None (scaled)."""
    if n_bins == AUTO:
        return AUTO_BINS if count_like(x) else None
    return n_bins


def fit_bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    present = x[~np.isnan(x)]
    if present.size == 0:
        return np.empty(0)
    inner = np.quantile(present, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    # A heavy mass at one value repeats edges; an edge at the minimum would leave its bin empty.
    return np.unique(inner[inner > present.min()])


def bin_labels(edges: np.ndarray) -> np.ndarray:
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    labels = np.empty(len(bounds) - 1, dtype=object)
    labels[:] = [f"[{lo}, {hi})" for lo, hi in zip(bounds[:-1], bounds[1:])]
    return labels


def fit_categories(series, name: str, pd, min_frequency: int) -> np.ndarray:
    values = series.to_numpy(dtype=object, na_value=None)
    unhashable = next((v for v in values if v is not None and not isinstance(v, Hashable)), None)
    if unhashable is not None:
        raise TypeError(f"categorical column {name!r} holds the unhashable value {unhashable!r} "
                        f"({type(unhashable).__name__}); a field holds one category per row")
    present = pd.Series(values[~pd.isna(values)], dtype=object)
    counts = present.value_counts(sort=False)  # in order of first appearance
    kept = [c for c, n in zip(counts.index, counts.to_numpy()) if n >= min_frequency]
    try:
        kept = sorted(kept)
    except TypeError:
        pass  # mixed types that do not compare: order of first appearance
    out = np.empty(len(kept), dtype=object)
    out[:] = kept
    return out


def numeric_values(series, name: str, pd) -> np.ndarray:
    dtype = series.dtype
    types = pd.api.types
    if types.is_bool_dtype(dtype) or (types.is_numeric_dtype(dtype) and not types.is_complex_dtype(dtype)):
        x = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif (isinstance(dtype, pd.CategoricalDtype) or types.is_object_dtype(dtype)
          or types.is_string_dtype(dtype)):
        # e.g. a column listed in numeric= that holds numbers as objects or strings, or a column that is
        # all-missing at transform time
        converted = pd.to_numeric(series.astype(object), errors="coerce")
        bad = converted.isna().to_numpy() & ~series.isna().to_numpy()
        if bad.any():
            example = series[bad].iloc[0]
            raise ValueError(f"numeric column {name!r} holds the non-numeric value {example!r}")
        x = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        raise TypeError(f"numeric column {name!r} has dtype {dtype}, not numbers")
    if np.any(np.isinf(x)):
        raise ValueError(f"numeric column {name!r} holds infinity")
    return x


def fit_scaling(x: np.ndarray, scaling) -> tuple[float, float]:
    present = x[~np.isnan(x)]
    if scaling is None or present.size == 0:
        return 0.0, 1.0
    if scaling == "standard":
        center, spread = float(present.mean()), float(present.std())
    else:
        center, spread = float(present.min()), float(present.max() - present.min())
    return center, (spread if spread > 0 and np.isfinite(spread) else 1.0)


def feature_name(entry) -> str:
    field, kind, value = entry
    if kind == "category":
        return f"{field}={value}"
    if kind == "unknown":
        return f"{field}={UNKNOWN}"
    if kind == "missing":
        return f"{field}={MISSING}"
    if kind == "bin":
        return f"{field}={value}"
    return field


def check_params(encoder) -> None:
    """FieldEncoder's parameters checked (at fit: scikit-learn sets them unchecked)."""
    bins = encoder.numeric_bins
    per_column = bins.values() if isinstance(bins, dict) else ([] if bins in (None, AUTO) else [bins])
    if not isinstance(bins, dict) and bins is not None and bins != AUTO and not isinstance(bins, numbers.Integral):
        raise TypeError(f"numeric_bins must be 'auto', None, an int or a dict {{column: int}}, got {bins!r}")
    for n in per_column:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
            raise ValueError(f"numeric_bins must give at least 2 bins per column, got {n!r}")
    if encoder.numeric_scaling not in SCALINGS:
        raise ValueError(f"numeric_scaling must be None, 'standard' or 'minmax', got {encoder.numeric_scaling!r}")
    if encoder.numeric_missing not in MISSING_CHOICES:
        raise ValueError(f"numeric_missing must be 'zero' or 'indicator', got {encoder.numeric_missing!r}")
    if (isinstance(encoder.min_frequency, bool) or not isinstance(encoder.min_frequency, numbers.Integral)
            or encoder.min_frequency < 1):
        raise ValueError(f"min_frequency must be an integer >= 1, got {encoder.min_frequency!r}")


def check_frame(X, pd, seen_columns=None):
    """X checked as FieldEncoder's input; with `seen_columns` (transform), those columns in that order."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"FieldEncoder takes a pandas DataFrame, got {type(X).__name__}")
    if isinstance(X.columns, pd.MultiIndex):
        raise ValueError("X has MultiIndex columns; FieldEncoder takes one level of column names "
                         "(flatten them first, e.g. X.columns = ['_'.join(map(str, c)) for c in X.columns])")
    if X.columns.has_duplicates:
        dup = list(X.columns[X.columns.duplicated()].unique())
        raise ValueError(f"X has duplicate column names: {dup}")
    if seen_columns is None:
        if X.shape[1] == 0:
            raise ValueError("X has no columns; at least one column is required")
        if X.shape[0] == 0:
            raise ValueError("X has 0 rows; at least one row is required to fit")
        return X
    columns = list(seen_columns)
    absent = [c for c in columns if c not in X.columns]
    if absent:
        raise ValueError(f"X lacks the columns {absent} seen in fit")
    return X.loc[:, columns]
