"""Field-aware AFM (field_aware="weights" / "logits" / "both") through the estimators: the fields it needs (a
clear error without them), the field-pair tables from its weights, model files, ONNX, the command line and
Dask. The kernels against the reference: tests/test_field_afm_kernels.py."""
import numpy as np
import pytest

import fastafm
from fastafm import reference_field_afm as ref
from fastafm.models.persistence import load_model
from support import write_libffm

MODES = ("weights", "logits", "both")


def planted(n=2000, classification=True, seed=0):
    return fastafm.make_planted(n, n_fields=6, cardinality=10, classification=classification, random_state=seed)


def small(cls=fastafm.AFMClassifier, **kw):
    params = dict(embedding_dim=8, attention_dim=8, n_epochs=3, random_state=0, n_threads=1)
    params.update(kw)
    return cls(**params)


@pytest.mark.parametrize("mode", MODES)
def test_fit_learns_the_field_terms_and_predicts_as_the_reference(mode):
    X, y, fields = planted(1500, classification=False)
    model = small(fastafm.AFMRegressor, field_aware=mode, fields=fields).fit(X, y)
    terms = fastafm.field_pair_terms(model)
    assert sorted(terms) == sorted({"weights": ["weights"], "logits": ["logits"], "both": ["weights", "logits"]}[mode])
    for table in terms.values():
        assert table.shape == (6, 6)
        np.testing.assert_array_equal(table, table.T)
    if "weights" in terms:
        np.testing.assert_array_equal(model.field_weights_, model.field_weights_.T)
        assert not np.all(model.field_weights_ == 1.0)  # trained from its start at 1
    else:
        with pytest.raises(AttributeError, match="has no R"):
            model.field_weights_
    if "logits" in terms:
        assert not np.all(model.field_logits_ == 0.0)  # trained from its start at 0
    np.testing.assert_array_equal(model.fields_, fields)
    params = dict(model.training_state_.params)
    want = ref.forward(params, fields, X[:50])
    np.testing.assert_allclose(model.predict(X[:50]), want, rtol=1e-4, atol=1e-4)


def test_modes_start_as_plain_afm():
    """R starts at 1 and S at 0: zero epochs of any mode predict as the plain AFM of the same seed."""
    X, y, fields = planted(300, classification=False)
    plain = small(fastafm.AFMRegressor, n_epochs=0, pretrain=None).fit(X, y).predict(X)
    for mode in MODES:
        got = small(fastafm.AFMRegressor, n_epochs=0, pretrain=None, field_aware=mode, fields=fields).fit(X, y)
        np.testing.assert_allclose(got.predict(X), plain, rtol=1e-6, atol=1e-6)


def test_fields_are_required_and_attention_too():
    X, y, fields = planted(300)
    with pytest.raises(ValueError, match="needs the field of every feature: pass fields="):
        small(field_aware="weights").fit(X, y)
    with pytest.raises(ValueError, match="needs attention=True"):
        small(field_aware="logits", fields=fields, attention=False).fit(X, y)
    with pytest.raises(ValueError, match="field_aware must be"):
        small(field_aware="yes", fields=fields).fit(X, y)
    with pytest.raises(ValueError, match="field"):
        small(field_aware="both", fields=fields[:10]).fit(X, y)
    plain = small().fit(X, y)  # field_aware=None needs no fields and keeps the plain AFM's parameters
    assert plain.fields_ is None and fastafm.field_pair_terms(plain) == {}


@pytest.mark.parametrize("mode", MODES)
def test_model_file_round_trip_and_partial_fit(tmp_path, mode):
    X, y, fields = planted(800)
    model = small(field_aware=mode, fields=fields).fit(X, y)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = load_model(path)
    assert loaded.field_aware == mode
    np.testing.assert_array_equal(loaded.fields_, fields)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    for name in ("R", "S"):
        if name in model.training_state_.params:
            np.testing.assert_array_equal(loaded.training_state_.params[name], model.training_state_.params[name])
    model.partial_fit(X, y)
    loaded.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))


@pytest.mark.parametrize("mode", MODES)
def test_onnx_graph_equals_decision_function(mode):
    ort = pytest.importorskip("onnxruntime")
    X, y, fields = planted(400)
    X = X.tolil()
    X[0, 3], X[1, 7] = 0.5, 2.0  # two non-zeros of one field in a row, real values
    X = X.tocsr()
    model = small(field_aware=mode, fields=fields).fit(X, y)
    session = ort.InferenceSession(fastafm.onnx.export(model).SerializeToString())
    for rows in (X, X[:1], X[:0]):
        indices, values = fastafm.onnx.to_padded(rows, m=rows.getnnz(axis=1).max(initial=0) + 2)  # padded slots
        out = session.run(None, {"indices": indices, "values": values})
        want = model.decision_function(rows) if rows.shape[0] else np.zeros(0)
        assert np.all(np.abs(out[0] - want) <= 1e-5 * np.maximum(np.abs(want), 0.1))


def test_cli_trains_field_aware_afm_from_libffm(tmp_path, capsys):
    from fastafm.cli.commands import main

    X, y, fields = planted(600)
    path = tmp_path / "d.ffm"
    write_libffm(path, X, y, fields)
    model = tmp_path / "m.afm"
    assert main(["train", str(path), "--field-aware", "both", "--task", "classification", "--model", str(model),
                 "--epochs", "2", "--threads", "1", "--embedding-dim", "8", "--attention-dim", "8", "--quiet"]) == 0
    loaded = fastafm.load(model)
    assert type(loaded).__name__ == "AFMClassifier" and loaded.field_aware == "both"
    np.testing.assert_array_equal(loaded.fields_, fields)
    assert main(["eval", "--model", str(model), str(path), "--json"]) == 0
    assert '"auc"' in capsys.readouterr().out


@pytest.mark.parametrize("cls,kw", [(fastafm.AFMClassifier, {"field_aware": "weights"}),
                                    (fastafm.AFMClassifier, {"field_aware": "logits"}),
                                    (fastafm.AFMClassifier, {"field_aware": "both"}),
                                    (fastafm.FwFMClassifier, {})])
def test_explanations_sum_to_the_output_with_field_pair_terms(cls, kw):
    """explain's pair terms carry the field pair's weight r (FwFM's R too, with pairs=False as well), and its
    attention the logit terms: each row's values sum to decision_function."""
    X, y, fields = planted(600)
    if cls is fastafm.FwFMClassifier:
        model = cls(embedding_dim=8, n_epochs=3, random_state=0, n_threads=1, fields=fields).fit(X, y)
    else:
        model = small(cls, fields=fields, **kw).fit(X, y)
    want = model.decision_function(X[:20])
    for pairs in ((True, False) if cls is fastafm.FwFMClassifier else (True,)):
        e = model.explain(X[:20], pairs=pairs)
        np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), want, rtol=1e-5, atol=1e-5)


def test_saving_after_set_params_changed_the_shapes_is_refused(tmp_path):
    """field_aware (like embedding_dim) decides the arrays a file holds: a set_params after fit that changes them
    would write a file that cannot be loaded; save says so instead, and saves once they are restored."""
    X, y, fields = planted(400)
    model = small().fit(X, y)
    model.set_params(field_aware="both", fields=fields)
    with pytest.raises(ValueError, match="changed after fit"):
        model.save(tmp_path / "m.npz")
    model.set_params(field_aware=None)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").decision_function(X), model.decision_function(X))
    model.set_params(embedding_dim=16)
    with pytest.raises(ValueError, match="changed after fit"):
        model.save(tmp_path / "m2.npz")
