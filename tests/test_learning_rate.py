"""learning_rate="auto": each optimizer's own default (fastafm.models.hyperparams.AUTO_LEARNING_RATES), divided by
mean non-zeros a row / 10 above 10 (AUTO_RATE_NNZ), visible as `learning_rate_`; Adagrad's unchanged from before
"auto" up to 10 non-zeros; and every optimizer training Frappe-shaped data (10 one-hot fields, ~5,000 ids,
3,000 rows) at k = 8 and 64, batch sizes 1 and 128, and Criteo-shaped rows (39 fields) without diverging."""
from __future__ import annotations

import numpy as np
import pytest
from support import small_model, raw_output

import fastafm
from fastafm.models.hyperparams import AUTO_LEARNING_RATES, AUTO_RATE_NNZ, pretrain_learning_rate, resolve_learning_rate
from fastafm.data import make_planted

OPTIMIZERS = ("adagrad", "sgd", "adam")


@pytest.fixture(scope="module")
def frappe_shaped():
    X, y, _ = make_planted(n_rows=3000, n_fields=10, cardinality=500, random_state=0)
    _, y_clf, _ = make_planted(n_rows=3000, n_fields=10, cardinality=500, classification=True, random_state=0)
    return X, y, y_clf


@pytest.mark.parametrize("cls", [fastafm.AFMRegressor, fastafm.FMClassifier])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_auto_resolves_per_optimizer_and_family(frappe_shaped, cls, optimizer):
    X, y, y_clf = frappe_shaped
    target = y_clf if cls is fastafm.FMClassifier else y
    model = small_model(cls, n_epochs=1, optimizer=optimizer).fit(X[:500], target[:500])
    family = "fm" if cls is fastafm.FMClassifier else "afm"
    assert model.learning_rate == "auto" and model.learning_rate_ == AUTO_LEARNING_RATES[family][optimizer]
    model.set_params(learning_rate=0.02)
    assert model.learning_rate_ == 0.02


def test_adagrad_auto_is_the_old_default_bit_for_bit(frappe_shaped):
    """Adagrad's "auto" is the default before "auto" existed (AFM 0.1, its pretraining FM 0.05; FM 0.05)."""
    X, y, _ = frappe_shaped
    for cls, old in ((fastafm.AFMRegressor, 0.1), (fastafm.FMRegressor, 0.05)):
        auto = small_model(cls, n_epochs=2).fit(X[:1000], y[:1000])
        explicit = small_model(cls, n_epochs=2, learning_rate=old).fit(X[:1000], y[:1000])
        for name, arr in auto.get_model_params().items():
            np.testing.assert_array_equal(arr, explicit.get_model_params()[name], err_msg=f"{cls.__name__} {name}")


def test_pretraining_fm_learning_rate():
    """pretrain="fm": "auto" gives the FM its own default; a given AFM rate is scaled by the families' ratio."""
    assert pretrain_learning_rate("auto", "sgd") == "auto"
    for optimizer in OPTIMIZERS:
        ratio = AUTO_LEARNING_RATES["fm"][optimizer] / AUTO_LEARNING_RATES["afm"][optimizer]
        assert pretrain_learning_rate(0.2, optimizer) == pytest.approx(0.2 * ratio)
    assert pretrain_learning_rate(0.2, "adagrad") == pytest.approx(0.1)  # as before "auto"


@pytest.mark.parametrize("classification", [False, True])
@pytest.mark.parametrize("k", [8, 64])
@pytest.mark.parametrize("batch_size", [1, 128])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains_at_its_default_learning_rate(frappe_shaped, optimizer, batch_size, k,
                                                             classification):
    """With the defaults (pretraining FM included), no epoch diverges, and AFM's training loss falls and ends
    below the loss of a constant prediction. (SGD at the old shared default 0.1 diverged here in epoch 1.)"""
    X, y, y_clf = frappe_shaped
    cls = fastafm.AFMClassifier if classification else fastafm.AFMRegressor
    model = cls(embedding_dim=k, attention_dim=k, n_epochs=2, batch_size=batch_size, optimizer=optimizer,
                random_state=0, n_threads=1, early_stopping=False)
    model.fit(X, y_clf if classification else y)  # a divergence raises FloatingPointError
    if classification:
        rate = np.mean(y_clf)
        constant = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    else:
        constant = 0.5 * np.var(y)  # the squared loss is (y - t)^2 / 2
    assert all(np.isfinite(h["train_loss"]) for h in model.pretrain_history_ + model.history_)
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < losses[0] and losses[-1] < constant, (losses, constant)
    assert np.all(np.isfinite(raw_output(model)(X)))


def test_auto_rate_shrinks_with_the_rows_non_zeros():
    """Up to AUTO_RATE_NNZ non-zeros a row the table's rate; above, divided by mean_nnz / AUTO_RATE_NNZ; None
    (a model file from before the rule) the table's; a given number is never scaled."""
    for optimizer in OPTIMIZERS:
        base = AUTO_LEARNING_RATES["afm"][optimizer]
        assert resolve_learning_rate("auto", optimizer, "afm", None) == base
        assert resolve_learning_rate("auto", optimizer, "afm", 3.0) == base
        assert resolve_learning_rate("auto", optimizer, "afm", AUTO_RATE_NNZ) == base
        assert resolve_learning_rate("auto", optimizer, "afm", 39.0) == pytest.approx(base * AUTO_RATE_NNZ / 39)
        assert resolve_learning_rate(0.02, optimizer, "afm", 39.0) == 0.02


@pytest.mark.parametrize("cls", [fastafm.AFMClassifier, fastafm.FMRegressor])
def test_fit_uses_the_mean_non_zeros_of_the_rows_given(cls):
    """learning_rate_ follows the fitted rows' mean non-zeros (all rows given, before the validation hold-out),
    the core trains with it, and the pretraining FM's rate is scaled the same way."""
    X, y, _ = make_planted(n_rows=600, n_fields=25, cardinality=10, classification=cls.__name__.endswith("Classifier"),
                           random_state=1)
    X = X.tolil()
    X[0, :] = 0  # one empty row: the mean is over every row given (24.96 non-zeros)
    X = X.tocsr()
    X.eliminate_zeros()
    mean_nnz = X.nnz / X.shape[0]
    family = "fm" if cls is fastafm.FMRegressor else "afm"
    expected = AUTO_LEARNING_RATES[family]["adagrad"] * AUTO_RATE_NNZ / mean_nnz
    auto = small_model(cls, n_epochs=2, early_stopping=True).fit(X, y)
    assert auto.learning_rate_ == pytest.approx(expected, rel=1e-12)
    # The same model as the rate given as a number (whose pretraining FM gets it times the families' ratio:
    # the FM's own scaled "auto" rate).
    explicit = small_model(cls, n_epochs=2, early_stopping=True, learning_rate=expected).fit(X, y)
    for name, arr in auto.get_model_params().items():
        np.testing.assert_allclose(arr, explicit.get_model_params()[name], rtol=0, atol=1e-6, err_msg=name)


def test_partial_fit_keeps_the_first_batchs_rate_and_a_file_keeps_it(tmp_path):
    X, y, _ = make_planted(n_rows=400, n_fields=20, cardinality=10, random_state=2)
    model = small_model(fastafm.AFMRegressor).partial_fit(X[:200], y[:200])
    first = model.learning_rate_
    assert first == pytest.approx(0.1 * AUTO_RATE_NNZ / 20)
    X_sparse = X[200:].tolil()
    X_sparse[:, :100] = 0  # later batches with fewer non-zeros do not change the rate
    model.partial_fit(X_sparse.tocsr(), y[200:])
    assert model.learning_rate_ == first
    model.save(tmp_path / "m.fafm")
    assert fastafm.load(tmp_path / "m.fafm").learning_rate_ == first


def test_every_optimizer_trains_criteo_shaped_rows_at_its_default_learning_rate():
    """39 one-hot fields (741 pairs a row): each optimizer's scaled "auto" rate trains without diverging and
    ends below a constant prediction's log loss (with the unscaled rates the steps overshoot there)."""
    X, y, _ = make_planted(n_rows=2000, n_fields=39, cardinality=20, classification=True, random_state=3)
    rate = np.mean(y)
    constant = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    for optimizer in OPTIMIZERS:
        model = fastafm.AFMClassifier(embedding_dim=8, attention_dim=8, n_epochs=3, optimizer=optimizer,
                                      random_state=0, n_threads=1, early_stopping=False).fit(X, y)
        losses = [h["train_loss"] for h in model.pretrain_history_ + model.history_]
        assert all(np.isfinite(losses)), (optimizer, losses)
        assert model.history_[-1]["train_loss"] < constant, (optimizer, losses, constant)
