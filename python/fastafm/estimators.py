"""scikit-learn style estimators: AFMRegressor (squared loss) and AFMClassifier (logistic loss).

The estimator owns the parameters and the Adagrad accumulators as float32 NumPy arrays; each epoch is one
call into the compiled core (`_core.train_epoch`), which runs every mini-batch in C++ with the GIL released.
"""
from __future__ import annotations

import functools
import threading
import time
import warnings

import numpy as np

from . import _core, metrics, reference
from ._compat import BaseEstimator, ClassifierMixin, RegressorMixin
from ._validation import (as_csr, as_targets, check_float, check_int, check_kernel_memory, check_memory,
                          check_model_memory, column_or_1d, csr_arrays)

PARAM_NAMES = reference.PARAM_NAMES  # ("w0", "w", "V", "W", "b", "h", "p")
_INT32_MAX = 2**31 - 1

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


def _as_generator(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int or a numpy Generator/RandomState, got {random_state!r}")


class _BaseAFM(BaseEstimator):
    """Shared training loop of the AFM estimators; see AFMRegressor for the parameters."""

    _loss = "squared"

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.2,
        attention_l2=0.0,
        l2=0.0,
        learning_rate=0.05,
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
    ):
        self.embedding_dim = embedding_dim
        self.attention_dim = attention_dim
        self.dropout = dropout
        self.attention_l2 = attention_l2
        self.l2 = l2
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.init_std = init_std
        self.attention = attention
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitted parameters
    @property
    def w0_(self) -> float:
        return float(self._params_["w0"][0])

    w_ = property(lambda self: self._params_["w"], doc="Linear weights, shape (n_features,).")
    V_ = property(lambda self: self._params_["V"], doc="Embeddings, shape (n_features, embedding_dim).")
    W_ = property(lambda self: self._params_["W"], doc="Attention weights, shape (attention_dim, embedding_dim).")
    b_ = property(lambda self: self._params_["b"], doc="Attention bias, shape (attention_dim,).")
    h_ = property(lambda self: self._params_["h"], doc="Attention projection, shape (attention_dim,).")
    p_ = property(lambda self: self._params_["p"], doc="Output projection of the pooled vector, shape (embedding_dim,).")

    def get_model_params(self) -> dict:
        """A copy of the learned parameters as a dict of float32 arrays (w0 as shape (1,))."""
        self._check_fitted()
        return {name: arr.copy() for name, arr in self._params_.items()}

    # ------------------------------------------------------------------ public API
    @_exclusive
    def fit(self, X, y, eval_set=None):
        """Train from scratch for `n_epochs` epochs.

        Parameters
        ----------
        X : scipy.sparse matrix or array-like, shape (n_rows, n_features)
            Rows of feature values (CSR preferred; dense zeros are skipped).
        y : array-like, shape (n_rows,)
            Regression targets, or two class labels for the classifier.
        eval_set : tuple (X_eval, y_eval) or list of one such tuple, optional
            Evaluated after every epoch; the metrics go to `history_`.
        """
        self._check_hyperparameters()
        X = as_csr(X)
        y_enc = self._encode_targets(y, X.shape[0], fitting=True)
        evaluation = self._prepare_eval_set(eval_set, X.shape[1])
        self._initialize(X.shape[1])
        self._train(X, y_enc, int(self.n_epochs), evaluation)
        return self

    @_exclusive
    def partial_fit(self, X, y, classes=None):
        """One more epoch over (X, y), continuing from the current parameters and optimizer state
        (initialising them first if the model is not fitted yet). `classes` (classifier only, optional): the
        two labels, for a first batch that may hold only one of them."""
        if not hasattr(self, "_params_"):
            self._check_hyperparameters()
            X = as_csr(X)
            y_enc = self._encode_targets(y, X.shape[0], fitting=True, classes=classes)
            self._initialize(X.shape[1])
        else:
            X = as_csr(X, n_features=self.n_features_in_, owner=type(self).__name__)
            y_enc = self._encode_targets(y, X.shape[0], fitting=False, classes=classes)
        self._train(X, y_enc, 1, None)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Raw model output y(x) (the logit for the classifier), float64 of shape (n_rows,)."""
        self._check_fitted()
        X = as_csr(X, n_features=self.n_features_in_, owner=type(self).__name__)
        check_kernel_memory(X, self._params_["V"].shape[1], self._params_["W"].shape[0], int(self.n_threads))
        out = _core.predict(self._params_, *csr_arrays(X), bool(self.attention), int(self.n_threads))
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
        """
        self._check_fitted()
        X = as_csr(X, n_features=self.n_features_in_, owner=type(self).__name__)
        check_kernel_memory(X, self._params_["V"].shape[1], self._params_["W"].shape[0], int(self.n_threads))
        nnz = np.diff(X.indptr)
        counts = nnz * (nnz - 1) // 2
        pair_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Output: weights (4 bytes) and pairs (8) per pair, plus index temporaries while the pairs are built.
        check_memory(int(pair_indptr[-1]) * 36, f"the attention weights of {int(pair_indptr[-1])} feature pairs")
        weights = _core.pair_attention(
            self._params_, *csr_arrays(X), pair_indptr, bool(self.attention), int(self.n_threads)
        )
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

    def save(self, path) -> None:
        """Write the fitted model to `path` (see fastafm.persistence for the format)."""
        from .persistence import save_model

        save_model(self, path)

    # ------------------------------------------------------------------ internals
    def _check_fitted(self):
        if not hasattr(self, "_params_"):
            try:
                from sklearn.exceptions import NotFittedError
            except ImportError:  # pragma: no cover
                NotFittedError = AttributeError  # noqa: N806
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first.")

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        return tags

    def _check_hyperparameters(self):
        check_int(self.embedding_dim, "embedding_dim", 1, maximum=_INT32_MAX)
        check_int(self.attention_dim, "attention_dim", 1, maximum=_INT32_MAX)
        check_float(self.dropout, "dropout", 0.0, 1.0)
        check_float(self.attention_l2, "attention_l2", 0.0)
        check_float(self.l2, "l2", 0.0)
        check_float(self.learning_rate, "learning_rate", 0.0, low_open=True)
        if self.optimizer not in ("adagrad", "sgd"):
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {self.optimizer!r}")
        check_int(self.batch_size, "batch_size", 1, maximum=_INT32_MAX)
        check_int(self.n_epochs, "n_epochs", 0)
        check_float(self.init_std, "init_std", 0.0)
        if not isinstance(self.attention, (bool, np.bool_)):
            raise TypeError(f"attention must be True or False, got {self.attention!r}")
        check_int(self.n_threads, "n_threads", 0, maximum=4096)
        check_int(self.verbose, "verbose", 0)
        if not (self.random_state is None or isinstance(self.random_state, (np.random.Generator,
                                                                           np.random.RandomState))):
            check_int(self.random_state, "random_state", 0)

    def _initialize(self, n_features: int):
        check_model_memory(n_features, self.embedding_dim, self.attention_dim)
        self._rng_ = _as_generator(self.random_state)
        ref = reference.init_params(n_features, int(self.embedding_dim), int(self.attention_dim),
                                    init_std=float(self.init_std), rng=self._rng_)
        self._params_ = {
            name: np.ascontiguousarray(np.atleast_1d(getattr(ref, name)), dtype=np.float32) for name in PARAM_NAMES
        }
        self._accum_ = {
            name: np.full_like(arr, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, arr in self._params_.items()
        }
        self._dropout_seed_ = int(self._rng_.integers(0, 2**63 - 1))
        self.n_features_in_ = int(n_features)
        self.n_epochs_done_ = 0
        self.history_ = []

    def _config(self):
        cfg = _core.TrainConfig()
        cfg.loss = _core.Loss.squared if self._loss == "squared" else _core.Loss.logistic
        cfg.optimizer = _core.Optimizer.adagrad if self.optimizer == "adagrad" else _core.Optimizer.sgd
        cfg.attention = bool(self.attention)
        cfg.dropout = float(self.dropout)
        cfg.attention_l2 = float(self.attention_l2)
        cfg.l2 = float(self.l2)
        cfg.learning_rate = float(self.learning_rate)
        cfg.batch_size = int(self.batch_size)
        cfg.seed = self._dropout_seed_
        cfg.n_threads = int(self.n_threads)
        return cfg

    def _prepare_eval_set(self, eval_set, n_features):
        if eval_set is None:
            return None
        if isinstance(eval_set, list):
            if len(eval_set) != 1:
                raise ValueError("eval_set must be one (X, y) tuple or a list holding one")
            eval_set = eval_set[0]
        if not isinstance(eval_set, tuple) or len(eval_set) != 2:
            raise ValueError("eval_set must be a tuple (X_eval, y_eval)")
        X_eval = as_csr(eval_set[0], name="eval_set X", n_features=n_features, owner=type(self).__name__)
        y_eval = as_targets(eval_set[1], X_eval.shape[0], name="eval_set y")
        return X_eval, y_eval

    def _finite_state(self) -> bool:
        """True when every parameter and Adagrad accumulator is finite (float64 sums: no false overflow)."""
        return all(np.isfinite(np.sum(a, dtype=np.float64)) for d in (self._params_, self._accum_)
                   for a in d.values())

    def _train(self, X, y_enc, n_epochs, evaluation):
        cfg = self._config()
        n = X.shape[0]
        arrays = csr_arrays(X)
        check_kernel_memory(X, int(self.embedding_dim), int(self.attention_dim), int(self.n_threads),
                            batch_size=int(self.batch_size))
        # Start-of-epoch snapshot (buffers allocated once): a diverged epoch is rolled back to it, so the model
        # keeps the last finite parameters, optimizer state and shuffling stream.
        saved = {key: {name: np.empty_like(a) for name, a in d.items()}
                 for key, d in (("params", self._params_), ("accum", self._accum_))} if n_epochs else {}

        def restore(rng_state):
            for key, d in (("params", self._params_), ("accum", self._accum_)):
                for name, a in d.items():
                    np.copyto(a, saved[key][name])
            self._rng_.bit_generator.state = rng_state

        for _ in range(n_epochs):
            cfg.epoch = self.n_epochs_done_
            epoch = self.n_epochs_done_ + 1
            for key, d in (("params", self._params_), ("accum", self._accum_)):
                for name, a in d.items():
                    np.copyto(saved[key][name], a)
            rng_state = self._rng_.bit_generator.state
            order = self._rng_.permutation(n).astype(np.int64)
            start = time.perf_counter()
            try:
                res = _core.train_epoch(self._params_, self._accum_, *arrays, y_enc, order, cfg)
            except BaseException:
                # KeyboardInterrupt (Ctrl-C: raised after the batch in progress) or a progress callback's error:
                # the model keeps every completed batch, unless one of them went non-finite.
                if not self._finite_state():
                    restore(rng_state)
                raise
            record = {"epoch": epoch, "train_loss": res["loss_sum"] / n, "seconds": time.perf_counter() - start}
            if not np.isfinite(record["train_loss"]) or not self._finite_state():
                restore(rng_state)
                raise FloatingPointError(
                    f"training diverged in epoch {epoch}: the loss or a parameter became NaN or infinite; the model "
                    f"keeps the parameters from the end of epoch {epoch - 1}. Try a smaller learning_rate (now "
                    f"{self.learning_rate}), or scale the feature values down"
                )
            if evaluation is not None:
                record.update(self._evaluate(*evaluation))
            self.history_.append(record)
            self.n_epochs_done_ += 1
            if self.verbose:
                extras = "  ".join(f"{k}={v:.5f}" for k, v in record.items() if k.startswith("eval_"))
                print(f"epoch {record['epoch']:3d}  train_loss={record['train_loss']:.5f}  {extras}  "
                      f"{record['seconds']:.2f}s", flush=True)


class AFMRegressor(RegressorMixin, _BaseAFM):
    """Attentional Factorization Machine for regression (squared loss, as in Xiao et al. 2017).

    Parameters
    ----------
    embedding_dim : int, default 64
        Size k of the feature embeddings (rows of V).
    attention_dim : int, default 64
        Size t of the attention network's hidden layer.
    dropout : float in [0, 1), default 0.2
        Drop ratio on the pooled pair-wise interaction layer during training (never at prediction).
    attention_l2 : float, default 0.0
        L2 strength λ on the attention weights W, added once per mini-batch (the paper's λ).
    l2 : float, default 0.0
        L2 strength on the rows of V and w touched by a mini-batch.
    learning_rate : float, default 0.05
        Step size; the batch loss is summed over rows (see docs/model.md).
    optimizer : {"adagrad", "sgd"}, default "adagrad"
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
        Print one line per epoch (loss, eval metrics, seconds) to stdout when > 0.

    Attributes
    ----------
    w0_, w_, V_, W_, b_, h_, p_ : learned parameters (float32)
    n_features_in_ : int
    history_ : list of dict, one per epoch (train_loss, seconds, and eval_* metrics with an eval_set)
    label_range_ : (float, float), training label range used to clip predictions in eval RMSE
    """

    _loss = "squared"

    def _encode_targets(self, y, n_rows, fitting, classes=None):
        if classes is not None:
            raise ValueError(f"classes is only for classifiers, not {type(self).__name__}")
        y = as_targets(y, n_rows)
        if fitting:
            self.label_range_ = (float(y.min()), float(y.max()))
        return y

    def predict(self, X) -> np.ndarray:
        """Predicted values, float64 of shape (n_rows,)."""
        return self.decision_function(X)

    def _evaluate(self, X_eval, y_eval):
        pred = self.decision_function(X_eval)
        return {"eval_rmse": metrics.rmse(y_eval, pred, clip=self.label_range_), "eval_mae": metrics.mae(y_eval, pred)}


class AFMClassifier(ClassifierMixin, _BaseAFM):
    """Attentional Factorization Machine for binary classification (logistic loss, e.g. click-through rate).

    Takes the same parameters as AFMRegressor. Labels may be any two values ({0, 1}, {-1, 1}, strings);
    `classes_[1]` is the positive class.
    """

    _loss = "logistic"

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _encode_targets(self, y, n_rows, fitting, classes=None):
        if y is None:
            raise ValueError("y is None: AFMClassifier requires y to be passed, but the target y is None")
        try:
            arr = np.asarray(y)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"y is not a 1-D array of labels: {exc}") from None
        arr = column_or_1d(arr, "y")
        if arr.shape[0] != n_rows:
            raise ValueError(f"y has {arr.shape[0]} values but X has {n_rows} rows")
        if arr.dtype.kind == "c":
            raise ValueError("y must hold class labels: Complex data not supported")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError("y contains NaN or infinity")
        if arr.dtype == object and any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in arr):
            raise ValueError("y contains missing labels (None or NaN)")
        if fitting:
            if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
                raise ValueError("Unknown label type: continuous values in y; AFMClassifier needs two class "
                                 "labels (use AFMRegressor for real-valued targets)")
            try:
                found = np.unique(arr)
            except TypeError as exc:  # labels of mixed, unorderable types
                raise TypeError(f"y must hold labels of one type: {exc}") from None
            if classes is not None:
                declared = np.unique(np.asarray(classes))
                if declared.ndim != 1 or declared.shape[0] != 2:
                    raise ValueError(f"classes must hold exactly two labels, got {declared}")
                unknown = np.setdiff1d(found, declared)
                if unknown.size:
                    raise ValueError(f"y contains labels not in classes: {unknown[:5]}")
                found = declared
            if found.shape[0] != 2:
                raise ValueError(f"AFMClassifier needs two classes in y, got {found.shape[0]} class(es): {found[:5]}"
                                 + ("; Only binary classification is supported." if found.shape[0] > 2 else ""))
            self.classes_ = found
        else:
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes {classes} differ from classes_ {self.classes_} of the fitted model")
            unknown = np.setdiff1d(np.unique(arr), self.classes_)
            if unknown.size:
                raise ValueError(f"y contains labels not seen in fit: {unknown[:5]}")
        return np.where(arr == self.classes_[1], 1.0, -1.0).astype(np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_rows, 2), columns in the order of `classes_`."""
        z = self.decision_function(X)
        p1 = np.empty_like(z)
        pos = z >= 0
        p1[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
        ez = np.exp(z[~pos])
        p1[~pos] = ez / (1.0 + ez)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X) -> np.ndarray:
        """Predicted class labels."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def _evaluate(self, X_eval, y_eval):
        z = self.decision_function(X_eval)
        y01 = (np.asarray(y_eval) == self.classes_[1]).astype(np.float64)
        proba = self.predict_proba(X_eval)[:, 1]
        return {"eval_logloss": metrics.log_loss(y01, proba), "eval_auc": metrics.roc_auc(y01, z)}
