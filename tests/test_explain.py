"""Exact explanations (issue 24): every row's values sum to decision_function on every model and instruction
set, the per-pair terms match the float64 reference (rows of 0, 1, 2 and many non-zeros, repeated ids), the
feature values are the linear terms plus half of each pair term, the field-pair sums, names and shap's layout."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import reference
from support import random_csr, random_params, small_model

EDGE_NNZ = [0, 1, 2, 3, 0, 7, 1, 12, 2, 5, 40]


def _model_with(rng, cls, k=8, t=6, n_features=15, **kw):
    """A fitted estimator of `cls` whose parameters are then replaced by random ones (attention far from
    uniform), with the reference Params it holds."""
    X = random_csr(rng, [3] * 30, n_features=n_features)
    y = rng.integers(0, 2, size=30).astype(float)
    fm = cls.__name__.startswith("FM")
    model = small_model(cls, embedding_dim=k, attention_dim=t, n_epochs=1, pretrain=None, **kw) if not fm \
        else small_model(cls, embedding_dim=k, n_epochs=1, **kw)
    model.fit(X, y)
    params = random_params(rng, n_features, k, 1 if fm else t)
    if fm:
        params.p[:] = 1.0
    for name in reference.PARAM_NAMES:
        np.copyto(model.training_state_.params[name], np.atleast_1d(getattr(params, name)).astype(np.float32))
    return model, params


CASES = [(fastafm.AFMRegressor, {}), (fastafm.AFMRegressor, {"attention": False}), (fastafm.AFMClassifier, {}),
         (fastafm.FMRegressor, {}), (fastafm.FMClassifier, {"negative_sampling_rate": 0.2}),
         (fastafm.AFMRegressor, {"loss": "logistic"})]


def raw_output(model, X):
    """y(x): a classifier's decision_function, a regressor's predict (the logit of its rate with loss="logistic":
    regressors have no decision_function, as scikit-learn's)."""
    if hasattr(model, "decision_function"):
        return model.decision_function(X)
    out = model.predict(X)
    return np.log(out / (1.0 - out)) if model.loss == "logistic" else out


@pytest.mark.parametrize("cls,kw", CASES)
def test_values_sum_to_the_decision_function_and_pairs_match_the_reference(isa, rng, cls, kw):
    model, params = _model_with(rng, cls, **kw)
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 9, size=20)), n_features=15)
    e = model.explain(X)
    df = raw_output(model, X)
    assert e.values.shape == (X.shape[0], 15) and e.base_values.shape == (X.shape[0],)
    total = e.base_values + e.values.sum(axis=1)
    np.testing.assert_allclose(total, df, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(df).max()))
    offset = np.log(kw.get("negative_sampling_rate", 1.0))
    np.testing.assert_allclose(e.base_values, params.w0 + offset, rtol=1e-6)
    # The pair terms against the reference's a_rs p·e_rs, per element.
    attention = model.training_state_.spec.pooling == "attention"
    ref_indptr, ref_pos, ref_terms = reference.pair_contributions(params, X, attention=attention)
    np.testing.assert_array_equal(e.pair_indptr, ref_indptr)
    scale = max(1e-3, float(np.abs(ref_terms).max()))
    np.testing.assert_allclose(e.pair_values, ref_terms, rtol=1e-4, atol=2e-6 * scale)
    starts = X.indptr[np.repeat(np.arange(X.shape[0]), np.diff(ref_indptr))]
    np.testing.assert_array_equal(e.pairs[:, 0], X.indices[starts + ref_pos[:, 0]])
    np.testing.assert_array_equal(e.pairs[:, 1], X.indices[starts + ref_pos[:, 1]])
    # Linear part + pair part = the reference's forward.
    want = reference.forward(params, X, attention=attention) + offset
    got = e.base_values + e.linear_values + np.add.reduceat(np.append(e.pair_values, 0.0), e.pair_indptr[:-1]) \
        * (np.diff(e.pair_indptr) > 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_each_feature_gets_its_linear_term_and_half_of_its_pairs(rng):
    model, params = _model_with(rng, fastafm.AFMRegressor)
    # An empty row, a single non-zero (id 7), and a row with id 3 twice: (3, 2.0), (9, 1.5), (3, 1.0).
    X = sp.csr_matrix((np.array([0.5, 2.0, 1.5, 1.0], np.float32), np.array([7, 3, 9, 3]), np.array([0, 0, 1, 4])),
                      shape=(3, 15))
    e = model.explain(X)
    assert np.all(e.values[0] == 0) and e.base_values[0] == pytest.approx(params.w0)
    assert e.values[1, 7] == pytest.approx(params.w[7] * 0.5, rel=1e-6) and np.count_nonzero(e.values[1]) == 1
    _, pos, terms = reference.pair_contributions(params, X)
    ids, xs = np.array([3, 9, 3]), np.array([2.0, 1.5, 1.0])
    want = np.zeros(15)
    np.add.at(want, ids, params.w[ids] * xs)
    for (r, s_), term in zip(pos, terms):
        want[ids[r]] += term / 2
        want[ids[s_]] += term / 2
    np.testing.assert_allclose(e.values[2], want, rtol=1e-5, atol=1e-7)
    assert e.row(2)["pairs"].tolist() == [[3, 9], [3, 3], [9, 3]]


def test_field_pairs_sum_to_the_pair_part_and_names_pass_through(rng):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"site": rng.choice(["a", "b", "c"], 300), "ad": rng.choice(["x", "y"], 300),
                       "hour": rng.choice(["0", "1", "2", "3"], 300)})
    y = rng.integers(0, 2, 300)
    enc = fastafm.FieldEncoder().fit(df)
    model = fastafm.AFMClassifier(embedding_dim=4, attention_dim=4, n_epochs=2, random_state=0).fit(enc.transform(df), y)
    e = model.explain(enc.transform(df[:20]), feature_names=enc.feature_names_, fields=enc.fields_,
                      field_names=enc.field_names_)
    assert e.feature_names == [str(n) for n in enc.feature_names_]
    fp = e.field_pairs()
    assert fp.shape == (20, 3, 3) and np.allclose(np.tril(fp[0], -1), 0)
    pair_part = e.base_values + e.values.sum(1) - e.base_values - e.linear_values
    np.testing.assert_allclose(fp.sum(axis=(1, 2)), pair_part, rtol=1e-6, atol=1e-9)
    assert len(e.top_pairs(0, 2)) == 2
    with pytest.raises(ValueError, match="feature_names"):
        model.explain(enc.transform(df[:2]), feature_names=["a"])


def test_fm_without_pairs_gives_the_same_values(rng):
    model, _ = _model_with(rng, fastafm.FMRegressor)
    X = random_csr(rng, EDGE_NNZ, n_features=15)
    full, fast = model.explain(X), model.explain(X, pairs=False)
    np.testing.assert_allclose(fast.values, full.values, rtol=1e-5, atol=1e-6)
    assert fast.pair_values is None
    with pytest.raises(ValueError, match="pairs=False"):
        fast.field_pairs([(0, 15)])


def test_sparse_values_and_shap(rng):
    model, _ = _model_with(rng, fastafm.AFMRegressor)
    X = random_csr(rng, EDGE_NNZ, n_features=15)
    dense, sparse = model.explain(X), model.explain(X, dense=False)
    assert sp.issparse(sparse.values)
    np.testing.assert_array_equal(sparse.values.toarray(), dense.values)
    shap = pytest.importorskip("shap")
    s = dense.to_shap()
    assert isinstance(s, shap.Explanation) and s.values.shape == dense.values.shape


def test_explain_leaves_unsorted_rows_of_x_alone(rng):
    model, _ = _model_with(rng, fastafm.FMRegressor)
    X = sp.csr_matrix((np.ones(4, np.float32), np.array([9, 3, 9, 1], np.int32), np.array([0, 4])), shape=(1, 15))
    before = X.indices.copy()
    e = model.explain(X, dense=False)
    np.testing.assert_array_equal(X.indices, before)
    assert e.values.has_canonical_format and e.data.toarray()[0, 9] == 2.0
