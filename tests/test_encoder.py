"""FieldEncoder: DataFrame columns to one-field-per-column sparse rows, in front of the estimators."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import metrics
from fastafm.interpret import field_pair_attention, top_field_pairs

pd = pytest.importorskip("pandas")  # in the test extra, so this never skips in CI
sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402

from fastafm import FieldEncoder  # noqa: E402


def small_frame():
    return pd.DataFrame({
        "color": ["red", "blue", None, "red"],
        "size": [1.0, np.nan, 3.0, 5.0],
        "flag": [True, False, True, True],
    })


def rows(X):
    """Row r as a list of (id, value) in storage order."""
    return [list(zip(X.indices[X.indptr[r]:X.indptr[r + 1]].tolist(),
                     X.data[X.indptr[r]:X.indptr[r + 1]].tolist())) for r in range(X.shape[0])]


def test_layout_names_and_fields():
    enc = FieldEncoder(numeric_scaling=None, numeric_bins=None)  # raw values, to read the layout
    X = enc.fit_transform(small_frame())
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32 and X.shape == (4, 7)
    assert list(enc.field_names_) == ["color", "size", "flag"]
    assert list(enc.feature_names_) == ["color=blue", "color=red", "color=<unknown>", "size",
                                        "flag=False", "flag=True", "flag=<unknown>"]
    assert list(enc.get_feature_names_out()) == list(enc.feature_names_)
    assert enc.fields_.tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert enc.field_offsets_.tolist() == [0, 3, 4, 7]
    assert enc.categorical_.tolist() == [True, False, True]
    assert enc.n_features_out_ == 7 and enc.n_features_in_ == 3
    assert enc.describe(1) == ("color", "category", "red")
    assert enc.describe(2) == ("color", "unknown", None)
    assert enc.describe(3) == ("size", "numeric", None)
    # one entry per field per row, in field order; missing category -> unknown id; NaN -> explicit 0 value
    assert rows(X) == [[(1, 1.0), (3, 1.0), (5, 1.0)],
                       [(0, 1.0), (3, 0.0), (4, 1.0)],
                       [(2, 1.0), (3, 3.0), (5, 1.0)],
                       [(1, 1.0), (3, 5.0), (5, 1.0)]]


def test_unseen_and_missing_categories_map_to_the_unknown_id():
    enc = FieldEncoder(numeric_bins=None).fit(small_frame())
    test = pd.DataFrame({"color": ["green", np.nan, "blue", pd.NA], "size": [2.0, 2.0, 2.0, 2.0],
                         "flag": [False, None, True, True]})
    X = enc.transform(test)
    assert [r[0][0] for r in rows(X)] == [2, 2, 0, 2]
    assert [r[2][0] for r in rows(X)] == [4, 6, 5, 5]


def test_transform_selects_columns_by_name():
    enc = FieldEncoder().fit(small_frame())
    shuffled = small_frame()[["flag", "size", "color"]].assign(extra=1)
    assert (enc.transform(shuffled) != enc.transform(small_frame())).nnz == 0
    with pytest.raises(ValueError, match="lacks the columns"):
        enc.transform(small_frame().drop(columns="size"))


@pytest.mark.parametrize("scaling, expected", [
    (None, [1.0, 0.0, 3.0, 5.0]),
    ("standard", [(1 - 3) / np.sqrt(8 / 3), 0.0, 0.0, (5 - 3) / np.sqrt(8 / 3)]),
    ("minmax", [0.0, 0.0, 0.5, 1.0]),
])
def test_numeric_scaling(scaling, expected):
    enc = FieldEncoder(numeric_scaling=scaling, numeric_bins=None)
    X = enc.fit_transform(small_frame())
    assert np.allclose([r[1][1] for r in rows(X)], expected, atol=1e-6)
    # the statistics come from the training data only
    X2 = enc.transform(pd.DataFrame({"color": ["red"], "size": [9.0], "flag": [True]}))
    assert np.isclose(X2.data[1], (9.0 - enc.numeric_center_[1]) / enc.numeric_scale_[1])


def test_by_default_counts_are_binned_and_other_numbers_standardised():
    assert FieldEncoder().numeric_scaling == "standard" and FieldEncoder().numeric_bins == "auto"
    frame = small_frame().assign(ratio=[0.5, 1.5, np.nan, 4.0], signed=[1.0, -2.0, 3.0, 0.0])
    enc = FieldEncoder().fit(frame)
    # size (1, NaN, 3, 5: non-negative integers) is a count: AUTO_BINS quantile bins, as numeric_bins=10
    assert enc.categorical_.tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(enc.bin_edges_[1], FieldEncoder(numeric_bins=10).fit(frame).bin_edges_[1])
    standard = FieldEncoder(numeric_bins=None).fit(frame)
    for column in (3, 4):  # a fraction and a negative value: scaled, exactly as with numeric_bins=None
        assert enc.numeric_center_[column] == standard.numeric_center_[column]
        assert enc.numeric_scale_[column] == standard.numeric_scale_[column]
    assert (enc.transform(frame)[:, enc.field_offsets_[3]:] != standard.transform(frame)[:, standard.field_offsets_[3]:]).nnz == 0
    # an all-missing column has no values to bin: scaled
    assert not FieldEncoder().fit(pd.DataFrame({"m": [np.nan, np.nan]})).categorical_[0]


def test_numeric_bins_are_training_quantiles_with_unseen_values_in_the_end_bins():
    train = pd.DataFrame({"clicks": [0, 1, 2, 3, 4, 5, 6, 7, np.nan, 100], "c": list("abababab" + "ab")})
    enc = FieldEncoder(numeric_bins=4).fit(train)
    edges = enc.bin_edges_[0]
    present = train["clicks"].dropna().to_numpy()
    assert np.allclose(edges, np.quantile(present, [0.25, 0.5, 0.75]))
    assert enc.categorical_.tolist() == [True, True] and enc.bin_edges_[1] is None
    assert enc.field_offsets_.tolist() == [0, 5, 8]  # 4 bins + unknown, then a, b, unknown
    assert enc.feature_names_[0] == f"clicks=[-inf, {edges[0]:.6g})" and enc.describe(4) == ("clicks", "unknown", None)
    test = pd.DataFrame({"clicks": [-50.0, 0.0, edges[0], edges[1] + 0.5, 1e9, np.nan], "c": ["a"] * 6})
    ids = [r[0] for r in rows(enc.transform(test))]
    assert ids == [(0, 1.0), (0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)]  # below/above range: end bins


def test_numeric_bins_per_column_and_merged_edges():
    df = pd.DataFrame({"heavy": [0] * 90 + list(range(1, 11)), "x": np.arange(100.0)})
    enc = FieldEncoder(numeric_bins={"heavy": 10}).fit(df)
    assert enc.categorical_.tolist() == [True, False]  # x stays one standardised feature
    assert len(enc.categories_[0]) < 10  # 90% zeros: repeated quantile edges merge into one bin
    assert np.all(np.diff(enc.bin_edges_[0]) > 0)
    X = enc.transform(df)
    assert X.indices[0] == 0 and len(set(X.indices[::2])) == len(enc.categories_[0])  # every bin is used


@pytest.mark.parametrize("bins, error, match", [
    (1, ValueError, "at least 2 bins"), (True, ValueError, "at least 2 bins"), ("4", TypeError, "numeric_bins"),
    ({"nope": 4}, ValueError, r"numeric_bins names columns not in X: \['nope'\]"),
])
def test_bad_numeric_bins(bins, error, match):
    with pytest.raises(error, match=match):
        FieldEncoder(numeric_bins=bins).fit(small_frame())


def test_columns_that_transform_could_not_read_are_refused_in_fit():
    frame = small_frame()
    frame.columns = pd.MultiIndex.from_tuples([("a", "color"), ("a", "size"), ("b", "flag")])
    with pytest.raises(ValueError, match="MultiIndex columns"):
        FieldEncoder().fit(frame)
    listed = pd.DataFrame({"tags": [["a", "b"], ["c"], ["a"]]})
    with pytest.raises(TypeError, match=r"column 'tags' holds the unhashable value \['a', 'b'\]"):
        FieldEncoder().fit(listed)


def test_constant_and_all_missing_numeric_columns_do_not_divide_by_zero():
    df = pd.DataFrame({"c": [2.0, 2.0, 2.0], "m": [np.nan, np.nan, np.nan]})
    for scaling in ("standard", "minmax"):
        X = FieldEncoder(numeric_scaling=scaling, numeric_bins=None).fit_transform(df)
        assert np.all(np.isfinite(X.data))
        assert X.data.tolist() == [0.0, 0.0] * 3


def test_numeric_missing_indicator():
    enc = FieldEncoder(numeric_scaling=None, numeric_missing="indicator", numeric_bins=None)
    X = enc.fit_transform(small_frame())
    assert list(enc.feature_names_)[3:5] == ["size", "size=<missing>"]
    assert enc.fields_.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert [r[1] for r in rows(X)] == [(3, 1.0), (4, 1.0), (3, 3.0), (3, 5.0)]


def test_min_frequency_sends_rare_categories_to_unknown():
    df = pd.DataFrame({"c": ["a", "a", "b", "c", "c", "c"]})
    enc = FieldEncoder(min_frequency=2).fit(df)
    assert list(enc.categories_[0]) == ["a", "c"]
    assert enc.transform(df).indices.tolist() == [0, 0, 2, 1, 1, 1]


def test_column_kinds_detected_and_overridden():
    df = pd.DataFrame({
        "user_id": [10, 20, 10, 30],                       # int: numeric unless listed as categorical
        "cat": pd.Categorical(["x", "y", "x", "x"]),
        "s": pd.array(["p", pd.NA, "q", "p"], dtype="string"),
        "price": ["1.5", "2", None, "4"],                   # numbers held as strings, listed as numeric
        "n": pd.array([1, None, 3, 4], dtype="Int64"),
    })
    enc = FieldEncoder(categorical=["user_id"], numeric=["price"], numeric_scaling=None, numeric_bins=None).fit(df)
    assert enc.categorical_.tolist() == [True, True, True, False, False]
    assert list(enc.categories_[0]) == [10, 20, 30]
    X = enc.transform(df)
    assert [r[3][1] for r in rows(X)] == [1.5, 2.0, 0.0, 4.0]
    assert [r[4][1] for r in rows(X)] == [1.0, 0.0, 3.0, 4.0]
    assert [r[2][0] for r in rows(X)] == [enc.field_offsets_[2] + i for i in (0, 2, 1, 0)]
    assert FieldEncoder(numeric_bins=None).fit(df).categorical_.tolist() == [False, True, True, True, False]


@pytest.mark.parametrize("kwargs, X, error, match", [
    ({}, np.zeros((3, 2)), TypeError, "pandas DataFrame"),
    ({"numeric_scaling": "log"}, None, ValueError, "numeric_scaling"),
    ({"numeric_missing": "drop"}, None, ValueError, "numeric_missing"),
    ({"min_frequency": 0}, None, ValueError, "min_frequency"),
    ({"categorical": "color"}, None, TypeError, "list of column names"),
    ({"categorical": ["nope"]}, None, ValueError, "not in X"),
    ({"categorical": ["size"], "numeric": ["size"]}, None, ValueError, "both categorical and numeric"),
    ({"numeric": ["color"]}, None, ValueError, "non-numeric value 'red'"),
])
def test_bad_parameters_and_input(kwargs, X, error, match):
    with pytest.raises(error, match=match):
        FieldEncoder(**kwargs).fit(small_frame() if X is None else X)


def test_bad_frames():
    with pytest.raises(TypeError, match="cannot encode"):
        FieldEncoder().fit(pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"])}))
    with pytest.raises(ValueError, match="duplicate column"):
        FieldEncoder().fit(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(ValueError, match="0 rows"):
        FieldEncoder().fit(small_frame().iloc[:0])
    with pytest.raises(ValueError, match="infinity"):
        FieldEncoder().fit(pd.DataFrame({"x": [1.0, np.inf]}))
    with pytest.raises(NotFittedError):
        FieldEncoder().transform(small_frame())
    enc = FieldEncoder().fit(small_frame())
    with pytest.raises(ValueError, match="non-numeric value 'big'"):
        enc.transform(small_frame().assign(size=["big", 1, 2, 3]))


def test_clear_error_without_pandas(monkeypatch):
    from fastafm.data import encoder

    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` raise ImportError
    with pytest.raises(ImportError, match=r"pip install pandas"):
        encoder.FieldEncoder().fit({"a": [1]})


def test_pickle_and_clone():
    enc = FieldEncoder(numeric_scaling="minmax").fit(small_frame())
    again = pickle.loads(pickle.dumps(enc))
    assert (again.transform(small_frame()) != enc.transform(small_frame())).nnz == 0
    fresh = clone(enc)
    assert fresh.get_params() == enc.get_params() and not hasattr(fresh, "feature_map_")


def planted_frame(n, seed):
    """user x item drive the target through a random table; 'noise' carries no signal; x adds a linear part."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 8, n)
    item = rng.integers(0, 8, n)
    df = pd.DataFrame({"user": [f"u{u}" for u in user], "item": [f"i{i}" for i in item],
                       "noise": rng.choice(["p", "q", "r"], n), "x": rng.normal(3.0, 2.0, n)})
    table = np.random.default_rng(99).normal(0, 1, (8, 8))
    y = table[user, item] + 0.15 * (df["x"].to_numpy() - 3) + rng.normal(0, 0.1, n)
    return df, y


def afm(**kw):
    params = dict(embedding_dim=8, attention_dim=8, dropout=0.0, n_epochs=10, n_threads=1, random_state=0)
    params.update(kw)
    return fastafm.AFMRegressor(**params)


def test_pipeline_learns_and_attention_is_labelled_by_column():
    df, y = planted_frame(4000, 0)
    df_test, y_test = planted_frame(1000, 1)
    pipe = make_pipeline(FieldEncoder(numeric_scaling="standard"), afm())
    pipe.fit(df, y)
    rmse = metrics.rmse(y_test, pipe.predict(df_test))
    assert rmse < 0.3 * np.std(y_test), rmse  # measured 0.125 against a std of 0.89
    enc, model = pipe[0], pipe[-1]
    table = field_pair_attention(model, enc.transform(df_test), enc.fields_)
    (a, b, _), = top_field_pairs(table, n=1)
    assert {enc.field_names_[a], enc.field_names_[b]} == {"user", "item"}


def test_grid_search_over_encoder_and_model_parameters():
    df, y = planted_frame(1200, 2)
    pipe = Pipeline([("enc", FieldEncoder()), ("afm", afm(n_epochs=3))])
    search = GridSearchCV(pipe, {"enc__numeric_scaling": [None, "minmax"], "afm__embedding_dim": [4, 8]}, cv=2,
                          scoring="neg_root_mean_squared_error")
    search.fit(df, y)
    assert set(search.best_params_) == {"enc__numeric_scaling", "afm__embedding_dim"}
    assert search.predict(df.iloc[:5]).shape == (5,)


def test_classifier_pipeline():
    df, y = planted_frame(1000, 3)
    labels = np.where(y > np.median(y), "yes", "no")
    pipe = make_pipeline(FieldEncoder(), fastafm.AFMClassifier(embedding_dim=8, attention_dim=8, n_epochs=5,
                                                               n_threads=1, random_state=0))
    pipe.fit(df, labels)
    assert set(pipe.predict(df)) <= {"yes", "no"}
    assert pipe.score(df, labels) > 0.7


def test_scikit_learn_tags_declare_dataframe_input():
    get_tags = pytest.importorskip("sklearn.utils").__dict__.get("get_tags")
    if get_tags is None:  # scikit-learn < 1.6 reads _more_tags
        assert FieldEncoder()._more_tags()["allow_nan"] is True
        return
    tags = get_tags(FieldEncoder())
    assert tags.input_tags.categorical and tags.input_tags.string and tags.input_tags.allow_nan
    assert not tags.input_tags.two_d_array


@pytest.mark.parametrize("names", [["color", "size", "flag"], [0, 1, 2], [2, 0, 1], [10, 20, 30],
                                   [np.int64(5), np.int64(3), np.int64(9)], [1.5, 0.5, 2.5], [True, "x", 7]],
                         ids=["str", "range", "unsorted-int", "int", "numpy-int", "float", "mixed"])
def test_transform_selects_columns_by_name_whatever_their_type(names):
    """The class of column names a position could be mistaken for (integers above all): transform picks each
    fitted column by its name, so another column order, extra columns, or names of another integer dtype give
    the same rows; a name that is absent (the strings "0", "1" for the integers 0, 1) is an error naming it."""
    frame = small_frame()
    frame.columns = pd.Index(names, dtype=object)
    enc = FieldEncoder(categorical=[names[2]], numeric_bins={names[1]: 2}).fit(frame)
    expected = enc.transform(frame).toarray()
    shuffled = frame[[names[2], names[0], names[1]]]
    shuffled.insert(1, "extra", [9.0, 8.0, 7.0, 6.0])
    assert np.array_equal(enc.transform(shuffled).toarray(), expected)
    assert np.array_equal(pickle.loads(pickle.dumps(enc)).transform(shuffled).toarray(), expected)
    if all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in names):
        as_int32 = frame[[names[1], names[2], names[0]]]
        as_int32.columns = as_int32.columns.astype("int32")
        assert np.array_equal(enc.transform(as_int32).toarray(), expected)
        renamed = frame.rename(columns=str)
        with pytest.raises(ValueError, match=r"X lacks the columns \[.*\] seen in fit"):
            enc.transform(renamed)
