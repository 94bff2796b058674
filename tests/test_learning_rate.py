"""learning_rate="auto": each optimizer's own default (fastafm._hyperparams.AUTO_LEARNING_RATES), visible as
`learning_rate_`; Adagrad's unchanged from before "auto"; and every optimizer training Frappe-shaped data
(10 one-hot fields, ~5,000 ids, 3,000 rows) at k = 8 and 64, batch sizes 1 and 128, without diverging."""
from __future__ import annotations

import numpy as np
import pytest
from support import small_model

import fastafm
from fastafm._hyperparams import AUTO_LEARNING_RATES, pretrain_learning_rate
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
    assert np.all(np.isfinite(model.decision_function(X)))
