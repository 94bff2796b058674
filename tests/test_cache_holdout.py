"""Early stopping without an eval_set from a cache holds out the rows the same fit in memory holds out (issue 23:
the raw-log route and FieldEncoder on the DataFrame give the same model under default settings)."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm.training.cache_rows import CacheRows
from fastafm.training.rows import holdout_split
from support import random_csr, small_model


def _data(rng, n=400, n_features=30, positives=0.2):
    X = random_csr(rng, list(rng.integers(1, 6, size=n)), n_features=n_features)
    y = (rng.random(n) < positives).astype(np.float32)
    return X, y


def _held_rows(rows: CacheRows) -> np.ndarray:
    return np.concatenate([np.flatnonzero(rows.held_mask(b)) + rows.blocks[b][3] for b in range(len(rows.blocks))])


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("block_rows", [None, 64])
def test_a_cache_holds_out_the_rows_held_out_in_memory(rng, tmp_path, stratify, block_rows):
    X, y = _data(rng)
    cache = fastafm.convert((X, y), str(tmp_path / "c.fafm"), block_rows=block_rows)
    rows = CacheRows([cache], lambda labels: labels)
    kept, evaluation = rows.hold_out_split(0.2, np.random.default_rng(5), stratify)
    want_keep, want_held = holdout_split(X.shape[0], 0.2, np.random.default_rng(5), y if stratify else None)
    np.testing.assert_array_equal(_held_rows(kept), want_held)
    assert kept.n_rows == want_keep.shape[0]
    np.testing.assert_array_equal(evaluation.X.toarray(), X[want_held].toarray())
    np.testing.assert_array_equal(evaluation.y, y[want_held])


def test_the_split_is_stratified_per_class(rng, tmp_path):
    X, y = _data(rng, n=1003, positives=0.07)
    cache = fastafm.convert((X, y), str(tmp_path / "c.fafm"), block_rows=100)
    kept, _ = CacheRows([cache], lambda labels: labels).hold_out_split(0.1, np.random.default_rng(1), True)
    held = _held_rows(kept)
    for label in (0.0, 1.0):
        n_class = int(np.count_nonzero(y == label))
        assert int(np.count_nonzero(y[held] == label)) == int(np.floor(0.1 * n_class + 0.5))


def test_several_files_split_as_their_rows_in_order(rng, tmp_path):
    X, y = _data(rng, n=300)
    parts = [fastafm.convert((X[a:b], y[a:b]), str(tmp_path / f"{a}.fafm"), n_features=X.shape[1], block_rows=50)
             for a, b in ((0, 120), (120, 300))]
    kept, evaluation = CacheRows(parts, lambda labels: labels).hold_out_split(0.25, np.random.default_rng(2), True)
    _, want_held = holdout_split(300, 0.25, np.random.default_rng(2), y)
    np.testing.assert_array_equal(_held_rows(kept), want_held)
    np.testing.assert_array_equal(evaluation.X.toarray(), X[want_held].toarray())


def test_a_block_trains_its_kept_rows_packed_in_order(rng, tmp_path):
    X, y = _data(rng, n=200)
    w = rng.choice([0.5, 1.0, 2.0], size=200).astype(np.float32)
    cache = fastafm.convert((X, y), str(tmp_path / "c.fafm"), weights=w, block_rows=64)
    kept, _ = CacheRows([cache], lambda labels: labels).hold_out_split(0.3, np.random.default_rng(0), False)
    for b in range(len(kept.blocks)):
        _, start, stop, _, _ = kept.blocks[b]
        rows = start + np.flatnonzero(~kept.held_mask(b))
        indptr, indices, values, labels, weights = kept.read(b)
        want = X[rows]
        np.testing.assert_array_equal(indptr, want.indptr)
        np.testing.assert_array_equal(indices, want.indices)
        np.testing.assert_array_equal(values, want.data)
        np.testing.assert_array_equal(labels, y[rows])
        np.testing.assert_array_equal(weights, w[rows])


@pytest.mark.parametrize("cls,extra", [(fastafm.AFMClassifier, {"dropout": 0.3}),
                                       (fastafm.AFMRegressor, {"dropout": 0.3}),
                                       (fastafm.FMClassifier, {})])
def test_a_one_block_cache_fits_the_model_fitted_in_memory(rng, tmp_path, cls, extra):
    """Same held-out rows, same training order, same dropout masks (a kept row's key is its rank among the kept
    rows, as in memory), the same exact linear model: the same fitted model."""
    X, y = _data(rng, n=500)
    if cls is fastafm.AFMRegressor:
        y = (y + rng.normal(size=y.shape[0])).astype(np.float32)
    cache = fastafm.convert((X, y), str(tmp_path / "c.fafm"))
    settings = dict(early_stopping=True, n_epochs=4, random_state=3, **extra)
    in_memory = small_model(cls, **settings).fit(X, y)
    from_cache = small_model(cls, **settings).fit(cache)
    assert [h.get("eval_loss") for h in from_cache.history_] == [h.get("eval_loss") for h in in_memory.history_]
    assert from_cache.best_epoch_ == in_memory.best_epoch_
    assert in_memory.linear_history_ is not None and from_cache.linear_history_ == in_memory.linear_history_
    np.testing.assert_array_equal(from_cache.predict(X), in_memory.predict(X))


def test_a_split_that_leaves_no_rows_names_the_cache(rng, tmp_path):
    X, y = _data(rng, n=4)
    cache = fastafm.convert((X, y), str(tmp_path / "tiny.fafm"))
    with pytest.raises(ValueError, match="tiny.fafm.*validation_fraction"):
        CacheRows([cache], lambda labels: labels).hold_out_split(0.01, np.random.default_rng(0), False)
