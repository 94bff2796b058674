"""fastafm.dask's AFM estimators with field_aware: R and S trained on the workers and merged (dense, as W),
the fields carried to every replica, predictions equal to the local model's."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import fastafm
from fastafm.dask import DaskAFMClassifier, DaskAFMRegressor

SMALL = dict(embedding_dim=8, attention_dim=8, n_epochs=3, random_state=0, sync_rows=500, n_threads=1,
             early_stopping=False)


def _dask(X, y, rows=750):
    return da.from_array(X, chunks=(rows, -1), asarray=False), da.from_array(y, chunks=rows)


@pytest.mark.parametrize("mode", ["weights", "both"])
def test_dask_field_aware_afm_merges_the_field_terms(client, mode):
    X, y, fields = fastafm.make_planted(3000, n_fields=4, cardinality=6, random_state=1)
    model = DaskAFMRegressor(field_aware=mode, fields=fields, client=client, **SMALL).fit(*_dask(X, y))
    local = model.to_local()
    assert isinstance(local, fastafm.AFMRegressor) and local.field_aware == mode
    terms = fastafm.field_pair_terms(local)
    assert not np.all(terms["weights"] == 1.0)  # trained on the workers, merged
    if mode == "both":
        assert not np.all(terms["logits"] == 0.0)
    np.testing.assert_array_equal(model.predict(_dask(X, y)[0]).compute(), local.predict(X))
    again = DaskAFMRegressor(field_aware=mode, fields=fields, client=client, **SMALL).fit(*_dask(X, y)).to_local()
    np.testing.assert_array_equal(again.predict(X), local.predict(X))  # deterministic


def test_dask_field_aware_classifier_needs_fields(client):
    X, y, _ = fastafm.make_planted(1000, n_fields=4, cardinality=6, classification=True, random_state=2)
    with pytest.raises(ValueError, match="needs the field of every feature"):
        DaskAFMClassifier(field_aware="logits", client=client, **SMALL).fit(*_dask(X, y, 500))
