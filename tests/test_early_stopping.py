"""Early stopping by default and FM pretraining (issue 12, items 1, 4 and 6): `early_stopping="auto"` switches on
with an eval_set or from 10,000 training rows, the held-out validation split is seeded, stratified and disjoint
from the rows trained on, n_iter_no_change / tol, `pretrain="fm"` (GridSearchCV, init= overrides it,
pretrain=None is the fit as before), streaming fits holding out rows of every block, and the CLI options.
Small synthetic data, one thread (bit-identity), no clock reads."""
from __future__ import annotations

import numpy as np
import pytest
from support import slot_arrays

import fastafm
from fastafm.training import engine as _engine
from fastafm.models import registry as _registry
from fastafm.training import session
from fastafm.training.callbacks import EarlyStopping
from fastafm.models.hyperparams import core_settings
from fastafm.training.state import init_state
from fastafm.training.rows import InMemoryRows, holdout_split
from fastafm.cli import main

KW = dict(embedding_dim=4, attention_dim=4, n_threads=1, random_state=5)
FM_KW = dict(embedding_dim=4, n_threads=1, random_state=5)


def data(n_rows=1200, seed=0, classification=False):
    return fastafm.make_planted(n_rows=n_rows, n_fields=4, cardinality=6, planted_pairs=((0, 1),), noise=0.3,
                                classification=classification, random_state=seed)[:2]


def same_params(a, b) -> bool:
    pa, pb = a.get_model_params(), b.get_model_params()
    return all(np.array_equal(pa[k], pb[k]) for k in pa)


def timeless(history) -> list:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def split_of(n_rows, random_state, y=None, fraction=0.1):
    """The (kept, held-out) rows of fit's validation split (stratified by y when given)."""
    return holdout_split(n_rows, fraction, session.split_generator(random_state), y)


# ---------------------------------------------------------------------------------------------- "auto"
def test_auto_is_off_below_the_threshold_without_an_eval_set():
    X, y = data(n_rows=session.AUTO_EARLY_STOPPING_ROWS - 1)
    model = fastafm.AFMRegressor(n_epochs=4, pretrain=None, **KW).fit(X, y)
    assert model.do_early_stopping_ is False and len(model.history_) == 4
    assert not any(k.startswith("eval_") for k in model.history_[0]) and not hasattr(model, "best_epoch_")


def test_auto_is_on_from_the_threshold_and_with_an_eval_set():
    X, y = data(n_rows=session.AUTO_EARLY_STOPPING_ROWS)
    model = fastafm.FMRegressor(n_epochs=3, **FM_KW).fit(X, y)
    assert model.do_early_stopping_ is True and "eval_rmse" in model.history_[0]
    X_small, y_small = data(n_rows=session.AUTO_EARLY_STOPPING_ROWS - 1)
    assert fastafm.FMRegressor(n_epochs=1, **FM_KW).fit(X_small, y_small).do_early_stopping_ is False
    X, y = data()
    with_eval = fastafm.FMRegressor(n_epochs=3, **FM_KW).fit(X[:1000], y[:1000], eval_set=(X[1000:], y[1000:]))
    assert with_eval.do_early_stopping_ is True


def test_true_and_false_force_it():
    X, y = data()
    on = fastafm.FMRegressor(n_epochs=3, early_stopping=True, **FM_KW).fit(X, y)
    assert on.do_early_stopping_ and "eval_rmse" in on.history_[0]
    off = fastafm.FMRegressor(n_epochs=6, early_stopping=False, n_iter_no_change=1, **FM_KW)
    off.fit(X[:1000], y[:1000], eval_set=(X[1000:], y[1000:]))
    assert off.do_early_stopping_ is False and len(off.history_) == 6  # evaluated, never stopped
    assert off.validation_score_.shape == (6,)


def overfitting(classification=False):
    X, y = fastafm.make_planted(n_rows=1500, n_fields=5, cardinality=8, planted_pairs=((0, 1), (2, 3)),
                                noise=0.2 if classification else 0.5, classification=classification,
                                random_state=3)[:2]
    return X, y


@pytest.mark.parametrize("cls", [fastafm.AFMRegressor, fastafm.AFMClassifier])
def test_the_held_out_split_is_what_early_stopping_watches_and_the_best_epoch_is_restored(cls):
    """early_stopping=True without an eval_set is training on the kept rows with the held-out rows as the
    eval_set, bit for bit; the held-out rows are never trained on; the best epoch is restored."""
    classification = cls is fastafm.AFMClassifier
    X, y = overfitting(classification)
    kw = dict(KW, learning_rate=0.02 if classification else 0.2, dropout=0.0, batch_size=16, pretrain=None,
              validation_fraction=0.8, n_epochs=40, linear_fallback=False)  # the epoch's own parameters
    model = cls(early_stopping=True, **kw).fit(X, y)
    keep, held = split_of(X.shape[0], KW["random_state"], (y > 0).astype(float) if classification else None, 0.8)
    assert np.intersect1d(keep, held).size == 0 and keep.size + held.size == X.shape[0]
    explicit = cls(**kw).fit(X[keep], y[keep], eval_set=(X[held], y[held]))
    assert same_params(model, explicit) and timeless(model.history_) == timeless(explicit.history_)
    assert 1 <= model.best_epoch_ < len(model.history_) < 40  # it stopped, before the epoch limit
    assert len(model.history_) == model.best_epoch_ + kw.get("n_iter_no_change", 2)
    np.testing.assert_array_equal(model.validation_score_, [r[f"eval_{'logloss' if classification else 'rmse'}"]
                                                            for r in model.history_])
    ref = cls(**dict(kw, n_epochs=model.best_epoch_), early_stopping=False).fit(X[keep], y[keep])
    assert same_params(model, ref)  # the parameters (and optimizer state) of the best epoch
    for name, arr in slot_arrays(ref).items():
        np.testing.assert_array_equal(slot_arrays(model)[name], arr, err_msg=name)


def test_the_split_is_seeded_stratified_and_disjoint():
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.2).astype(float)
    keep, held = split_of(5000, 3, y)
    assert np.intersect1d(keep, held).size == 0 and np.union1d(keep, held).size == 5000
    assert held.size == 500
    assert np.sum(y[held]) == round(0.1 * np.sum(y))  # each class in proportion
    again_keep, again_held = split_of(5000, 3, y)
    np.testing.assert_array_equal(held, again_held)
    assert not np.array_equal(held, split_of(5000, 4, y)[1])
    # Through the estimator: the same seed gives the same split and fit, another seed another split.
    X, yy = data(n_rows=600, classification=True)
    a = fastafm.FMClassifier(n_epochs=2, early_stopping=True, **FM_KW).fit(X, yy)
    b = fastafm.FMClassifier(n_epochs=2, early_stopping=True, **FM_KW).fit(X, yy)
    assert same_params(a, b) and a.validation_score_.tolist() == b.validation_score_.tolist()
    c = fastafm.FMClassifier(n_epochs=2, early_stopping=True, **dict(FM_KW, random_state=6)).fit(X, yy)
    assert c.validation_score_.tolist() != a.validation_score_.tolist()


def test_an_integer_seed_initialises_as_without_the_split():
    """The split has its own stream of an integer random_state: the initial parameters are those of the same
    seed without early stopping — but w0, which starts at the mean of the rows trained (the held-out rows
    excluded: fastafm.objectives.*.initial_bias)."""
    X, y = data()
    a = fastafm.FMRegressor(n_epochs=0, early_stopping=True, **FM_KW).fit(X, y)
    b = fastafm.FMRegressor(n_epochs=0, early_stopping=False, **FM_KW).fit(X, y)
    pa, pb = a.get_model_params(), b.get_model_params()
    assert all(np.array_equal(pa[name], pb[name]) for name in pa if name != "w0")
    assert pb["w0"][0] == np.float32(np.mean(y.astype(np.float32).astype(np.float64)))
    assert pa["w0"][0] != pb["w0"][0]


def test_too_few_rows_to_hold_out_is_an_error():
    X, y = data(n_rows=4)
    with pytest.raises(ValueError, match="validation_fraction"):
        fastafm.FMRegressor(early_stopping=True, **FM_KW).fit(X, y)


# ---------------------------------------------------------------------------------------------- n_iter_no_change, tol
def drive(scores, n_iter_no_change, tol, metric="rmse"):
    """(epochs run, best epoch) of EarlyStopping over a sequence of monitored scores."""
    spec = _registry.kind(fastafm.FMRegressor).spec(dict(embedding_dim=2, attention_dim=1, attention=False), 3)
    state = init_state(spec, "adagrad", 0.01, 0)
    stop = EarlyStopping(metric, n_iter_no_change, tol)
    for epoch, score in enumerate(scores, 1):
        if stop.on_epoch_end(state, {"epoch": epoch, f"eval_{metric}": score}):
            return epoch, stop.result()[0]
    return len(scores), stop.result()[0]


def test_n_iter_no_change_and_tol():
    scores = [1.0, 0.9, 0.95, 0.89, 0.93, 0.94, 0.5]
    assert drive(scores, 2, 0.0) == (6, 4)   # 0.89 at epoch 4 is the last improvement, two more epochs
    assert drive(scores, 3, 0.0) == (7, 7)   # three epochs of patience reach the 0.5
    assert drive(scores, 2, 0.02) == (4, 2)  # 0.89 improves on 0.9 by less than tol: not counted
    assert drive(scores, 1, 0.0) == (3, 2)
    assert drive([0.6, 0.7, 0.65, 0.8], 2, 0.0, metric="auc") == (4, 4)  # auc: higher is better
    assert drive([0.6, 0.7, 0.705, 0.706], 2, 0.01, metric="auc") == (4, 2)
    assert drive([float("nan")] * 5, 2, 0.0) == (2, None)  # nothing finite to keep: stop, no best


def test_a_large_tol_stops_after_n_iter_no_change_epochs():
    X, y = data()
    model = fastafm.FMRegressor(n_epochs=20, n_iter_no_change=3, tol=1e9, **FM_KW)
    model.fit(X[:1000], y[:1000], eval_set=(X[1000:], y[1000:]))
    assert len(model.history_) == 4 and model.best_epoch_ == 1


def test_partial_fit_never_stops_early():
    X, y = data(n_rows=session.AUTO_EARLY_STOPPING_ROWS)
    model = fastafm.FMRegressor(early_stopping=True, **FM_KW).partial_fit(X, y)
    assert len(model.history_) == 1 and "eval_rmse" not in model.history_[0]
    model.partial_fit(X, y)
    assert model.n_epochs_done_ == 2


# ---------------------------------------------------------------------------------------------- pretrain
def test_pretrain_none_is_the_fit_as_before():
    """pretrain=None, early_stopping=False: exactly init_state and the engine's epochs, nothing drawn or
    trained besides (tools/fingerprint_fits.py compares it with the version before the change)."""
    X, y = data()
    model = fastafm.AFMRegressor(n_epochs=3, pretrain=None, early_stopping=False, **KW).fit(X, y)
    kind = _registry.kind(fastafm.AFMRegressor)
    values = model.get_params()
    state = init_state(kind.spec(values, X.shape[1]), "adagrad", 0.01, KW["random_state"])
    state.params["w0"][0] = np.mean(y.astype(np.float32), dtype=np.float64)  # the fit starts from the average
    settings = core_settings(values, "squared", True, True)
    rows = InMemoryRows(X, y.astype(np.float32))
    _engine.train(_engine.LocalEpochs(state, rows, settings), 3)
    for name, arr in state.params.items():
        np.testing.assert_array_equal(model.get_model_params()[name], arr, err_msg=name)
    assert model.pretrain_history_ is None


@pytest.mark.parametrize("cls, fm_cls", [(fastafm.AFMRegressor, fastafm.FMRegressor),
                                         (fastafm.AFMClassifier, fastafm.FMClassifier)])
def test_pretrain_fm_is_an_fm_fit_then_a_warm_start(cls, fm_cls):
    """pretrain="fm" (the default) is: an FM at half the learning rate with the same settings and early
    stopping on the same validation rows, then AFM warm-started from it with init=."""
    X, y = data(classification=cls is fastafm.AFMClassifier)
    eval_set = (X[1000:], y[1000:])
    model = cls(n_epochs=8, verbose=0, **KW).fit(X[:1000], y[:1000], eval_set=eval_set)
    fm = fm_cls(n_epochs=8, learning_rate=0.05, **FM_KW).fit(X[:1000], y[:1000], eval_set=eval_set)
    warm = cls(n_epochs=8, pretrain=None, **KW).fit(X[:1000], y[:1000], eval_set=eval_set, init=fm)
    assert same_params(model, warm)
    assert timeless(model.pretrain_history_) == timeless(fm.history_)
    # On the held-out split (no eval_set), the FM early-stops on the same held-out rows.
    on_split = cls(n_epochs=4, early_stopping=True, **KW).fit(X, y)
    assert len(on_split.pretrain_history_) >= 1 and "eval_" + ("logloss" if fm_cls is fastafm.FMClassifier
                                                               else "rmse") in on_split.pretrain_history_[0]


def test_init_overrides_pretrain():
    X, y = data()
    fm = fastafm.FMRegressor(n_epochs=2, **FM_KW).fit(X, y)
    a = fastafm.AFMRegressor(n_epochs=2, pretrain="fm", **KW).fit(X, y, init=fm)
    b = fastafm.AFMRegressor(n_epochs=2, pretrain=None, **KW).fit(X, y, init=fm)
    assert same_params(a, b) and a.pretrain_history_ is None


def test_pretrain_prints_its_own_lines(capsys):
    X, y = data()
    fastafm.AFMRegressor(n_epochs=2, early_stopping=False, verbose=1, **KW).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pretraining FMRegressor (the warm start of AFMRegressor)"
    assert [ln.split()[:3] for ln in out[1:3]] == [["fm", "epoch", "1"], ["fm", "epoch", "2"]]
    assert out[3] == "training AFMRegressor from the pretrained FM" and out[4].startswith("epoch   1")


def test_gridsearch_toggles_pretrain():
    from sklearn.model_selection import GridSearchCV

    X, y = data(n_rows=600)
    search = GridSearchCV(fastafm.AFMRegressor(n_epochs=2, **KW), {"pretrain": ["fm", None]}, cv=2,
                          scoring="neg_root_mean_squared_error").fit(X, y)
    assert [p["pretrain"] for p in search.cv_results_["params"]] == ["fm", None]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert (best.pretrain_history_ is None) == (best.pretrain is None)


def test_fm_estimators_have_no_pretrain():
    assert "pretrain" not in fastafm.FMRegressor().get_params()
    assert fastafm.AFMClassifier().get_params()["pretrain"] == "fm"


# ---------------------------------------------------------------------------------------------- streaming
def test_a_cache_holds_out_a_seeded_subset_of_every_blocks_rows(tmp_path):
    X, y = data(n_rows=700)
    cache = fastafm.convert((X, y.astype(np.float32)), tmp_path / "s.cache", block_rows=100)
    seen = []
    original = _engine.CoreTrainer.run

    def spy(self, indptr, indices, values, y_block, order, seed, epoch, progress=None, weights=None):
        seen.append((indptr.shape[0] - 1, order.copy()))
        return original(self, indptr, indices, values, y_block, order, seed, epoch, progress=progress, weights=weights)

    kw = dict(FM_KW, n_epochs=1, early_stopping=True, validation_fraction=0.3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_engine.CoreTrainer, "run", spy)
        model = fastafm.FMRegressor(**kw).fit(cache)
    trained = sum(order.shape[0] for _, order in seen)
    assert len(seen) == 7 and 700 * 0.5 < trained < 700 * 0.9  # every block, a seeded share of its rows kept
    assert all(np.unique(order).shape[0] == order.shape[0] for _, order in seen)
    assert "eval_rmse" in model.history_[0]
    again = fastafm.FMRegressor(**kw).fit(cache)
    assert same_params(model, again) and model.history_[0]["eval_rmse"] == again.history_[0]["eval_rmse"]


def test_a_cache_fit_early_stops_and_restores(tmp_path):
    X, y = overfitting()
    cache = fastafm.convert((X, y.astype(np.float32)), tmp_path / "o.cache", block_rows=200)
    model = fastafm.FMRegressor(embedding_dim=4, n_threads=1, random_state=5, learning_rate=0.2, dropout=0.0,
                                batch_size=16, n_epochs=40, early_stopping=True, validation_fraction=0.5)
    model.fit(cache)
    assert model.do_early_stopping_ and len(model.history_) == model.best_epoch_ + 2 < 40


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture()
def libfm_files(tmp_path):
    X, y = data()
    paths = []
    for name, rows in (("train", slice(0, 1000)), ("valid", slice(1000, None))):
        path = tmp_path / f"{name}.libfm"
        Xs, ys = X[rows], y[rows]
        with open(path, "w") as fh:
            for r in range(Xs.shape[0]):
                lo, hi = Xs.indptr[r], Xs.indptr[r + 1]
                fh.write(f"{ys[r]:.6f} " + " ".join(f"{i}:{v:g}" for i, v in zip(Xs.indices[lo:hi], Xs.data[lo:hi]))
                         + "\n")
        paths.append(str(path))
    return paths


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_defaults_are_the_estimators(libfm_files, tmp_path, capsys):
    train, valid = libfm_files
    path = str(tmp_path / "m.afm")
    code, out, err = run(capsys, "train", train, "--valid", valid, "--model", path, "--epochs", "3",
                         "--embedding-dim", "4", "--attention-dim", "4", "--threads", "1")
    assert code == 0, err
    assert "pretraining FMRegressor" in out and "fm epoch   1" in out and "at most 3 epochs" in out
    params = fastafm.load(path).get_params()
    defaults = fastafm.AFMRegressor().get_params()
    for name in ("early_stopping", "validation_fraction", "n_iter_no_change", "tol", "early_stopping_metric",
                 "pretrain", "learning_rate"):
        assert params[name] == defaults[name], name


def test_cli_fm_and_the_early_stopping_options(libfm_files, tmp_path, capsys):
    train, valid = libfm_files
    path = str(tmp_path / "m.fm")
    code, out, err = run(capsys, "train", train, "--model", path, "--model-type", "fm", "--epochs", "4",
                         "--embedding-dim", "4", "--threads", "1", "--early-stopping", "on",
                         "--validation-fraction", "0.2", "--n-iter-no-change", "3", "--tol", "0.001",
                         "--early-stopping-metric", "mae")
    assert code == 0, err
    model = fastafm.load(path)
    assert isinstance(model, fastafm.FMRegressor) and model.learning_rate == "auto"
    assert model.learning_rate_ == 0.05  # FM's own value for adagrad
    assert (model.early_stopping, model.validation_fraction, model.n_iter_no_change, model.tol,
            model.early_stopping_metric) == (True, 0.2, 3, 0.001, "mae")
    assert "eval_mae=" in out  # the held-out rows are evaluated without --valid
    code, out, err = run(capsys, "train", train, "--model", str(tmp_path / "n.afm"), "--epochs", "2",
                         "--embedding-dim", "4", "--attention-dim", "4", "--threads", "1", "--pretrain", "none",
                         "--early-stopping", "off", "--quiet")
    model = fastafm.load(str(tmp_path / "n.afm"))
    assert code == 0 and model.pretrain is None and model.early_stopping is False and model.n_epochs_done_ == 2


@pytest.mark.parametrize("argv, message", [
    (("--model-type", "fm", "--attention-dim", "8"), "--attention-dim does not apply to --model-type fm"),
    (("--model-type", "fm", "--pretrain", "fm"), "--pretrain does not apply"),
    (("--early-stopping-metric", "auc"), "--early-stopping-metric must be rmse or mae"),
    (("--early-stopping", "maybe"), "must be auto, on or off"),
    (("--pretrain", "afm"), "must be fm, linear+fm or none"),
    (("--n-iter-no-change", "0"), "must be >= 1"),
    (("--validation-fraction", "1"), "must be in"),
])
def test_cli_rejects_bad_options(libfm_files, tmp_path, capsys, argv, message):
    train, _ = libfm_files
    code, out, err = run(capsys, "train", train, "--model", str(tmp_path / "x.afm"), *argv)
    assert code == 2 and message in err, err
