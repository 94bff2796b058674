"""frequency_l2 through the estimators: the n_i each path hands the core (training rows of positive weight,
held-out rows excluded, the same from a streamed cache), one training step against the reference, and model
files from before it."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm import reference
from fastafm.training.cache_rows import CacheRows
from fastafm.training.rows import InMemoryRows
from support import random_csr, small_model


def _params(model) -> reference.Params:
    p = {name: a.astype(np.float64) for name, a in model.get_model_params().items()}
    return reference.Params(float(p["w0"][0]), p["w"], p["V"], p["W"], p["b"], p["h"], p["p"])


def test_in_memory_counts_leave_out_rows_of_weight_zero(rng):
    X = random_csr(rng, [3, 0, 5, 2, 4, 1], n_features=9)
    w = np.array([1.0, 2.0, 0.0, 0.5, 1.0, 0.0], np.float32)
    got = InMemoryRows(X, np.zeros(6, np.float32), w).feature_counts(9)
    keep = np.flatnonzero(w > 0)
    np.testing.assert_array_equal(got, np.bincount(X[keep].indices, minlength=9))
    np.testing.assert_array_equal(InMemoryRows(X, np.zeros(6, np.float32)).feature_counts(9),
                                  np.bincount(X.indices, minlength=9))


def test_cache_counts_equal_the_trained_rows_in_memory(rng, tmp_path):
    X = random_csr(rng, list(rng.integers(0, 6, size=300)), n_features=40)
    y = rng.normal(size=300).astype(np.float32)
    w = rng.choice([0.0, 1.0, 2.5], size=300).astype(np.float32)
    cache = fastafm.convert((X, y), str(tmp_path / "c.fafm"), weights=w, block_rows=64)
    rows = CacheRows([fastafm.CacheFile(cache.path, block_rows=64)], lambda labels: labels)
    np.testing.assert_array_equal(rows.feature_counts(40), np.bincount(X[w > 0].indices, minlength=40))
    kept, _ = rows.hold_out(0.25, seed=3)
    trained = np.concatenate([np.flatnonzero(~kept.held_mask(b)) + kept.blocks[b][1] for b in range(len(kept.blocks))])
    trained = trained[w[trained] > 0]
    np.testing.assert_array_equal(kept.feature_counts(40), np.bincount(X[trained].indices, minlength=40))


@pytest.mark.parametrize("frequency_l2", [0.0, 3.0])
def test_one_step_uses_the_rows_counts(rng, frequency_l2):
    """partial_fit over one batch with SGD is one reference step with n_i counted over the rows given."""
    X = random_csr(rng, [4, 0, 3, 1, 6, 2, 5, 5], n_features=12, repeat_ids=True)
    y = rng.normal(size=X.shape[0])
    lr = 0.01
    model = small_model(n_epochs=0, optimizer="sgd", learning_rate=lr, batch_size=64, dropout=0.0, pretrain=None,
                        early_stopping=False, init_std=0.3, attention_l2=0.5, frequency_l2=frequency_l2)
    model.fit(X, y)
    before = _params(model)
    model.partial_fit(X, y)
    after = _params(model)
    counts = np.bincount(X.indices, minlength=12).astype(np.float64)
    _, grads = reference.gradients(before, X, y, attention_l2=0.5, frequency_l2=frequency_l2, feature_counts=counts)
    want = before.copy()
    reference.sgd_step(want, grads, reference.touched_features(X), lr)
    for name in ("w", "V", "W", "b", "h", "p"):
        np.testing.assert_allclose(getattr(after, name), getattr(want, name), rtol=2e-4, atol=2e-6, err_msg=name)
    if frequency_l2:  # the term moved the embeddings by more than the tolerance
        _, plain = reference.gradients(before, X, y, attention_l2=0.5)
        assert np.max(np.abs(lr * (grads.V - plain.V))) > 1e-3


def test_frequency_l2_shrinks_rare_ids_more_than_frequent_ones(rng):
    """The point of it: an id seen once is pulled to 0 far harder than ids seen in hundreds of rows (two
    frequent fields whose pair carries the signal, and a third field with a new id in every row)."""
    n = 2000
    a, b = rng.integers(0, 5, size=n), rng.integers(0, 5, size=n)
    rare = 10 + np.arange(n)
    X = fastafm.from_fields(np.stack([a, 5 + b, rare], axis=1), n_features=10 + n)
    effect = rng.normal(size=(5, 5))
    y = effect[a, b] + 0.3 * rng.normal(size=n)
    norms = {}
    for value in (0.0, 30.0):
        model = small_model(n_epochs=3, frequency_l2=value, pretrain=None, early_stopping=False, init_std=0.1)
        V = model.fit(X, y).V_
        norms[value] = (np.linalg.norm(V[:10], axis=1).mean(), np.linalg.norm(V[10:], axis=1).mean())
    (freq0, rare0), (freq1, rare1) = norms[0.0], norms[30.0]
    assert rare1 < 0.5 * rare0
    assert freq1 > 0.8 * freq0


def test_model_files_from_before_load_without_it(rng, tmp_path):
    from fastafm.models import persistence

    kind = fastafm.models.registry.kind(fastafm.AFMRegressor)
    old = {"l2": 0.0, "embedding_dim": 8}
    assert persistence._upgrade_hyperparameters(old, kind)["frequency_l2"] == 0.0
    assert persistence._upgrade_hyperparameters({**old, "frequency_l2": 2.0}, kind)["frequency_l2"] == 2.0


def test_bad_values_are_named(rng):
    X = random_csr(rng, [2, 3], n_features=5)
    for bad, error in ((-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(error, match="frequency_l2"):
            small_model(frequency_l2=bad).fit(X, [0.0, 1.0])
