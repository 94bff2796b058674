"""The Dask classifiers' class_weight ("balanced" counted over every worker's rows, or a dict; in memory and
from cache files) and negative_sampling_rate, against the same weights given as sample weights."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import fastafm
from fastafm.dask import DaskAFMClassifier, DaskFwFMClassifier

SMALL = dict(embedding_dim=8, n_epochs=3, random_state=0, sync_rows=400, n_threads=1, early_stopping=False)


@pytest.fixture(scope="module")
def imbalanced():
    X, y01, _ = fastafm.make_planted(2400, n_fields=4, cardinality=6, classification=True, random_state=5)
    keep = (y01 > 0) | (np.random.default_rng(5).random(y01.shape[0]) < 0.3)  # about 1 positive in 4 rows
    X, y01 = X[keep], y01[keep]
    labels = np.where(y01 > 0, "click", "none")
    return X, labels


def _dask(X, y, w=None, rows=500):
    out = (da.from_array(X, chunks=(rows, -1), asarray=False), da.from_array(y, chunks=rows))
    return out if w is None else out + (da.from_array(w, chunks=rows),)


def _same_model(a, b):
    pa, pb = a.to_local().get_model_params(), b.to_local().get_model_params()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


@pytest.mark.parametrize("cls, extra", [(DaskAFMClassifier, dict(attention_dim=4)), (DaskFwFMClassifier, {})])
def test_balanced_class_weight_is_the_balanced_sample_weight(client, imbalanced, cls, extra):
    X, labels = imbalanced
    n_click = np.count_nonzero(labels == "click")
    w = np.where(labels == "click", labels.size / (2 * n_click), labels.size / (2 * (labels.size - n_click)))
    weighted = cls(class_weight="balanced", client=client, **SMALL, **extra).fit(*_dask(X, labels))
    given = cls(client=client, **SMALL, **extra).fit(*_dask(X, labels, w)[:2], sample_weight=_dask(X, labels, w)[2])
    plain = cls(client=client, **SMALL, **extra).fit(*_dask(X, labels))
    _same_model(weighted, given)
    assert not np.array_equal(weighted.to_local().w_, plain.to_local().w_)  # the weights changed the fit
    assert weighted.to_local().class_weight == "balanced"


def test_dict_class_weight_in_memory_and_from_cache_files(client, imbalanced, tmp_path):
    X, labels = imbalanced
    y = (labels == "click").astype(np.float32)
    paths = []
    for i, (a, b) in enumerate([(0, 700), (700, X.shape[0])]):
        fastafm.convert((X[a:b], y[a:b]), tmp_path / f"p{i}.cache")
        paths.append(str(tmp_path / f"p{i}.cache"))
    w = np.where(y > 0, 3.0, 1.0)
    cached = DaskAFMClassifier(class_weight={1.0: 3.0}, attention_dim=4, client=client, **SMALL).fit(paths)
    weights_file = []
    for i, (a, b) in enumerate([(0, 700), (700, X.shape[0])]):
        fastafm.convert((X[a:b], y[a:b]), tmp_path / f"w{i}.cache", weights=w[a:b])
        weights_file.append(str(tmp_path / f"w{i}.cache"))
    stored = DaskAFMClassifier(attention_dim=4, client=client, **SMALL).fit(weights_file)
    _same_model(cached, stored)


def test_bad_class_weight_and_balanced_partial_fit_are_refused(client, imbalanced):
    X, labels = imbalanced
    with pytest.raises(ValueError, match=r"class_weight has the label 'yes', which is not one of the classes"):
        DaskAFMClassifier(class_weight={"yes": 2.0}, client=client, **SMALL).fit(*_dask(X, labels))
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported by partial_fit"):
        DaskAFMClassifier(class_weight="balanced", client=client, **SMALL).partial_fit(*_dask(X, labels))
    with pytest.raises(ValueError, match=r"class weights \(class_weight\) is all zero"):
        DaskAFMClassifier(class_weight={"click": 0.0, "none": 0.0}, client=client, **SMALL).fit(*_dask(X, labels))


def test_negative_sampling_rate_corrects_the_dask_classifier_predictions(client, imbalanced):
    X, labels = imbalanced
    plain = DaskAFMClassifier(attention_dim=4, client=client, **SMALL).fit(*_dask(X, labels))
    sampled = DaskAFMClassifier(attention_dim=4, negative_sampling_rate=0.25, client=client, **SMALL).fit(
        *_dask(X, labels))
    _same_model(plain, sampled)  # a prediction-time correction: training is the same
    dX = _dask(X, labels)[0]
    diff = sampled.decision_function(dX).compute() - plain.decision_function(dX).compute()
    np.testing.assert_allclose(diff, np.log(0.25), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(sampled.predict_proba(dX).compute(), sampled.to_local().predict_proba(X))
