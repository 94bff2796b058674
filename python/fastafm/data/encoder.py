"""`FieldEncoder`: a pandas DataFrame of categorical and numeric columns to the sparse rows AFM takes.

One field per column. A categorical column becomes a block of one-hot feature ids (one per category seen in
fit, plus one "unknown" id for categories not seen in fit and for missing values); a numeric column becomes
one real-valued feature (standardised by default), or, with `numeric_bins`, a block of quantile-bin ids. Every output row holds exactly one non-zero per field, in
column order, so the field of every feature id is known (`fields_`) and attention tables can be labelled
with column names (`field_names_`) and values (`feature_names_`).

pandas is an optional dependency: it is imported when the encoder is first fitted or used.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._compat import BaseEstimator, check_fitted, import_optional
from .columns import (AUTO, bin_labels, bins_for, check_frame, check_params, detect_categorical, feature_name,
                      fit_bins, fit_categories, fit_scaling, numeric_values, resolve_bins)

try:  # scikit-learn is optional; with it the encoder is a real transformer (set_output, tags, Pipeline)
    from sklearn.base import TransformerMixin
except ImportError:  # pragma: no cover - exercised only without scikit-learn

    class TransformerMixin:  # type: ignore[no-redef]
        def fit_transform(self, X, y=None, **fit_params):
            return self.fit(X, y, **fit_params).transform(X)  # type: ignore[attr-defined]


__all__ = ["FieldEncoder"]



def _pandas():
    return import_optional("pandas", "fastafm.FieldEncoder", "pandas")


def _as_column_list(value, name: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of column names or None, got {value!r}")
    return list(value)


class FieldEncoder(TransformerMixin, BaseEstimator):
    """Encode a pandas DataFrame into one-field-per-column sparse rows for AFMRegressor/AFMClassifier.

    Parameters
    ----------
    categorical : list of column names, optional
        Columns to treat as categorical whatever their dtype (e.g. integer-coded ids such as ``user_id``).
    numeric : list of column names, optional
        Columns to treat as numeric (they must hold numbers).
        Every other column is detected from its dtype: bool, object, string and category columns are
        categorical; integer and float columns are numeric; any other dtype (datetimes, ...) is an error.
    numeric_scaling : {"standard", "minmax", None}, default "standard"
        "standard" maps x to (x - mean) / std and "minmax" to (x - min) / (max - min), with the statistics of
        the training data (missing values left out; a constant column is only shifted); None keeps numeric
        values as they are. A numeric value multiplies its embedding in every pair, so unscaled prices or counts
        dominate the pair-wise layer: scaling is the default.
    numeric_bins : "auto", None, int >= 2, or dict {column: int >= 2}, default "auto"
        Quantile bucketing: a numeric column becomes a categorical field of up to N bins whose edges are the
        training data's quantiles (repeated edges merged, so a column with few distinct values gets fewer
        bins), plus the unknown id for missing values; values outside the training range fall in the first or
        last bin. An int applies to every numeric column, a dict to the columns it names (the others scaled),
        None to none. "auto": the count-like columns (every training value a non-negative integer: clicks,
        impressions, Criteo's counts) get 10 bins, the other numeric columns are scaled -- measured better on
        the Criteo head and a synthetic count log (docs/accuracy.md); give None for a count whose effect is a
        slope, or that must extrapolate beyond the training range (a bin clamps it).
    numeric_missing : {"zero", "indicator"}, default "zero"
        What a missing numeric value (NaN, None, pd.NA) becomes. "zero": the field's feature with value 0
        after scaling (so with "standard" scaling it is mean imputation); a value 0 adds nothing to the
        linear and pair terms. "indicator": a second feature id of the field, "<column>=<missing>", with
        value 1, so the model learns an embedding for "missing".
    min_frequency : int, default 1
        Categories seen fewer times than this in the training data are not given an id of their own: they
        map to the field's unknown id (which then gets trained on them).

    Attributes
    ----------
    field_names_ : ndarray of str, shape (n_fields,)
        The column names, one per field, in output order.
    feature_names_ : ndarray of str, shape (n_features_out_,)
        Name of every output feature id: "column=category", "column=<unknown>", "column" for a numeric
        feature and "column=<missing>" for a missing indicator.
    feature_map_ : list of (field_name, kind, value) tuples, one per output feature id
        kind is "category" (value: the category as found in the data), "bin" (value: the bin's name),
        "unknown", "numeric" or "missing" (value None for the last three). A binned field's unknown id takes
        its missing values (numeric_missing applies to unbinned numeric fields).
    fields_ : ndarray of int64, shape (n_features_out_,)
        Field index of every output feature id; pass it to `fastafm.interpret.field_pair_attention`.
    field_offsets_ : ndarray of int64, shape (n_fields + 1,)
        Feature ids of field f are ``field_offsets_[f] .. field_offsets_[f + 1] - 1``.
    categorical_ : ndarray of bool, shape (n_fields,)
        Whether each field is categorical.
    categories_ : list
        Per field: an array of the categories given ids (in id order; for a binned field the bins' names,
        "[lo, hi)"), or None for a numeric field.
    bin_edges_ : list
        Per field: the inner bin edges of a binned numeric field (a value x falls in bin
        ``searchsorted(edges, x, side="right")``), else None.
    numeric_center_, numeric_scale_ : ndarray of float64, shape (n_fields,)
        A numeric field's value is (x - center) / scale (0 and 1 for categorical fields and without scaling).
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of object
        The input column names.
    n_features_out_ : int
        Number of output feature ids (columns of the transformed matrix).

    Notes
    -----
    Categories are sorted when they can be compared (else kept in order of first appearance). The unknown
    id of a field is the last id of its block. Category lookup uses pandas' equality, so 1, 1.0 and True
    are the same category. Missing categorical values (None, NaN, pd.NA, NaT) always map to the unknown id.

    Examples
    --------
    >>> import pandas as pd                                                    # doctest: +SKIP
    >>> from sklearn.pipeline import make_pipeline                             # doctest: +SKIP
    >>> pipe = make_pipeline(FieldEncoder(numeric_scaling="standard"), AFMClassifier())  # doctest: +SKIP
    >>> pipe.fit(df, y).predict_proba(df_test)                                 # doctest: +SKIP
    """

    def __init__(self, categorical=None, numeric=None, numeric_scaling="standard", numeric_bins="auto",
                 numeric_missing="zero", min_frequency=1):
        self.categorical = categorical
        self.numeric = numeric
        self.numeric_scaling = numeric_scaling
        self.numeric_bins = numeric_bins
        self.numeric_missing = numeric_missing
        self.min_frequency = min_frequency

    # ------------------------------------------------------------------ scikit-learn protocol
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False  # a DataFrame is required, not any 2-D array
        tags.transformer_tags.preserves_dtype = []
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": True, "X_types": ["categorical", "string"], "preserves_dtype": []}

    def fit(self, X, y=None):
        """Learn the columns' kinds, the categories of each categorical column and the numeric scaling.

        Parameters
        ----------
        X : pandas.DataFrame
        y : ignored
        """
        pd = _pandas()
        check_params(self)
        df = check_frame(X, pd)
        forced_cat = _as_column_list(self.categorical, "categorical")
        forced_num = _as_column_list(self.numeric, "numeric")
        columns = list(df.columns)
        for name, listed in (("categorical", forced_cat), ("numeric", forced_num)):
            missing = [c for c in listed if c not in columns]
            if missing:
                raise ValueError(f"{name} names columns not in X: {missing}")
        both = [c for c in forced_cat if c in forced_num]
        if both:
            raise ValueError(f"columns listed as both categorical and numeric: {both}")
        if isinstance(self.numeric_bins, dict):
            missing = [c for c in self.numeric_bins if c not in columns]
            if missing:
                raise ValueError(f"numeric_bins names columns not in X: {missing}")

        n_fields = len(columns)
        is_cat = np.zeros(n_fields, dtype=bool)
        categories: list[Any] = []
        bin_edges: list[Any] = []
        center = np.zeros(n_fields)
        scale = np.ones(n_fields)
        feature_map: list[tuple[str, str, Any]] = []
        offsets = [0]
        for f, col in enumerate(columns):
            series = df.iloc[:, f]
            name = str(col)
            if col in forced_cat:
                cat = True
            elif col in forced_num:
                cat = False
            else:
                cat = detect_categorical(series, name, pd)
            n_bins = None if cat else bins_for(self.numeric_bins, col)
            if n_bins == AUTO:  # count-like columns binned, others scaled (data.columns.resolve_bins)
                n_bins = resolve_bins(n_bins, numeric_values(series, name, pd))
            is_cat[f] = cat or n_bins is not None
            bin_edges.append(None)
            if cat:
                cats = fit_categories(series, name, pd, self.min_frequency)
                categories.append(cats)
                feature_map.extend((name, "category", c) for c in cats)
                feature_map.append((name, "unknown", None))
            elif n_bins is not None:
                edges = fit_bins(numeric_values(series, name, pd), n_bins)
                bin_edges[f] = edges
                labels = bin_labels(edges)
                categories.append(labels)
                feature_map.extend((name, "bin", label) for label in labels)
                feature_map.append((name, "unknown", None))
            else:
                values = numeric_values(series, name, pd)
                center[f], scale[f] = fit_scaling(values, self.numeric_scaling)
                categories.append(None)
                feature_map.append((name, "numeric", None))
                if self.numeric_missing == "indicator":
                    feature_map.append((name, "missing", None))
            offsets.append(len(feature_map))

        self.n_features_in_ = n_fields
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.field_names_ = np.asarray([str(c) for c in columns], dtype=object)
        self.categorical_ = is_cat
        self.categories_ = categories
        self.bin_edges_ = bin_edges
        self.numeric_center_ = center
        self.numeric_scale_ = scale
        self.field_offsets_ = np.asarray(offsets, dtype=np.int64)
        self.feature_map_ = feature_map
        self.fields_ = np.repeat(np.arange(n_fields, dtype=np.int64), np.diff(self.field_offsets_))
        self.feature_names_ = np.asarray([feature_name(entry) for entry in feature_map], dtype=object)
        self.n_features_out_ = len(feature_map)
        return self

    def transform(self, X) -> sp.csr_matrix:
        """Encode the rows of X.

        Returns
        -------
        scipy.sparse.csr_matrix, float32, shape (n_rows, n_features_out_)
            Row r holds one entry per field, in field order: the category's id (value 1; the field's
            unknown id for an unseen or missing category), or the numeric feature with its scaled value
            (or, with numeric_missing="indicator", the missing id with value 1).
        """
        self._check_fitted()
        pd = _pandas()
        df = check_frame(X, pd, self.feature_names_in_)
        n_rows = df.shape[0]
        n_fields = self.n_features_in_
        ids = np.empty((n_rows, n_fields), dtype=np.int64)
        vals = np.ones((n_rows, n_fields), dtype=np.float64)
        for f in range(n_fields):
            series = df.iloc[:, f]
            start, stop = int(self.field_offsets_[f]), int(self.field_offsets_[f + 1])
            if self.bin_edges_[f] is not None:
                x = numeric_values(series, str(self.field_names_[f]), pd)
                codes = np.searchsorted(self.bin_edges_[f], x, side="right")
                ids[:, f] = np.where(np.isnan(x), stop - 1, start + codes)
            elif self.categorical_[f]:
                lookup = pd.Index(self.categories_[f], dtype=object)
                codes = lookup.get_indexer(series.to_numpy(dtype=object, na_value=None))
                unknown = stop - 1
                ids[:, f] = np.where(codes >= 0, start + codes, unknown)
            else:
                x = numeric_values(series, str(self.field_names_[f]), pd)
                missing = np.isnan(x)
                scaled = (x - self.numeric_center_[f]) / self.numeric_scale_[f]
                ids[:, f] = start
                vals[:, f] = np.where(missing, 0.0, scaled)
                if self.numeric_missing == "indicator":
                    ids[missing, f] = start + 1
                    vals[missing, f] = 1.0
        values = vals.astype(np.float32).reshape(-1)
        if not np.all(np.isfinite(values)):
            raise ValueError("a numeric column holds a value too large for float32 after scaling")
        indptr = np.arange(0, n_rows * n_fields + 1, n_fields, dtype=np.int64) if n_fields else np.zeros(
            n_rows + 1, dtype=np.int64)
        return sp.csr_matrix((values, ids.reshape(-1).astype(np.int32), indptr),
                             shape=(n_rows, self.n_features_out_))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output feature ids (see `feature_names_`), as an object array of str."""
        self._check_fitted()
        if input_features is not None:
            given = [str(c) for c in input_features]
            if given != [str(c) for c in self.field_names_]:
                raise ValueError(f"input_features {given} do not match the columns seen in fit "
                                 f"{list(self.field_names_)}")
        return self.feature_names_.copy()

    def describe(self, feature_id: int) -> tuple:
        """(field_name, kind, value) of one output feature id (see `feature_map_`)."""
        self._check_fitted()
        return self.feature_map_[int(feature_id)]

    # ------------------------------------------------------------------ internals
    def _check_fitted(self):
        check_fitted(self, "feature_map_")
