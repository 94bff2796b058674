"""Lazy Adam (docs/model.md, "Optimizer step"): the reference step against a hand-written one, the core's
kernel per element on every ISA, the core's training steps against the reference (moments, per-row step
counts, untouched rows), the binding's checks of its state, and the estimators' use of it (partial_fit,
model files, warm starts, streaming)."""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_close, core_config, core_epoch, random_csr, random_params, small_model, to_core

import fastafm
from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.training.optim import init_slots
from fastafm.data.validation import csr_arrays
from fastafm.data.convert import convert
from fastafm.data import make_planted

B1, B2, EPS = reference.ADAM_BETA1, reference.ADAM_BETA2, reference.ADAM_EPS


# ------------------------------------------------------------------------------------------ reference


def test_reference_step_is_the_hand_written_lazy_step(rng):
    """Two steps written out by hand: dense parameters at the batch count, rows of V/w at their own count,
    untouched rows (and their moments and counts) unchanged."""
    n, k, t, lr = 6, 3, 2, 0.01
    params = reference.init_params(n, k, t, init_std=0.3, rng=rng)
    start = params.copy()
    state = reference.init_adam_state(params)
    g1 = reference.Params(0.5, *(rng.normal(size=getattr(params, nm).shape) for nm in reference.PARAM_NAMES[1:]))
    g2 = reference.Params(-0.2, *(rng.normal(size=getattr(params, nm).shape) for nm in reference.PARAM_NAMES[1:]))
    reference.adam_step(params, state, g1, [1, 4, 1], lr)  # a repeated id is one touch
    reference.adam_step(params, state, g2, [4, 5], lr)

    # Step 1 (t = 1): m = (1-b1) g, v = (1-b2) g^2, so m_hat = g, v_hat = g^2.
    def first(theta, g):
        return theta - lr * g / (np.abs(g) + EPS)

    def second(theta1, g_first, g):  # t = 2 from the moments of step 1
        m = B1 * (1 - B1) * g_first + (1 - B1) * g
        v = B2 * (1 - B2) * g_first ** 2 + (1 - B2) * g ** 2
        return theta1 - lr * (m / (1 - B1 ** 2)) / (np.sqrt(v / (1 - B2 ** 2)) + EPS)

    for name in ("W", "b", "h", "p"):
        want = second(first(getattr(start, name), getattr(g1, name)), getattr(g1, name), getattr(g2, name))
        np.testing.assert_allclose(getattr(params, name), want, rtol=1e-12, err_msg=name)
    assert params.w0 == pytest.approx(second(first(start.w0, 0.5), 0.5, -0.2), rel=1e-12)
    assert state.step == 2
    np.testing.assert_array_equal(state.row_steps, [0, 1, 0, 0, 2, 1])
    for name in ("w", "V"):
        th0, ga, gb = getattr(start, name), getattr(g1, name), getattr(g2, name)
        got = getattr(params, name)
        np.testing.assert_allclose(got[1], first(th0[1], ga[1]), rtol=1e-12)       # touched once, at t = 1
        np.testing.assert_allclose(got[5], first(th0[5], gb[5]), rtol=1e-12)       # first touched in step 2: t = 1
        np.testing.assert_allclose(got[4], second(first(th0[4], ga[4]), ga[4], gb[4]), rtol=1e-12)
        for i in (0, 2, 3):  # never touched: parameters and moments as they were
            np.testing.assert_array_equal(got[i], th0[i])
            assert not np.any(getattr(state.m, name)[i]) and not np.any(getattr(state.v, name)[i])
    # The lazy rule: row 1's moments were not decayed by step 2, which did not touch it.
    np.testing.assert_allclose(state.m.V[1], (1 - B1) * g1.V[1], rtol=1e-12)


# ------------------------------------------------------------------------------------------ the kernel


@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 33, 64, 100])
def test_adam_kernel_matches_float64_per_element(rng, isa, n):
    """_testing.adam_update_ (this ISA's kernel) over three steps from fresh moments, element by element, for
    sizes that fill whole vectors and sizes that leave tails."""
    theta = rng.normal(size=n).astype(np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    for step in (1, 2, 3):
        g = (rng.normal(size=n) * rng.choice([1e-3, 1.0, 30.0], size=n)).astype(np.float32)
        g[0] = 0.0  # a zero gradient at step 1: 0 / (0 + eps), no NaN
        # Each step from the kernel's own state (an earlier step's rounding is not this step's error).
        want_theta, want_m, want_v = theta.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
        _testing.adam_update_(theta, m, v, g, 0.01, step, B1, B2, EPS)
        terms = B1 * np.abs(want_m) + (1 - B1) * np.abs(g)  # m's two terms may cancel: their size is the scale
        want_m = B1 * want_m + (1 - B1) * g
        want_v = B2 * want_v + (1 - B2) * g.astype(np.float64) ** 2
        want_theta = want_theta - 0.01 * (want_m / (1 - B1 ** step)) / (np.sqrt(want_v / (1 - B2 ** step)) + EPS)
        assert np.all(np.abs(m - want_m) <= 1e-6 * terms), np.max(np.abs(m - want_m) / np.maximum(terms, 1e-30))
        np.testing.assert_allclose(v, want_v, rtol=1e-5, atol=1e-12)
        # Steps are ~lr per coordinate: compare the parameter to a few float32 ulps of its size.
        np.testing.assert_allclose(theta, want_theta, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError):
        _testing.adam_update_(theta.astype(np.float64), m, v, g, 0.01, 1, B1, B2, EPS)  # a copy would lose the update
    with pytest.raises(ValueError, match="step must be"):
        _testing.adam_update_(theta, m, v, g, 0.01, 0, B1, B2, EPS)


# ------------------------------------------------------------------------------ core against reference


def _reference_state(core_params: dict, slots: dict):
    """The reference's Params and AdamState holding exactly the core's current values (float64)."""
    def params_of(d):
        return reference.Params(float(d["w0"][0]), *(d[nm].astype(np.float64) for nm in reference.PARAM_NAMES[1:]))

    state = reference.AdamState(params_of(slots["m"]), params_of(slots["v"]),
                                slots["step"]["w"].astype(np.float64), int(slots["step"]["w0"][0]))
    return params_of(core_params), state


@pytest.mark.parametrize("k, t", [(16, 16), (19, 5), (6, 3)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_core_steps_match_the_reference(rng, isa, k, t, n_threads):
    """Five one-batch epochs over different rows (0, 1, 2 and many non-zeros, repeated ids): each core step
    equals the reference step applied to the core's own batch gradient from the core's own state, the step
    counts count exactly the batches that touched a row, and untouched rows stay bit-identical."""
    n_features, lr = 60, 0.02
    core = to_core(random_params(rng, n_features, k, t))
    slots = init_slots("adam", core)
    cfg = core_config(optimizer="adam", lr=lr, n_threads=n_threads, l2=0.05, attention_l2=0.1, batch_size=1000)
    cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps = B1, B2, EPS
    touches = np.zeros(n_features)
    for step, nnz in enumerate([[4, 0, 3, 1, 6, 2], [2, 2], [30, 1, 0, 5], [1], [3, 3, 3, 3, 3, 3, 3, 3, 3]]):
        X = random_csr(rng, nnz, n_features=n_features // 3)  # ids of the first third: rows touched often
        X.resize((X.shape[0], n_features))                      # and rows never touched
        y = rng.normal(size=X.shape[0]).astype(np.float32)
        order = np.arange(X.shape[0], dtype=np.int64)
        before = {nm: a.copy() for nm, a in core.items()}
        before_slots = {s: {nm: a.copy() for nm, a in d.items()} for s, d in slots.items()}
        # The gradient of the same chunks (thread count) the step used: Adam divides by sqrt(v), so where
        # the moments are ~0 a float32 rounding residue of another summation order would show as a step.
        cg = _testing.batch_gradients(before, *csr_arrays(X), y, order,
                                      core_config(l2=0.05, attention_l2=0.1, n_threads=n_threads))
        res = core_epoch(core, slots, *csr_arrays(X), y, order, cfg)
        assert res["n_batches"] == 1

        params, state = _reference_state(before, before_slots)
        want = params.copy()
        grads = reference.Params(float(cg["w0"]), np.zeros(n_features), np.zeros((n_features, k)), cg["W"], cg["b"],
                                 cg["h"], cg["p"])
        grads.V[cg["touched"]], grads.w[cg["touched"]] = cg["V"], cg["w"]
        touched = reference.touched_features(X)
        np.testing.assert_array_equal(np.sort(cg["touched"]), touched)
        reference.adam_step(want, state, grads, touched, lr)
        touches[touched] += 1

        np.testing.assert_array_equal(slots["step"]["w"], touches)
        assert slots["step"]["w0"][0] == step + 1
        for name in ("w", "V", "W", "b", "h", "p"):
            moved = core[name].astype(np.float64) - before[name]
            assert_close(moved, getattr(want, name) - getattr(params, name), name, rtol=1e-4)
            assert_close(slots["m"][name], getattr(state.m, name), "m " + name, rtol=1e-5)
            assert_close(slots["v"][name], getattr(state.v, name), "v " + name, rtol=1e-5)
        assert core["w0"][0] - before["w0"][0] == pytest.approx(want.w0 - params.w0, rel=1e-4, abs=1e-7)
        untouched = np.setdiff1d(np.arange(n_features), touched)
        for d, d0 in ((core, before), (slots["m"], before_slots["m"]), (slots["v"], before_slots["v"])):
            np.testing.assert_array_equal(d["V"][untouched], d0["V"][untouched])
            np.testing.assert_array_equal(d["w"][untouched], d0["w"][untouched])
    assert touches.min() == 0 and touches.max() >= 3  # some rows never touched, some in several batches


def test_core_checks_adams_state(rng):
    params = to_core(random_params(rng, 10, 4, 4))
    X = random_csr(rng, [3, 2], n_features=10)
    args = (*csr_arrays(X), np.zeros(2, np.float32), np.arange(2, dtype=np.int64), core_config(optimizer="adam"))
    good = init_slots("adam", params)
    with pytest.raises(ValueError, match="missing the slot 'step'"):
        core_epoch(params, {"m": good["m"], "v": good["v"]}, *args)
    with pytest.raises(ValueError, match="holds only 'w' and 'w0'"):
        core_epoch(params, {**good, "step": {**good["step"], "V": good["m"]["V"]}}, *args)
    with pytest.raises(ValueError, match="optimizer slot step\\['w'\\]"):
        core_epoch(params, {**good, "step": {"w0": good["step"]["w0"], "w": np.zeros(9, np.float32)}}, *args)
    bad = {**good, "step": {"w0": good["step"]["w0"], "w": np.full(10, -1.0, np.float32)}}
    with pytest.raises(ValueError, match="negative or not finite"):
        core_epoch(params, bad, *args)
    with pytest.raises(ValueError, match="slot 'G' that adam does not have"):
        core_epoch(params, {**good, "G": good["m"]}, *args)
    cfg = core_config(optimizer="adam")
    cfg.adam_beta2 = 1.0
    with pytest.raises(ValueError, match="adam_beta1 and adam_beta2"):
        core_epoch(params, good, *args[:-1], cfg)
    assert _core.optimizer_slots(_core.Optimizer.adam) == ["m", "v", "step"]


# ------------------------------------------------------------------------------------------ estimators


def _planted(n_rows=1500, seed=3, classification=False):
    X, y, _ = make_planted(n_rows=n_rows, n_fields=5, cardinality=12, classification=classification,
                           random_state=seed)
    return X, y


def test_partial_fit_and_model_files_continue_adams_state(tmp_path):
    """fit(3 epochs) == fit(1) + partial_fit twice, and a save/load in between changes nothing: the moments
    and both kinds of step counts travel with the model."""
    X, y = _planted()
    kw = dict(optimizer="adam", learning_rate=0.01, dropout=0.2, pretrain=None)
    full = small_model(n_epochs=3, **kw).fit(X, y)
    stepwise = small_model(n_epochs=1, **kw).fit(X, y)
    stepwise.save(tmp_path / "adam.afm")
    loaded = fastafm.load(tmp_path / "adam.afm")
    state = loaded.optimizer_state()
    assert sorted(state) == ["m", "step", "v"] and sorted(state["step"]) == ["w", "w0"]
    n_batches = -(-X.shape[0] // 128)
    assert state["step"]["w0"][0] == n_batches and state["step"]["w"].max() <= n_batches
    for model in (stepwise, loaded):
        model.partial_fit(X, y).partial_fit(X, y)
        for name, arr in full.get_model_params().items():
            np.testing.assert_array_equal(model.get_model_params()[name], arr, err_msg=name)
    for slot, arrays in full.optimizer_state().items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(loaded.optimizer_state()[slot][name], a, err_msg=f"{slot}.{name}")


def test_model_file_refuses_negative_second_moments(tmp_path):
    import io
    import json
    import zipfile

    from fastafm.models import persistence

    X, y = _planted(n_rows=300)
    path = tmp_path / "adam.afm"
    small_model(n_epochs=1, optimizer="adam", pretrain=None).fit(X, y).save(path)
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    buf = io.BytesIO()
    np.save(buf, -np.abs(np.load(io.BytesIO(members["slot.v.W.npy"]))) - 1.0)
    members["slot.v.W.npy"] = buf.getvalue()
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
    assert meta["optimizer_slots"] == ["m", "v", "step"]
    assert {k for k in meta["sha256"] if k.startswith("slot.step.")} == {"slot.step.w0", "slot.step.w"}
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    path.write_bytes(persistence.resign(path.read_bytes()))
    with pytest.raises(ValueError, match="slot.v.W holds negative values"):
        fastafm.load(path)


@pytest.mark.parametrize("cls", [fastafm.AFMClassifier, fastafm.FMRegressor])
def test_adam_with_pretraining_early_stopping_and_streaming(tmp_path, cls):
    """The FM pretraining, early stopping's restore and a streamed fit all carry Adam's state; a streamed
    fit equals the in-memory fit of the same block order only in distribution, so it is checked to learn."""
    X, y = _planted(n_rows=2000, classification=cls is fastafm.AFMClassifier)
    model = small_model(cls, n_epochs=6, optimizer="adam", learning_rate=0.01, early_stopping=True)
    model.fit(X[:1600], y[:1600], eval_set=(X[1600:], y[1600:]))
    assert model.best_epoch_ is not None and sorted(model.optimizer_state()) == ["m", "step", "v"]
    first = model.history_[0]["train_loss"]
    assert model.history_[model.best_epoch_ - 1]["train_loss"] < first
    cache = convert((X[:1600], y[:1600]), tmp_path / "rows.cache", block_rows=500)
    streamed = small_model(cls, n_epochs=3, optimizer="adam", learning_rate=0.01).fit(cache)
    assert streamed.history_[-1]["train_loss"] < streamed.history_[0]["train_loss"]
    assert streamed.optimizer_state()["step"]["w0"][0] > 0
