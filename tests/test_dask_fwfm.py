"""fastafm.dask's FwFM estimators: the field-pair weights R trained and merged across the workers, the fields
carried to every replica, predictions equal to the local model's, classifiers' labels."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import fastafm
from fastafm._compat import InvalidParameterError
from fastafm.dask import DaskFwFMClassifier, DaskFwFMRegressor
from fastafm.models.params import FWFM_R_INIT

SMALL = dict(embedding_dim=8, n_epochs=4, random_state=0, sync_rows=500, n_threads=1, early_stopping=False)
N_FIELDS, CARDINALITY = 4, 6


@pytest.fixture(scope="module")
def planted():
    X, y, _ = fastafm.make_planted(3000, n_fields=N_FIELDS, cardinality=CARDINALITY, random_state=1)
    return X, y, np.repeat(np.arange(N_FIELDS), CARDINALITY)  # make_planted's one-hot columns, field by field


def _dask(X, y, rows=750):
    return da.from_array(X, chunks=(rows, -1), asarray=False), da.from_array(y, chunks=rows)


def test_fwfm_regressor_trains_and_merges_the_field_weights(client, planted):
    X, y, fields = planted
    model = DaskFwFMRegressor(fields=fields, client=client, **SMALL).fit(*_dask(X, y))
    assert model.n_workers_ == 2 and len(model.history_) == 4
    local = model.to_local()
    assert isinstance(local, fastafm.FwFMRegressor)
    R = local.field_weights_
    assert R.shape == (N_FIELDS, N_FIELDS)
    assert np.all(R[np.triu_indices(N_FIELDS, 1)] != np.float32(FWFM_R_INIT))  # trained on the workers, merged
    np.testing.assert_array_equal(model.predict(_dask(X, y)[0]).compute(), local.predict(X))
    rmse = float(np.sqrt(np.mean((local.predict(X) - y) ** 2)))
    assert rmse < 0.8 * np.std(y), rmse  # it learned the planted field pairs
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]


def test_fwfm_fits_are_deterministic_and_use_the_fields(client, planted):
    X, y, fields = planted
    a = DaskFwFMRegressor(fields=fields, client=client, **SMALL).fit(*_dask(X, y)).to_local()
    b = DaskFwFMRegressor(fields=fields, client=client, **SMALL).fit(*_dask(X, y)).to_local()
    for name, arr in a.get_model_params().items():
        np.testing.assert_array_equal(arr, b.get_model_params()[name], err_msg=name)
    one_field = DaskFwFMRegressor(client=client, **SMALL).fit(*_dask(X, y)).to_local()
    assert one_field.field_weights_.shape == (1, 1)
    assert not np.array_equal(one_field.predict(X[:20]), a.predict(X[:20]))


def test_fwfm_classifier_with_string_labels_and_eval_set(client, planted):
    X, y01, _ = fastafm.make_planted(3000, n_fields=N_FIELDS, cardinality=CARDINALITY, classification=True,
                                     noise=0.0, random_state=2)
    fields = planted[2]
    labels = np.where(y01 > 0, "yes", "no")
    model = DaskFwFMClassifier(fields=fields, client=client, **{**SMALL, "n_epochs": 8}).fit(
        *_dask(X, labels), eval_set=(X[:500], labels[:500]))
    assert list(model.classes_) == ["no", "yes"] and "eval_logloss" in model.history_[-1]
    local = model.to_local()
    assert isinstance(local, fastafm.FwFMClassifier)
    dX = _dask(X, labels)[0]
    np.testing.assert_array_equal(model.predict(dX).compute(), local.predict(X))
    np.testing.assert_allclose(model.predict_proba(dX).compute(), local.predict_proba(X), rtol=0, atol=0)
    assert np.mean(local.predict(X) == labels) > 0.8


def test_fwfm_bad_fields_and_parameters_are_named(client, planted):
    X, y, fields = planted
    with pytest.raises(ValueError, match="fields"):
        DaskFwFMRegressor(fields=fields[:-1], client=client, **SMALL).fit(*_dask(X, y))
    with pytest.raises(InvalidParameterError, match="embedding_dim"):
        DaskFwFMRegressor(embedding_dim=0, client=client).fit(*_dask(X, y))
    params = DaskFwFMRegressor(fields=fields).get_params()
    assert "fields" in params and "attention_dim" not in params and params["sync_rows"] == 16384
