"""field_aware="auto", AFMClassifier's default: field-pair terms ("both") where the fit knows the fields (fields=,
or a raw log's cache) and stops early, the plain AFM otherwise (no fields, no early stopping, partial_fit); the
resolved mode is `field_aware_`, kept by model files (which keep "auto" as the setting) and clones;
AFMRegressor's default stays None."""
import numpy as np
import pytest
from sklearn.base import clone

import fastafm
from fastafm.models.persistence import load_model

KW = dict(embedding_dim=8, attention_dim=8, n_epochs=3, random_state=0, n_threads=1, early_stopping=True)


def planted(n=1200, classification=True):
    return fastafm.make_planted(n, n_fields=6, cardinality=10, classification=classification, random_state=0)


def params_equal(a, b):
    pa, pb = a.training_state_.params, b.training_state_.params
    assert sorted(pa) == sorted(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


def test_the_classifier_defaults_to_auto_and_the_regressor_to_none():
    assert fastafm.AFMClassifier().field_aware == "auto"
    assert fastafm.AFMRegressor().field_aware is None


def test_auto_with_fields_is_both_per_element():
    X, y, fields = planted()
    auto = fastafm.AFMClassifier(fields=fields, **KW).fit(X, y)
    both = fastafm.AFMClassifier(field_aware="both", fields=fields, **KW).fit(X, y)
    assert auto.field_aware == "auto" and auto.field_aware_ == "both" and both.field_aware_ == "both"
    params_equal(auto, both)
    np.testing.assert_array_equal(auto.fields_, fields)
    assert auto.field_weights_.shape == auto.field_logits_.shape == (6, 6)
    assert sorted(fastafm.field_pair_terms(auto)) == ["logits", "weights"]


def test_auto_without_fields_is_the_plain_afm_per_element():
    X, y, _ = planted()
    auto = fastafm.AFMClassifier(**KW).fit(X, y)
    plain = fastafm.AFMClassifier(field_aware=None, **KW).fit(X, y)
    assert auto.field_aware_ is None and auto.fields_ is None
    params_equal(auto, plain)
    with pytest.raises(AttributeError, match="field_aware_=None has no R"):
        auto.field_weights_


def test_the_regressor_ignores_fields_unless_asked():
    X, y, fields = planted(classification=False)
    model = fastafm.AFMRegressor(fields=fields, **KW).fit(X, y)
    assert model.field_aware_ is None and fastafm.field_pair_terms(model) == {}
    assert fastafm.AFMRegressor(field_aware="auto", fields=fields, **KW).fit(X, y).field_aware_ == "both"


@pytest.mark.parametrize("with_fields", [True, False])
def test_model_files_keep_auto_and_the_resolved_mode(tmp_path, with_fields):
    X, y, fields = planted(800)
    model = fastafm.AFMClassifier(fields=fields if with_fields else None, **KW).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.field_aware == "auto" and loaded.field_aware_ == model.field_aware_
    assert loaded.field_aware_ == ("both" if with_fields else None)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    params_equal(loaded, model)
    refit = clone(loaded).fit(X, y)  # the clone keeps the setting ("auto") and the fields it was given
    assert refit.field_aware_ == model.field_aware_


@pytest.mark.parametrize("how", ["early_stopping=False", "partial_fit"])
def test_without_early_stopping_auto_is_the_plain_afm(tmp_path, how):
    """No validation rows to check the field-pair terms on: "auto" trains the plain AFM, fields given or not,
    and the model saves, loads and refits as such."""
    X, y, fields = planted(800)
    kw = {**KW, "early_stopping": False}
    plain = fastafm.AFMClassifier(**{**kw, "field_aware": None})
    model = fastafm.AFMClassifier(fields=fields, **kw)
    if how == "partial_fit":
        plain.partial_fit(X, y)
        model.partial_fit(X, y)
    else:
        plain.fit(X, y)
        model.fit(X, y)
    assert model.field_aware == "auto" and model.field_aware_ is None and model.fields_ is None
    params_equal(model, plain)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.field_aware_ is None
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    assert clone(model).set_params(early_stopping=True).fit(X, y).field_aware_ == "both"  # its fields kept


def test_a_raw_logs_cache_gives_auto_its_fields(tmp_path):
    pytest.importorskip("pyarrow")
    from rawlog_data import click_frame

    df = click_frame(400)
    cache = fastafm.convert(df, tmp_path / "c.cache", label="click", numeric=["count", "price"], ignore=["id"])
    model = fastafm.AFMClassifier(**KW).fit(cache)
    assert model.field_aware_ == "both"
    np.testing.assert_array_equal(model.fields_, cache.read_fields())
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict_proba(df), model.predict_proba(df))


def test_auto_leaves_uniform_pooling_plain_and_refuses_bad_values():
    X, y, fields = planted(300)
    uniform = fastafm.AFMClassifier(fields=fields, attention=False, **KW).fit(X, y)
    assert uniform.field_aware_ is None and uniform.fields_ is None  # field-pair weights there: FwFM's
    with pytest.raises(ValueError, match="needs attention=True"):  # asked for by name: refused, as before
        fastafm.AFMClassifier(field_aware="both", fields=fields, attention=False, **KW).fit(X, y)
    with pytest.raises(ValueError, match="field_aware must be"):
        fastafm.AFMClassifier(field_aware="Auto", **KW).fit(X, y)
