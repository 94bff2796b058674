"""Helpers shared by the tests (imported as `from support import ...`; fixtures stay in conftest.py):
seeded random rows and models, the core's configuration, float32-vs-float64 comparison, one small-model
factory, and the optimizer state in the forms the core and the estimators use."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import _core, reference
from fastafm._core import _testing


def random_csr(rng, row_nnz, n_features, value_scale=1.0, repeat_ids=True):
    """CSR rows with the given non-zero counts, real values of both signs, repeated ids allowed."""
    indptr = np.concatenate([[0], np.cumsum(row_nnz)]).astype(np.int64)
    nnz = int(indptr[-1])
    if repeat_ids:
        indices = rng.integers(0, n_features, size=nnz)
    else:
        indices = np.concatenate([rng.choice(n_features, size=m, replace=False) for m in row_nnz] or [[]])
    values = rng.uniform(0.3, 1.5, size=nnz) * rng.choice([-1.0, 1.0], size=nnz) * value_scale
    return sp.csr_matrix(
        (values.astype(np.float32), indices.astype(np.int32), indptr), shape=(len(row_nnz), n_features)
    )


def random_params(rng, n_features, k, t, v_std=0.4):
    """A model whose attention is far from uniform (so attention bugs show), as float32-exact float64."""
    p = reference.init_params(n_features, k, t, init_std=v_std, rng=rng)
    p.w = rng.normal(0, 0.3, n_features)
    p.w0 = float(rng.normal())
    p.p = rng.normal(1.0, 0.5, k)
    p.h = rng.normal(0, 2.0, t)
    # Round to float32 so the reference sees exactly the values the C++ core sees.
    for name in ("w", "V", "W", "b", "h", "p"):
        setattr(p, name, getattr(p, name).astype(np.float32).astype(np.float64))
    p.w0 = float(np.float32(p.w0))
    return p


def to_core(params) -> dict:
    """Reference Params -> the dict of float32 arrays the compiled core takes."""
    return {
        name: np.ascontiguousarray(np.atleast_1d(getattr(params, name)), dtype=np.float32)
        for name in reference.PARAM_NAMES
    }


def core_config(loss="squared", attention=True, attention_l2=0.0, l2=0.0, dropout=0.0, n_threads=1, lr=0.05,
                optimizer="adagrad", seed=0, epoch=0, batch_size=128, frequency_l2=0.0):
    cfg = _core.TrainConfig()
    cfg.loss = getattr(_core.Loss, loss)
    cfg.optimizer = getattr(_core.Optimizer, optimizer)
    cfg.attention = attention
    cfg.attention_l2 = attention_l2
    cfg.l2 = l2
    cfg.frequency_l2 = frequency_l2
    cfg.dropout = dropout
    cfg.n_threads = n_threads
    cfg.learning_rate = lr
    cfg.seed = seed
    cfg.epoch = epoch
    cfg.batch_size = batch_size
    return cfg


def core_epoch(params, slots, indptr, indices, values, y, order, config, *, feature_counts=None, **kw):
    """One epoch on a fresh core Trainer (as a fit's first epoch runs), its dropout stream config's (seed,
    epoch); keywords as Trainer.train_epoch's (progress, progress_interval, weights). Returns its result."""
    trainer = _core.Trainer(params, slots, config, feature_counts=feature_counts)
    return trainer.train_epoch(indptr, indices, values, y, order, config.seed, config.epoch, **kw)


@contextlib.contextmanager
def forced_pair_tile(pairs: int):
    """Blocks of at most `pairs` pairs, longer rows streamed through tiles of `pairs` (the core's test knob),
    restored afterwards: small rows then take the long-row path."""
    before = _testing.set_pair_tile(pairs)
    try:
        yield
    finally:
        _testing.set_pair_tile(before)


@contextlib.contextmanager
def forced_pair_layout(layout: str):
    """Blocks of pairs in the rows layout ("rows"), the pairs-major one ("pairs", where k, t <= 32) or the one
    dispatch chooses ("auto") (the core's test knob), restored afterwards."""
    before = _testing.set_pair_layout(layout)
    try:
        yield
    finally:
        _testing.set_pair_layout(before)


def assert_close(actual, expected, name, rtol=2e-4, scale=None):
    """float32 core vs float64 reference: error relative to the array's scale (or `scale`, for a gradient that
    is a sum cancelling to ~0, like db when k = t = 1: its rounding is that of the terms, not of the sum)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = max(np.max(np.abs(expected)) if scale is None else scale, 1e-3)
    err = np.max(np.abs(actual - expected)) if expected.size else 0.0
    assert err <= rtol * scale, f"{name}: max error {err:.3g} vs scale {scale:.3g}"


def dense_gradients(cg, n_features: int, k: int):
    """The core's batch_gradients dict as reference.Params: w and V dense, zero outside the touched rows."""
    grads = reference.Params(w0=float(cg["w0"]), w=np.zeros(n_features), V=np.zeros((n_features, k)),
                             W=cg["W"], b=cg["b"], h=cg["h"], p=cg["p"])
    grads.V[cg["touched"]] = cg["V"]
    grads.w[cg["touched"]] = cg["w"]
    return grads


def assert_directional_derivatives(cg, params, X, y, rng, n_directions: int = 6, **objective_kw):
    """The core's batch_gradients dict `cg` at `params` against central differences of the float64 reference
    objective along random directions of every parameter (w and V dense via dense_gradients)."""
    grad = dense_gradients(cg, X.shape[1], params.V.shape[1])
    theta, g = params.to_flat(), grad.to_flat()
    eps = 1e-6
    for _ in range(n_directions):
        u = rng.normal(size=theta.shape)
        j = [reference.objective(params.copy().from_flat(theta + s * eps * u), X, y, **objective_kw)
             for s in (1.0, -1.0)]
        assert g @ u == pytest.approx((j[0] - j[1]) / (2 * eps), rel=2e-4, abs=1e-5)


def assert_batch_gradients(got, want_obj, want, X, sample_weight=None):
    """The core's batch_gradients dict against the reference's (objective, Params): the objective, w0, the dense
    gradients (relative to their largest entry) and the touched rows of V and w, with T(B) the features of the
    rows of positive weight."""
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    assert_close(got["w0"], want.w0, "w0")
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, scale=own_scale(want, name))
    touched = got["touched"]
    np.testing.assert_array_equal(np.sort(touched), reference.touched_features(X, sample_weight))
    assert_close(got["V"], want.V[touched], "V")
    assert_close(got["w"], want.w[touched], "w")


def own_scale(want, name: str) -> float:
    """The tolerance scale of one dense gradient: its own largest entry, never another parameter's (a gradient
    1000x smaller than the largest of all could otherwise be wrong unseen). The one exception is db: the
    softmax is invariant to a shift of every score, so db is a sum over pairs that cancels (exactly 0 when
    t = 1 and every unit is active) and its rounding is that of its terms δ, whose size dW = Σ δ eᵀ and
    dh = Σ ds·relu(z) share; its scale is therefore theirs when larger than its own."""
    def largest(n):
        arr = np.asarray(getattr(want, n))
        return float(np.max(np.abs(arr))) if arr.size else 0.0

    if name == "b":
        return max(largest("b"), largest("W"), largest("h"))
    return largest(name)


def assert_per_element(got, want, name, rtol=1e-3, atol_frac=2e-5, scale=None):
    """float32 core vs float64 reference, element by element (atol: a small fraction of the array's scale,
    or of `scale` where the array is a sum that cancels, like db when softmax weights sum to 1)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if scale is None:
        scale = float(np.max(np.abs(want))) if want.size else 0.0
    scale = max(scale, 1e-3)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_frac * scale, err_msg=name)


_AFM_ONLY = ("attention_dim", "attention_l2", "attention")


def write_libffm(path, X, y, fields) -> None:
    """Rows of CSR X (values 1) and labels y as a libFFM file: `label field:feature:1 ...` a line."""
    with open(path, "w") as fh:
        for i in range(X.shape[0]):
            ids = X.indices[X.indptr[i]:X.indptr[i + 1]]
            fh.write(f"{int(y[i])} " + " ".join(f"{fields[j]}:{j}:1" for j in ids) + "\n")


def small_model(cls=fastafm.AFMRegressor, **kw):
    """A small, fast, seeded estimator of `cls` (k = t = 8, 3 epochs, one thread, no early stopping unless asked
    for); FM classes drop the attention-only settings (so do FwFM classes)."""
    params = dict(embedding_dim=8, attention_dim=8, n_epochs=3, random_state=0, n_threads=1, early_stopping=False)
    params.update(kw)
    if cls.__name__.startswith(("FM", "FwFM")):
        params = {k: v for k, v in params.items() if k not in _AFM_ONLY}
    return cls(**params)


def core_slots(optimizer: str, accum: dict) -> dict:
    """The optimizer state argument of _core.Trainer: {"G": accum} for adagrad, {} for sgd."""
    return {"G": accum} if optimizer == "adagrad" else {}


def slot_arrays(model) -> dict:
    """A fitted model's optimizer state flattened to {"slot.param": array} ({} for sgd)."""
    return {f"{slot}.{name}": a for slot, arrays in model.optimizer_state().items() for name, a in arrays.items()}


ROOT = Path(__file__).resolve().parent.parent


def compiler_or_skip(what: str) -> str:
    """A C++ compiler for the tests that build C++ checks against the kernel sources; without one (or without
    the source tree, as in the wheel round trip) the test skips, or fails where FASTAFM_REQUIRE_CXX_TESTS=1."""
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    missing = None if compiler and (ROOT / "cpp" / "src" / "isa" / "block_kernels.inc").exists() else (
        "no C++ compiler" if not compiler else "no source tree")
    if missing:
        if os.environ.get("FASTAFM_REQUIRE_CXX_TESTS") == "1":
            pytest.fail(f"cannot build the {what}: {missing}")
        pytest.skip(f"cannot build the {what}: {missing}")
    return str(compiler)


def raw_output(model):
    """The model's raw output y(x): a classifier's decision_function, a regressor's predict (regressors have no
    decision_function, as scikit-learn's)."""
    return getattr(model, "decision_function", model.predict)
