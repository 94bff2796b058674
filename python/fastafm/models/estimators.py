"""scikit-learn style estimators: AFM and FM, each for regression (squared loss) and classification (logistic).

The four classes are thin: hyperparameters (fastafm._hyperparams), input conversion, and delegation. A fit
builds a fastafm._state.TrainingState (parameters, optimizer slots, generator, history, labels) and runs the
training engine (fastafm._engine) on it; every epoch is one call into the compiled core, which runs every
mini-batch in C++ with the GIL released. FM and AFM are siblings over one base: FM fixes uniform pooling
and p = 1 (fastafm._registry.FM_FIXED), AFM pools by attention (or uniformly with attention=False).
"""
from __future__ import annotations

import functools
import threading
import warnings

import numpy as np

from .. import _core
from . import registry as _registry
from .. import metrics
from .. import reference
from ..training.callbacks import EarlyStopping, Evaluation, History, best_of, check_metric
from .._compat import BaseEstimator, ClassifierMixin, RegressorMixin, fitted_state
from ..training.engine import train
from .hyperparams import (core_settings, pretrain_learning_rate, resolve_learning_rate, store,
                           validate)
from ..training.state import TrainingState, init_state
from ..training.rows import CacheRows, InMemoryRows
from ..objectives.labels import (class_cache_targets, class_targets, eval_targets, regression_cache_targets,
                       regression_targets)
from ..data.validation import as_csr, check_kernel_memory, check_memory, check_threads, csr_arrays
from .warm_start import warm_start_params
from ..training.weights import cache_class_weights, check_sample_weight, class_row_weights, combine
from ..data.cache import as_cache
from .persistence import save_model

PARAM_NAMES = reference.PARAM_NAMES  # ("w0", "w", "V", "W", "b", "h", "p")

#: early_stopping="auto" turns early stopping on from this many training rows (scikit-learn's
#: HistGradientBoosting threshold), or whenever an eval_set is given.
AUTO_EARLY_STOPPING_ROWS = 10_000
_SPLIT_STREAM = 0x5EED_5EA1  # the validation split's own stream of an integer random_state


def _split_generator(random_state) -> np.random.Generator:
    """The generator of the validation split: for an integer random_state its own stream (so the model's
    initialisation and shuffling draw what they draw without the split), for a Generator or RandomState one
    draw from it, None: fresh entropy."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        return np.random.default_rng([int(random_state), _SPLIT_STREAM])
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return np.random.default_rng(int(random_state.integers(0, 2**63 - 1)))
    return np.random.default_rng()

# fit/partial_fit of one estimator may not run in two threads at once (the core updates the parameter arrays
# in place); the same thread may re-enter. Maps id(estimator) -> [owner thread ident, depth].
_FITTING: dict = {}
_FITTING_GUARD = threading.Lock()


def _exclusive(method):
    """Refuse a second concurrent fit/partial_fit of the same estimator with a RuntimeError."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        me = threading.get_ident()
        with _FITTING_GUARD:
            entry = _FITTING.get(id(self))
            if entry is not None and entry[0] != me:
                raise RuntimeError(
                    f"{type(self).__name__}.{method.__name__}: this estimator is already being fitted in another "
                    "thread; fit and partial_fit of one estimator must not run concurrently (fit a "
                    "sklearn.base.clone(...) of it in each thread instead)"
                )
            if entry is None:
                _FITTING[id(self)] = [me, 1]
            else:
                entry[1] += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            with _FITTING_GUARD:
                entry = _FITTING[id(self)]
                entry[1] -= 1
                if entry[1] == 0:
                    del _FITTING[id(self)]

    return wrapper



class _Base(BaseEstimator):
    """What the four estimators share: fit/partial_fit through the engine, prediction, interpretation."""

    _metrics: tuple = ()  # eval metrics (the eval_ keys of history_), lower is better except auc

    # ------------------------------------------------------------------ fitted state and parameters
    def _fitted_state(self) -> TrainingState:
        return fitted_state(self)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "training_state_")

    def _state_attr(self, getter, name: str):
        if not hasattr(self, "training_state_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} before fit")
        return getter(self.training_state_)

    n_features_in_ = property(lambda self: self._state_attr(lambda s: s.spec.n_features, "n_features_in_"),
                              doc="Number of features (columns) seen in fit.")
    n_epochs_done_ = property(lambda self: self._state_attr(lambda s: s.n_epochs_done, "n_epochs_done_"),
                              doc="Epochs run (partial_fit continues with the next epoch's shuffling and dropout).")
    history_ = property(lambda self: self._state_attr(lambda s: s.history, "history_"),
                        doc="One dict per epoch run: train_loss, seconds, and eval_* metrics with an eval_set.")

    @property
    def w0_(self) -> float:
        return float(self._fitted_state().params["w0"][0])

    w_ = property(lambda self: self._fitted_state().params["w"], doc="Linear weights, shape (n_features,).")
    V_ = property(lambda self: self._fitted_state().params["V"], doc="Embeddings, shape (n_features, embedding_dim).")
    W_ = property(lambda self: self._fitted_state().params["W"],
                  doc="Attention weights, shape (attention_dim, embedding_dim).")
    b_ = property(lambda self: self._fitted_state().params["b"], doc="Attention bias, shape (attention_dim,).")
    h_ = property(lambda self: self._fitted_state().params["h"], doc="Attention projection, shape (attention_dim,).")
    p_ = property(lambda self: self._fitted_state().params["p"],
                  doc="Output projection of the pooled vector, shape (embedding_dim,).")

    def get_model_params(self) -> dict:
        """A copy of the learned parameters as a dict of float32 arrays (w0 as shape (1,))."""
        return {name: arr.copy() for name, arr in self._fitted_state().params.items()}

    @property
    def learning_rate_(self) -> float:
        """The learning rate training uses: `learning_rate`, or for "auto" the optimizer's own default
        (fastafm._hyperparams.AUTO_LEARNING_RATES; the FM of pretrain="fm" uses the FM's), divided by the
        training rows' mean non-zeros / 10 where that is above 10 (AUTO_RATE_NNZ)."""
        state = self._fitted_state()
        return resolve_learning_rate(self.learning_rate, state.optimizer, _registry.kind(type(self)).family,
                                     state.row_nnz)

    def optimizer_state(self) -> dict:
        """A copy of the optimizer's state as named slots, {slot: {parameter name: float32 array}}: {} for
        sgd, {"G": ...} (the sums of squared gradients) for adagrad, {"m": ..., "v": ..., "step": {"w": ...,
        "w0": ...}} (moments, and step counts per row of V/w and of the dense parameters) for adam
        (docs/model.md)."""
        return {slot: {name: a.copy() for name, a in arrays.items()}
                for slot, arrays in self._fitted_state().slots.items()}

    # ------------------------------------------------------------------ public API
    @_exclusive
    def fit(self, X, y=None, sample_weight=None, eval_set=None, init=None):
        """Train from scratch for at most `n_epochs` epochs.

        Parameters
        ----------
        X : scipy.sparse matrix or array-like, shape (n_rows, n_features), or a fastafm.CacheFile
            Rows of feature values (CSR preferred; dense zeros are skipped). A CacheFile (or an os.PathLike
            naming one) written by `fastafm.convert` is streamed from disk in shuffled blocks, never loaded
            whole (docs/cache.md); its labels are in the file.
        y : array-like, shape (n_rows,)
            Regression targets, or two class labels for the classifier; None (and only None) with a cache.
        sample_weight : array-like, shape (n_rows,), optional
            Weight of each row's loss (finite, >= 0, not all 0; None: all 1), multiplied with the classifiers'
            `class_weight`. How it meets the mini-batch sum and L2: docs/model.md ("Sample weights"). With a
            validation_fraction split the held-out rows keep their weights for the evaluation. None with a
            cache: its weights are in the file (`fastafm.convert(..., weights=...)`).
        eval_set : tuple (X_eval, y_eval) or (X_eval, y_eval, sample_weight_eval), or a list of one, optional
            Evaluated after every epoch (weighted metrics with a third element); the metrics go to `history_`. With `early_stopping="auto"` (the
            default) or True, early stopping watches `early_stopping_metric` on it; without it, early stopping
            holds out `validation_fraction` of the training rows instead (docs/accuracy.md).
        init : fitted FMRegressor/FMClassifier (or AFM estimator), or dict with "w0", "w", "V", optional
            Warm start, as in the AFM paper: w0, w and V are copied from this model after the usual
            initialisation (the attention network is initialised as usual and p = 1; the optimizer state
            starts fresh). Its n_features and embedding_dim must match this estimator's. It overrides
            `pretrain` (no FM is pretrained when init is given).
        """
        kind = _registry.kind(type(self))
        values = self._validated(kind)
        metric = check_metric(self.early_stopping_metric, self._metrics, type(self).__name__)
        rows, n_features, labels = self._rows(X, y, fitting=True, sample_weight=sample_weight)
        row_nnz = rows.mean_nnz  # of all the rows given, before a hold-out (the Dask estimators' too)
        evaluation = self._prepare_eval_set(eval_set, n_features, labels.get("classes"))
        stopping = self._early_stopping_on(rows.n_rows, evaluation is not None)
        if stopping and evaluation is None:
            rows, evaluation = self._hold_out(rows, kind, labels)
        init_params = None if init is None else warm_start_params(init, n_features, int(self.embedding_dim))
        pretrain_history = None
        if init is None and values.get("pretrain") == "fm":
            fm_state = self._pretrain_fm(kind, values, rows, n_features, labels, evaluation, stopping, metric,
                                         row_nnz)
            init_params = warm_start_params(fm_state.params, n_features, int(self.embedding_dim))
            pretrain_history = fm_state.history
            del fm_state  # its arrays live on in init_params only until they are copied below
        state = self._new_state(kind, values, n_features, labels, row_nnz)
        if init_params is not None:
            for name, arr in init_params.items():
                np.copyto(state.params[name], arr)
            del init_params
        if pretrain_history is not None and self.verbose:
            print(f"training {type(self).__name__} from the pretrained FM", flush=True)
        best = self._train_new(state, self._settings(kind, state), rows, evaluation, stopping, metric)
        self.do_early_stopping_ = stopping
        if "pretrain" in values:
            self.pretrain_history_ = pretrain_history
        for name in ("best_epoch_", "best_score_", "validation_score_"):  # an earlier fit's
            self.__dict__.pop(name, None)
        if evaluation is not None:
            self.best_epoch_, self.best_score_ = best
            self.validation_score_ = np.array([r[f"eval_{metric}"] for r in state.history], dtype=np.float64)
        return self

    def _early_stopping_on(self, n_rows: int, has_eval_set: bool) -> bool:
        """early_stopping resolved: "auto" is on with an eval_set or at least AUTO_EARLY_STOPPING_ROWS rows."""
        if isinstance(self.early_stopping, str):  # "auto"
            return has_eval_set or n_rows >= AUTO_EARLY_STOPPING_ROWS
        return bool(self.early_stopping)

    def _hold_out(self, rows, kind, labels):
        """(the rows left to train on, the held-out (X, y) to evaluate): a seeded split of `validation_fraction`
        of the training rows, stratified by class for a classifier in memory; from a cache, a seeded subset of
        every block's rows (fastafm._streaming)."""
        rng = _split_generator(self.random_state)
        fraction = float(self.validation_fraction)
        if isinstance(rows, CacheRows):
            rows, X_val, y_val, w_val = rows.hold_out(fraction, int(rng.integers(0, 2**63 - 1)))
            return rows, (X_val, y_val, w_val)
        rows, X_val, y_enc, w_val = rows.hold_out(fraction, rng, stratify=kind.classifier)
        if "label_range" in labels:  # the range of the rows trained on (a cache: its header's, of all rows)
            labels["label_range"] = (float(rows.targets.min()), float(rows.targets.max()))
        if kind.classifier:  # the encoded +-1 targets back to the labels the evaluation compares
            return rows, (X_val, labels["classes"][(y_enc > 0).astype(int)], w_val)
        return rows, (X_val, y_enc, w_val)

    def _pretrain_fm(self, kind, values, rows, n_features, labels, evaluation, stopping, metric,
                     row_nnz) -> TrainingState:
        """The training state of an FM fitted on `rows` (the paper's warm start of AFM): this estimator's
        embedding_dim, dropout, l2, optimizer, batch size, epochs, seed and early stopping on the same
        evaluation rows; the learning rate "auto" (the FM's own), or a given one scaled by the ratio of the
        FM's and the AFM's defaults for the optimizer."""
        fm = _registry.sibling(kind, "fm")
        fm_values = {name: values[name] for name in fm.signature.names}
        fm_values["learning_rate"] = pretrain_learning_rate(values["learning_rate"], self.optimizer)
        state = init_state(fm.spec(fm_values, n_features), self.optimizer, self.init_std, self.random_state)
        state.classes, state.label_range = labels.get("classes"), labels.get("label_range")
        state.row_nnz = row_nnz
        if self.verbose:
            print(f"pretraining {fm.name} (the warm start of {type(self).__name__})", flush=True)
        settings = core_settings(fm.values(fm_values), state.spec.loss, state.spec.attention,
                                 state.spec.learn_projection, family=fm.family, row_nnz=row_nnz)
        try:
            self._train_new(state, settings, rows, evaluation, stopping, metric, prefix="fm ")
        except FloatingPointError as exc:
            raise FloatingPointError(f"pretraining the FM (pretrain='fm'): {exc}; {type(self).__name__} was not "
                                     "trained (pretrain=None skips the FM)") from exc
        return state

    def _train_new(self, state, settings, rows, evaluation, stopping, metric, prefix=""):
        """`n_epochs` epochs of the engine on `state` with evaluation, history and (stopping) early stopping;
        returns (best epoch, best score) of `metric` ((None, nan) without an evaluation)."""
        callbacks: list = []
        if evaluation is not None:
            callbacks.append(Evaluation(lambda: self._evaluate(state, *evaluation)))
        callbacks.append(History(self.verbose, prefix))
        stopper = None
        if stopping:
            stopper = EarlyStopping(metric, self.n_iter_no_change, self.tol, self.verbose, prefix)
            callbacks.append(stopper)
        train(state, rows, int(self.n_epochs), settings, callbacks, self.verbose)
        if stopper is not None:
            return stopper.result()
        return best_of(state.history, metric) if evaluation is not None else (None, float("nan"))

    @_exclusive
    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """One more epoch over (X, y), continuing from the current parameters and optimizer state
        (initialising them first if the model is not fitted yet). `classes` (classifier only, optional): the
        two labels, for a first batch that may hold only one of them. X may be a CacheFile (y None): one
        epoch streamed from it. `sample_weight`: as for fit (a class_weight dict applies too; "balanced"
        is refused, one batch's class counts are not the data's)."""
        kind = _registry.kind(type(self))
        if not hasattr(self, "training_state_"):
            values = self._validated(kind)
            rows, n_features, labels = self._rows(X, y, fitting=True, classes=classes, sample_weight=sample_weight,
                                                  partial=True)
            self._new_state(kind, values, n_features, labels, rows.mean_nnz)
        else:
            if kind.classifier:
                validate({"class_weight": self.class_weight}, ("class_weight",))
            rows, _, _ = self._rows(X, y, fitting=False, classes=classes, sample_weight=sample_weight, partial=True)
        state = self.training_state_
        train(state, rows, 1, self._settings(kind, state), [History(self.verbose)], self.verbose)
        return self

    def _score_inputs(self, X, sample_weight):
        """(CSR X, float64 weights or None) for score: the weights checked as fit checks them (finite, >= 0,
        not all 0), so that score refuses what fit refuses (scikit-learn's score takes negative weights)."""
        X = self._predict_rows(X, self._fitted_state())
        w = check_sample_weight(sample_weight, X.shape[0])
        return X, None if w is None else np.broadcast_to(np.asarray(sample_weight, np.float64), w.shape)

    def decision_function(self, X) -> np.ndarray:
        """Raw model output y(x) (the logit for the classifier), float64 of shape (n_rows,)."""
        return self._decision(self._fitted_state(), X)

    def _decision(self, state: TrainingState, X) -> np.ndarray:
        X = self._predict_rows(X, state)
        out = _core.predict(state.params, *csr_arrays(X), state.spec.attention, self._threads())
        if not np.isfinite(out).all():  # finite model and input, but float32 overflowed: say so, never silently
            warnings.warn(f"{int(np.count_nonzero(~np.isfinite(out)))} of {out.shape[0]} outputs are NaN or infinite "
                          "(float32 overflow: feature values too large for this model?)", RuntimeWarning, stacklevel=2)
        return out.astype(np.float64)

    def attention_weights(self, X):
        """Attention weight of every pair of non-zeros of every row.

        Returns
        -------
        pair_indptr : int64 array (n_rows + 1,)
            Row r's pairs are at [pair_indptr[r], pair_indptr[r+1]).
        pairs : int32 array (n_pairs, 2)
            The feature ids (i_r, i_s) of each pair, r < s in the row's storage order.
        weights : float32 array (n_pairs,)
            a_rs; they sum to 1 over each row with at least two non-zeros.

        The output is O(pairs): 12 bytes per pair (a row of m non-zeros has m(m-1)/2), checked against the
        available memory first. Computing it needs no more: a long row's weights are written tile by tile.
        """
        state = self._fitted_state()
        X = self._predict_rows(X, state)
        nnz = np.diff(X.indptr).astype(np.int64)  # int32 indptr: m (m - 1) overflows past 46,341 non-zeros
        counts = nnz * (nnz - 1) // 2
        pair_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Output: weights (4 bytes) and pairs (8) per pair, plus index temporaries while the pairs are built.
        check_memory(int(pair_indptr[-1]) * 36, f"the attention weights of {int(pair_indptr[-1])} feature pairs")
        weights = _core.pair_attention(state.params, *csr_arrays(X), pair_indptr, state.spec.attention,
                                       self._threads())
        pairs = np.empty((int(pair_indptr[-1]), 2), dtype=np.int32)
        # Rows of equal length share one triu pattern, so the pairs are built per length, not per row.
        for m in np.unique(nnz[nnz >= 2]):
            rows = np.flatnonzero(nnz == m)
            a, b = np.triu_indices(int(m), k=1)
            starts = X.indptr[rows][:, None]
            out = (pair_indptr[rows][:, None] + np.arange(a.shape[0])).ravel()
            pairs[out, 0] = X.indices[(starts + a).ravel()]
            pairs[out, 1] = X.indices[(starts + b).ravel()]
        return pair_indptr, pairs, weights

    def pair_attention(self, X):
        """The attention of every row: its pairs (feature i, feature j) and their weights a_ij.

        It cannot be called `attention`: that name is the boolean hyperparameter of AFMRegressor/AFMClassifier
        (scikit-learn keeps hyperparameters as attributes of the same name, which would shadow a method).

        Returns
        -------
        fastafm.interpret.PairAttention
            A sequence with one entry per row of X: `result[r]` is `(pairs, weights)`, pairs an int32 array
            (P_r, 2) of feature ids (r < s in the row's storage order) and weights the float32 a_ij (P_r,),
            summing to 1 over a row with at least two non-zeros. The flat arrays are `result.indptr`,
            `result.pairs`, `result.weights` (what `attention_weights(X)` returns). For FMRegressor and
            FMClassifier every weight is 1 (FM weighs all pairs equally). Like `attention_weights`, the
            result is O(pairs) in size (12 bytes per pair), unlike predict, whose memory is linear in a row's
            non-zeros.
        """
        from ..interpret import PairAttention

        return PairAttention(*self.attention_weights(X))

    def save(self, path) -> None:
        """Write the fitted model to `path` (see fastafm.persistence for the format)."""
        save_model(self, path)

    # ------------------------------------------------------------------ internals
    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        return tags

    def _validated(self, kind) -> dict:
        """The hyperparameters, checked against the table (fastafm._hyperparams)."""
        values = {name: getattr(self, name) for name in kind.signature.names}
        validate(values, kind.signature.names)
        return values

    def _new_state(self, kind, values: dict, n_features: int, labels: dict, row_nnz: float) -> TrainingState:
        state = init_state(kind.spec(values, n_features), self.optimizer, self.init_std, self.random_state)
        state.classes = labels.get("classes")
        state.label_range = labels.get("label_range")
        state.row_nnz = float(row_nnz)
        self.training_state_ = state
        return state

    def _settings(self, kind, state: TrainingState) -> dict:
        """The core's settings: the current hyperparameters, with what the model spec and the state fix."""
        values = kind.values({name: getattr(self, name) for name in kind.signature.names})
        values["optimizer"] = state.optimizer  # the slots the state holds (and the "auto" learning rate's)
        return core_settings(values, state.spec.loss, state.spec.attention, state.spec.learn_projection,
                             family=kind.family, row_nnz=state.row_nnz)

    def _threads(self) -> int:
        """n_threads checked on every kernel call, not only in fit: set_params may change it after fitting (a
        None or 2.7 would otherwise reach int() and fail unnamed, or be truncated)."""
        check_threads(self.n_threads)
        return int(self.n_threads)

    def _predict_rows(self, X, state: TrainingState):
        X = as_csr(X, n_features=state.spec.n_features, owner=type(self).__name__)
        check_kernel_memory(X, state.spec.embedding_dim, state.spec.attention_dim, self._threads(),
                            attention=state.spec.attention)
        return X

    def _rows(self, X, y, fitting, classes=None, sample_weight=None, partial=False):
        """The training rows of fit/partial_fit: (row source, n_features, label facts), from a CSR-able X and
        its y (and sample_weight, times the class weights) or from a cache (y None, its own weights). Not
        fitting: X must have the fitted model's width."""
        cache = as_cache(X)
        if cache is None:
            if fitting:
                X = as_csr(X)
            else:
                X = as_csr(X, n_features=self.n_features_in_, owner=type(self).__name__)
            y_enc, labels = self._targets(y, X.shape[0], fitting, classes)
            weights = check_sample_weight(sample_weight, X.shape[0])
            if getattr(self, "class_weight", None) is not None:
                found = labels["classes"] if fitting else self.classes_
                row_labels = np.asarray(found)[(y_enc > 0).astype(int)]
                # The product in float64 from the weights as given, rounded to float32 once.
                given = None if weights is None else np.broadcast_to(np.asarray(sample_weight, np.float64),
                                                                     weights.shape)
                weights = combine(given, class_row_weights(self.class_weight, row_labels, found, partial))
            return InMemoryRows(X, y_enc, weights), X.shape[1], labels
        if y is not None:
            raise ValueError("y must be None when X is a CacheFile: the labels are read from the cache")
        if sample_weight is not None:
            raise ValueError("sample_weight must be None when X is a CacheFile: a cache's weights are stored in it "
                             "(fastafm.convert(..., weights=...))")

        if cache.n_rows == 0:
            raise ValueError(f"{cache.path}: the cache has 0 rows; at least one row is required")
        if cache.n_features == 0:
            raise ValueError(f"{cache.path}: the cache has 0 feature(s) while a minimum of 1 is required.")
        if not fitting and cache.n_features != self.n_features_in_:
            raise ValueError(f"{cache.path} has {cache.n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        encode, labels = self._cache_targets(cache, fitting, classes)
        class_weights = None
        if getattr(self, "class_weight", None) is not None:
            found = labels["classes"] if fitting else self.classes_
            class_weights = cache_class_weights(self.class_weight, cache, found, partial)
        return CacheRows(cache, encode, class_weights=class_weights), cache.n_features, labels

    def _prepare_eval_set(self, eval_set, n_features, classes=None):
        if eval_set is None:
            return None
        if isinstance(eval_set, list):
            if len(eval_set) != 1:
                raise ValueError("eval_set must be one (X, y) or (X, y, sample_weight) tuple or a list holding one")
            eval_set = eval_set[0]
        if not isinstance(eval_set, tuple) or len(eval_set) not in (2, 3):
            raise ValueError("eval_set must be a tuple (X_eval, y_eval) or (X_eval, y_eval, sample_weight_eval)")
        X_eval = as_csr(eval_set[0], name="eval_set X", n_features=n_features, owner=type(self).__name__)
        # regression targets, or labels of the fitted classes (strings too; an unknown label cannot be scored)
        y_eval = eval_targets(eval_set[1], X_eval.shape[0], classes)
        w_eval = None if len(eval_set) == 2 else check_sample_weight(eval_set[2], X_eval.shape[0],
                                                                      name="eval_set sample_weight")
        return X_eval, y_eval, w_eval


class _AFM(_Base):
    """AFM: attention pooling over the pairs (uniform with attention=False); see AFMRegressor."""

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        pretrain="fm",
    ):
        store(self, locals())


class _FM(_Base):
    """FM (Rendle 2010), the AFM paper's baseline, on the same core: uniform pooling (every pair weight 1,
    computed in O(k·nnz) by the sum-of-squares identity) with the projection p fixed at 1, so the pair term is
    exactly sum_{i<j} <v_i, v_j> x_i x_j. The attention network is unused, kept at its smallest shape."""

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
    ):
        store(self, locals())


class _Regression(_Base):
    """Squared loss: float targets, predict = decision_function, eval RMSE (clipped) and MAE."""

    _metrics = ("rmse", "mae")

    label_range_ = property(lambda self: self._state_attr(lambda s: _present(s.label_range, "label_range_"),
                                                          "label_range_"),
                            doc="Training label range, used to clip predictions in eval RMSE.")

    def _targets(self, y, n_rows, fitting, classes):
        return regression_targets(y, n_rows, fitting, classes, type(self).__name__)

    def _cache_targets(self, cache, fitting, classes):
        return regression_cache_targets(cache, fitting, classes, type(self).__name__)

    def predict(self, X) -> np.ndarray:
        """Predicted values, float64 of shape (n_rows,)."""
        return self.decision_function(X)

    def score(self, X, y, sample_weight=None) -> float:
        """R² of the predictions (scikit-learn's r2_score), rows weighted by `sample_weight`."""
        X, w = self._score_inputs(X, sample_weight)
        return super().score(X, y, sample_weight=w)

    def _evaluate(self, state, X_eval, y_eval, w_eval=None):
        pred = self._decision(state, X_eval)
        return {"eval_rmse": metrics.rmse(y_eval, pred, clip=state.label_range, sample_weight=w_eval),
                "eval_mae": metrics.mae(y_eval, pred, sample_weight=w_eval)}


class _Classification(_Base):
    """Logistic loss on two labels (any two values; classes_[1] is the positive class)."""

    _metrics = ("logloss", "auc")

    classes_ = property(lambda self: self._state_attr(lambda s: _present(s.classes, "classes_"), "classes_"),
                        doc="The two class labels, sorted; classes_[1] is the positive class.")

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _targets(self, y, n_rows, fitting, classes):
        fitted = None if fitting else self.classes_
        return class_targets(y, n_rows, fitting, classes, fitted, type(self).__name__)

    def _cache_targets(self, cache, fitting, classes):
        fitted = None if fitting else self.classes_
        return class_cache_targets(cache, fitting, classes, fitted, type(self).__name__)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_rows, 2), columns in the order of `classes_`."""
        return _probabilities(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        """Predicted class labels."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy (scikit-learn's accuracy_score), rows weighted by `sample_weight`."""
        X, w = self._score_inputs(X, sample_weight)
        return super().score(X, y, sample_weight=w)

    def _evaluate(self, state, X_eval, y_eval, w_eval=None):
        z = self._decision(state, X_eval)
        y01 = (np.asarray(y_eval) == state.classes[1]).astype(np.float64)
        return {"eval_logloss": metrics.log_loss(y01, _probabilities(z)[:, 1], sample_weight=w_eval),
                "eval_auc": metrics.roc_auc(y01, z, sample_weight=w_eval)}


def _probabilities(z: np.ndarray) -> np.ndarray:
    """(1 - sigmoid(z), sigmoid(z)) without overflow."""
    p1 = np.empty_like(z)
    pos = z >= 0
    p1[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    p1[~pos] = ez / (1.0 + ez)
    return np.column_stack([1.0 - p1, p1])


def _present(value, name: str):
    if value is None:
        raise AttributeError(name)
    return value


class AFMRegressor(_Regression, RegressorMixin, _AFM):
    """Attentional Factorization Machine for regression (squared loss, as in Xiao et al. 2017).

    Parameters
    ----------
    embedding_dim : int, default 64
        Size k of the feature embeddings (rows of V).
    attention_dim : int, default 64
        Size t of the attention network's hidden layer.
    dropout : float in [0, 1), default 0.5
        Drop ratio on the pooled pair-wise interaction layer during training (never at prediction).
    attention_l2 : float, default 2.0
        L2 strength λ on the attention weights W, added once per mini-batch (the paper's λ). Without it the
        attention network overfits within a few epochs on data like Frappe (docs/accuracy.md).
    l2 : float, default 0.0
        L2 strength on the rows of V and w touched by a mini-batch (once per batch: frequent ids pay most).
    frequency_l2 : float, default 1.0
        L2 on V and w shared out by frequency: per epoch feature i pays frequency_l2 / (2 n_i) times
        ||V[i]||^2 + w[i]^2, n_i its occurrences in the training rows, so rare ids are shrunk and frequent ones
        barely (docs/model.md; chosen by measurement, docs/accuracy.md).
    learning_rate : float or "auto", default "auto"
        Step size; the batch loss is summed over rows (see docs/model.md). "auto": the optimizer's own
        default, measured on the tuning data (docs/accuracy.md): adagrad 0.1 (FM 0.05), sgd and adam as in
        fastafm._hyperparams.AUTO_LEARNING_RATES; the value used is `learning_rate_` after fit.
    optimizer : {"adagrad", "sgd", "adam"}, default "adagrad"
        Adam is lazy and sparse: a row of V and w is updated (and its moments decayed) only in the batches
        that touch it, bias-corrected by its own step count; beta1 0.9, beta2 0.999, eps 1e-8 (docs/model.md).
    batch_size : int, default 128
    n_epochs : int, default 20
    init_std : float, default 0.01
        Standard deviation of the initial embeddings.
    attention : bool, default True
        False gives FM-like uniform pooling (every pair weight 1), the paper's ablation.
    n_threads : int, default 0
        OpenMP threads for training and prediction; 0 uses all cores.
    random_state : int, numpy Generator or None
        Seeds initialisation, shuffling and dropout; with a fixed seed and n_threads a fit is bit-identical.
    verbose : int, default 0
        0: silent. 1: one line per epoch (loss, eval metrics, seconds) to stdout, and a tqdm progress bar
        within each epoch (rows/s) on stderr when stderr is a terminal. 2: the progress bar also when it is
        not (e.g. in a log file). Without tqdm installed there is no bar.
    early_stopping : "auto", True or False, default "auto"
        Early stopping, scikit-learn's way (HistGradientBoosting, MLP): after every epoch the monitored score
        is computed on the `eval_set` given to `fit`, or, without one, on `validation_fraction` of the
        training rows held out; training stops once `n_iter_no_change` epochs in a row did not improve it by
        more than `tol`, and the parameters (and optimizer state) of the best epoch are restored; `n_epochs`
        is the maximum. "auto": on when an `eval_set` is given or the training set has at least 10,000 rows.
        `partial_fit` never stops early.
    validation_fraction : float in (0, 1), default 0.1
        Share of the training rows held out for early stopping when no `eval_set` is given: a seeded split
        (from `random_state`), stratified by class for the classifiers; from a CacheFile a seeded subset of
        every block's rows (docs/cache.md). The held-out rows are not trained on.
    n_iter_no_change : int >= 1, default 2
        Epochs without improvement after which early stopping stops (docs/accuracy.md: why 2).
    tol : float >= 0, default 0.0
        Improvement of the monitored score needed to count (absolute; 0: any improvement).
    early_stopping_metric : str or None, default None
        The eval metric early stopping watches: "rmse" (the default; predictions clipped to the training
        label range, as the paper's code) or "mae" for the regressor, "logloss" (the default) or "auc"
        for the classifier. Also what `eval_set` alone (early_stopping=False) reports in best_epoch_.
    pretrain : "fm" or None, default "fm"
        "fm": `fit` first trains an FM (FMRegressor/FMClassifier) with this estimator's embedding_dim,
        dropout, l2, optimizer, batch size, n_epochs, seed and early stopping on the same validation rows, at
        half the learning rate (the ratio of the FM's and AFM's defaults), and warm-starts AFM from its w0, w
        and V, as the AFM paper does (docs/accuracy.md: it helps on every tuning set). None: AFM from its
        random initialisation. `fit(..., init=model)` overrides it; `partial_fit` never pretrains.

    Attributes
    ----------
    w0_, w_, V_, W_, b_, h_, p_ : learned parameters (float32)
    n_features_in_ : int
    history_ : list of dict, one per epoch run (train_loss, seconds, and eval_* metrics with an eval_set)
    best_epoch_, best_score_ : with an eval_set or a held-out validation set, the epoch (1-based) with the
        best `early_stopping_metric` and its value; the parameters are that epoch's with early stopping,
        else the last epoch's.
    validation_score_ : float array, the monitored score after every epoch (as in history_)
    do_early_stopping_ : bool, whether this fit stopped early (early_stopping resolved)
    pretrain_history_ : list of dict or None, the history of the pretraining FM (None: no pretraining)
    n_epochs_done_ : int, epochs run (partial_fit continues with the next epoch's shuffling and dropout)
    label_range_ : (float, float), training label range used to clip predictions in eval RMSE
    """



class AFMClassifier(_Classification, ClassifierMixin, _AFM):
    """Attentional Factorization Machine for binary classification (logistic loss, e.g. click-through rate).

    Takes the same parameters as AFMRegressor, and `class_weight`. Labels may be any two values ({0, 1},
    {-1, 1}, strings); `classes_[1]` is the positive class.

    class_weight : None, "balanced" or dict {label: weight}, default None
        As scikit-learn (sklearn.utils.class_weight.compute_sample_weight): each row's loss times its class's
        weight, and times its `sample_weight`; "balanced" gives class c the weight n_rows / (2 * count(c)) over
        the rows `fit` trains on (before a validation_fraction split); a dict gives the listed classes their
        weights and the others 1 (a label that is not a class is a ValueError). `partial_fit` takes a dict,
        not "balanced". From a CacheFile the class weights multiply the cache's stored weights ("balanced"
        counts the classes over the whole cache).
    """

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        pretrain="fm",
        class_weight=None,
    ):
        store(self, locals())



class FMRegressor(_Regression, RegressorMixin, _FM):
    """Factorization Machine for regression (squared loss): y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j.

    The AFM paper's baseline, trained by the same core with the same optimizer, mini-batching, dropout (on
    the pooled pair-wise vector, as the authors' FM code) and early stopping. Parameters and attributes are
    those of AFMRegressor without the attention ones (attention_dim, attention_l2, attention). A fitted FM is
    the usual warm start of an AFM: ``AFMRegressor(...).fit(X, y, init=fm)``.

    Defaults as AFM's; learning_rate "auto" resolves to the FM's own values (adagrad 0.05, AFM's 0.1), from
    the Frappe runs in docs/accuracy.md.

    FM and AFM are siblings (not subclasses of each other) over one base: FM pools uniformly with p fixed
    at 1, so `p_` stays all ones and `W_`, `b_`, `h_` are unused placeholders of attention_dim 1.
    """


class FMClassifier(_Classification, ClassifierMixin, _FM):
    """Factorization Machine for binary classification (logistic loss); see FMRegressor and AFMClassifier (class_weight
    included)."""

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        class_weight=None,
    ):
        store(self, locals())


for _cls, _loss, _family in ((AFMRegressor, "squared", "afm"), (AFMClassifier, "logistic", "afm"),
                             (FMRegressor, "squared", "fm"), (FMClassifier, "logistic", "fm")):
    _registry.register(_cls, _loss, _family)
