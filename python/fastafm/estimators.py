"""scikit-learn style estimators: AFMRegressor (squared loss) and AFMClassifier (logistic loss).

The estimator owns the parameters and the Adagrad accumulators as float32 NumPy arrays; each epoch is one
call into the compiled core (`_core.train_epoch`), which runs every mini-batch in C++ with the GIL released.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
import warnings

import numpy as np

from . import _core, metrics, reference
from ._compat import BaseEstimator, ClassifierMixin, RegressorMixin
from ._streaming import CacheRows, InMemoryRows
from ._validation import (as_csr, as_targets, check_class_labels, check_float, check_int, check_kernel_memory,
                          check_memory, check_model_memory, column_or_1d, csr_arrays)
from .cache import as_cache

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
    _learn_projection = True  # False (FM): p stays 1, so the pair term is the plain FM sum

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        learning_rate=0.1,
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
        patience=None,
        early_stopping_metric=None,
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
        self.patience = patience
        self.early_stopping_metric = early_stopping_metric

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
    def fit(self, X, y=None, eval_set=None, init=None):
        """Train from scratch for `n_epochs` epochs.

        Parameters
        ----------
        X : scipy.sparse matrix or array-like, shape (n_rows, n_features), or a fastafm.CacheFile
            Rows of feature values (CSR preferred; dense zeros are skipped). A CacheFile (or an os.PathLike
            naming one) written by `fastafm.convert` is streamed from disk in shuffled blocks, never loaded
            whole (docs/cache.md); its labels are in the file.
        y : array-like, shape (n_rows,)
            Regression targets, or two class labels for the classifier; None (and only None) with a cache.
        eval_set : tuple (X_eval, y_eval) or list of one such tuple, optional
            Evaluated after every epoch; the metrics go to `history_`. Required when `patience` is set
            (early stopping watches `early_stopping_metric` on it).
        init : fitted FMRegressor/FMClassifier (or AFM estimator), or dict with "w0", "w", "V", optional
            Warm start, as in the AFM paper: w0, w and V are copied from this model after the usual
            initialisation (the attention network is initialised as usual and p = 1; the optimizer state
            starts fresh). Its n_features and embedding_dim must match this estimator's.
        """
        self._check_hyperparameters()
        metric = self._check_early_stopping(eval_set)
        rows, n_features = self._rows(X, y, fitting=True)
        evaluation = self._prepare_eval_set(eval_set, n_features)
        init_params = None if init is None else _warm_start_params(init, n_features, int(self.embedding_dim))
        self._initialize(n_features)
        if init_params is not None:
            for name, arr in init_params.items():
                np.copyto(self._params_[name], arr)
        if self.patience is None:
            self._train(rows, int(self.n_epochs), evaluation)
        else:
            self._train_early_stopping(rows, int(self.n_epochs), evaluation, metric)
        if evaluation is not None:
            self._set_best(metric)
        return self

    @_exclusive
    def partial_fit(self, X, y=None, classes=None):
        """One more epoch over (X, y), continuing from the current parameters and optimizer state
        (initialising them first if the model is not fitted yet). `classes` (classifier only, optional): the
        two labels, for a first batch that may hold only one of them. X may be a CacheFile (y None): one
        epoch streamed from it."""
        if not hasattr(self, "_params_"):
            self._check_hyperparameters()
            rows, n_features = self._rows(X, y, fitting=True, classes=classes)
            self._initialize(n_features)
        else:
            rows, _ = self._rows(X, y, fitting=False, classes=classes)
        self._train(rows, 1, None)
        return self

    def _rows(self, X, y, fitting, classes=None):
        """The training rows of fit/partial_fit: (row source, n_features), from a CSR-able X and its y or from
        a cache (y None). Not fitting: X must have the fitted model's width."""
        cache = as_cache(X)
        if cache is None:
            if fitting:
                X = as_csr(X)
            else:
                X = as_csr(X, n_features=self.n_features_in_, owner=type(self).__name__)
            y_enc = self._encode_targets(y, X.shape[0], fitting=fitting, classes=classes)
            return InMemoryRows(X, y_enc), X.shape[1]
        if y is not None:
            raise ValueError("y must be None when X is a CacheFile: the labels are read from the cache")
        if cache.n_rows == 0:
            raise ValueError(f"{cache.path}: the cache has 0 rows; at least one row is required")
        if cache.n_features == 0:
            raise ValueError(f"{cache.path}: the cache has 0 feature(s) while a minimum of 1 is required.")
        if not fitting and cache.n_features != self.n_features_in_:
            raise ValueError(f"{cache.path} has {cache.n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        encode = self._cache_encoder(cache, fitting=fitting, classes=classes)
        return CacheRows(cache, encode), cache.n_features

    def decision_function(self, X) -> np.ndarray:
        """Raw model output y(x) (the logit for the classifier), float64 of shape (n_rows,)."""
        self._check_fitted()
        X = as_csr(X, n_features=self.n_features_in_, owner=type(self).__name__)
        check_kernel_memory(X, self._params_["V"].shape[1], self._params_["W"].shape[0], int(self.n_threads),
                            attention=bool(self.attention))
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
        check_kernel_memory(X, self._params_["V"].shape[1], self._params_["W"].shape[0], int(self.n_threads),
                            attention=bool(self.attention))
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
        cfg.learn_projection = self._learn_projection
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

    def _train(self, rows, n_epochs, evaluation):
        """n_epochs epochs over `rows` (fastafm._streaming: rows in memory or a streamed cache)."""
        cfg = self._config()
        n = rows.n_rows
        rows.check_memory(self)
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
            start = time.perf_counter()
            try:
                with _epoch_progress(self.verbose, n, epoch) as progress:
                    loss_sum = rows.run_epoch(self, cfg, progress)
            except BaseException:
                # KeyboardInterrupt (Ctrl-C: raised after the batch in progress) or a progress callback's error:
                # the model keeps every completed batch, unless one of them went non-finite.
                if not self._finite_state():
                    restore(rng_state)
                raise
            record = {"epoch": epoch, "train_loss": loss_sum / n, "seconds": time.perf_counter() - start}
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


    # ------------------------------------------------------------------ accuracy: early stopping, attention
    _metrics: tuple = ()  # eval metrics of this estimator (the eval_ keys of history_), lower is better except auc

    def pair_attention(self, X):
        """The attention of every row: its pairs (feature i, feature j) and their weights a_ij.

        This is the issue's `model.attention(X)`; it cannot be called `attention` because that name is
        already the boolean hyperparameter of AFMRegressor/AFMClassifier (scikit-learn keeps hyperparameters
        as attributes of the same name, so a method `attention` would be shadowed by `self.attention`).

        Returns
        -------
        fastafm.interpret.PairAttention
            A sequence with one entry per row of X: `result[r]` is `(pairs, weights)`, pairs an int32 array
            (P_r, 2) of feature ids (r < s in the row's storage order) and weights the float32 a_ij (P_r,),
            summing to 1 over a row with at least two non-zeros. The flat arrays are `result.indptr`,
            `result.pairs`, `result.weights` (what `attention_weights(X)` returns). For FMRegressor and
            FMClassifier every weight is 1 (FM weighs all pairs equally).
        """
        from .interpret import PairAttention

        return PairAttention(*self.attention_weights(X))

    def _check_early_stopping(self, eval_set):
        """Validates patience/early_stopping_metric; returns the metric name watched on the eval_set."""
        check_int(self.patience, "patience", 1, allow_none=True)
        metric = self.early_stopping_metric
        if metric is None:
            metric = self._metrics[0]
        if metric not in self._metrics:
            raise ValueError(f"early_stopping_metric must be one of {list(self._metrics)} for "
                             f"{type(self).__name__}, got {self.early_stopping_metric!r}")
        if self.patience is not None and eval_set is None:
            raise ValueError("early stopping (patience is set) needs an eval_set to watch")
        return metric

    @staticmethod
    def _better(metric, score, best):
        if not np.isfinite(score):
            return False
        if best is None:
            return True
        return score > best if metric == "auc" else score < best

    def _train_early_stopping(self, rows, n_epochs, evaluation, metric):
        """Up to n_epochs epochs; stops once `patience` epochs in a row did not improve the eval metric, then
        restores the parameters and Adagrad state of the best epoch (history_ keeps every epoch run)."""
        best, best_epoch, snapshot = None, 0, None
        for _ in range(n_epochs):
            self._train(rows, 1, evaluation)
            record = self.history_[-1]
            score = record[f"eval_{metric}"]
            if self._better(metric, score, best):
                best, best_epoch = score, record["epoch"]
                snapshot = ({k: a.copy() for k, a in self._params_.items()},
                            {k: a.copy() for k, a in self._accum_.items()})
            elif record["epoch"] - best_epoch >= int(self.patience):
                if self.verbose:
                    print(f"early stopping: no {metric} improvement for {self.patience} epochs; "
                          f"restoring epoch {best_epoch} ({metric}={best:.5f})", flush=True)
                break
        if snapshot is not None:
            self._params_, self._accum_ = snapshot

    def _set_best(self, metric):
        """best_epoch_ / best_score_ from history_ (with patience=None they are informational: the parameters
        are the last epoch's)."""
        best, best_epoch = None, None
        for record in self.history_:
            score = record.get(f"eval_{metric}")
            if score is not None and self._better(metric, score, best):
                best, best_epoch = score, record["epoch"]
        self.best_epoch_ = best_epoch
        self.best_score_ = float("nan") if best is None else float(best)


class AFMRegressor(RegressorMixin, _BaseAFM):
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
        L2 strength on the rows of V and w touched by a mini-batch.
    learning_rate : float, default 0.1
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
        0: silent. 1: one line per epoch (loss, eval metrics, seconds) to stdout, and a tqdm progress bar
        within each epoch (rows/s) on stderr when stderr is a terminal. 2: the progress bar also when it is
        not (e.g. in a log file). Without tqdm installed there is no bar.
    patience : int or None, default None
        Early stopping: stop once `patience` epochs in a row did not improve `early_stopping_metric` on the
        `eval_set` given to `fit`, and restore the parameters (and Adagrad state) of the best epoch.
        None: run all `n_epochs` and keep the last epoch's parameters.
    early_stopping_metric : str or None, default None
        The eval metric early stopping watches: "rmse" (the default; predictions clipped to the training
        label range, as the paper's code) or "mae" for the regressor, "logloss" (the default) or "auc"
        for the classifier.

    Attributes
    ----------
    w0_, w_, V_, W_, b_, h_, p_ : learned parameters (float32)
    n_features_in_ : int
    history_ : list of dict, one per epoch run (train_loss, seconds, and eval_* metrics with an eval_set)
    best_epoch_, best_score_ : with an eval_set, the epoch (1-based) with the best `early_stopping_metric`
        and its value; the parameters are that epoch's when `patience` is set, else the last epoch's.
    n_epochs_done_ : int, epochs run (partial_fit continues with the next epoch's shuffling and dropout)
    label_range_ : (float, float), training label range used to clip predictions in eval RMSE
    """

    _loss = "squared"
    _metrics = ("rmse", "mae")

    def _encode_targets(self, y, n_rows, fitting, classes=None):
        if classes is not None:
            raise ValueError(f"classes is only for classifiers, not {type(self).__name__}")
        y = as_targets(y, n_rows)
        if fitting:
            self.label_range_ = (float(y.min()), float(y.max()))
        return y

    def _cache_encoder(self, cache, fitting, classes=None):
        """Targets of a cache's label blocks (as stored); label_range_ from the cache's header."""
        if classes is not None:
            raise ValueError(f"classes is only for classifiers, not {type(self).__name__}")
        if fitting:
            self.label_range_ = (cache.label_min, cache.label_max)
        return _identity

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
    _metrics = ("logloss", "auc")

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
        check_class_labels(arr, fitting)
        if fitting:
            try:
                found = np.unique(arr)
            except TypeError as exc:  # labels of mixed, unorderable types
                raise TypeError(f"y must hold labels of one type: {exc}") from None
            if classes is not None:
                found = _declared_classes(found, classes, "")
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

    def _cache_encoder(self, cache, fitting, classes=None):
        """+-1 targets of a cache's label blocks; the classes come from the header's label summary (the
        distinct labels, which are the minimum and the maximum when there are at most two)."""
        found = np.unique(np.array([cache.label_min, cache.label_max], dtype=np.float32))
        if cache.n_label_values > 2:
            raise ValueError(f"{cache.path}: AFMClassifier needs two classes in y, got 3 or more (labels from "
                             f"{cache.label_min:g} to {cache.label_max:g}); Only binary classification is supported.")
        if fitting:
            if np.any(found != np.round(found)):
                raise ValueError(f"{cache.path}: Unknown label type: continuous values in y; AFMClassifier needs "
                                 "two class labels (use AFMRegressor for real-valued targets)")
            if classes is not None:
                found = _declared_classes(found, classes, f"{cache.path}: ")
            if found.shape[0] != 2:
                raise ValueError(f"{cache.path}: AFMClassifier needs two classes in y, got {found.shape[0]} "
                                 f"class(es): {found[:5]}")
            self.classes_ = found
        else:
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes {classes} differ from classes_ {self.classes_} of the fitted model")
            try:
                unknown = np.setdiff1d(found, self.classes_)
            except TypeError:  # the model's labels are not numbers
                unknown = found
            if unknown.size:
                raise ValueError(f"{cache.path}: y contains labels not seen in fit: {unknown[:5]}")
        positive = self.classes_[1]
        scratch: dict = {}

        def encode(labels):
            out = scratch.get("y")
            if out is None or out.shape[0] < labels.shape[0]:
                out = scratch["y"] = np.empty(labels.shape[0], dtype=np.float32)
            out = out[:labels.shape[0]]
            out.fill(-1.0)
            out[labels == positive] = 1.0
            return out

        return encode

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


# ---------------------------------------------------------------------- FM baseline, warm start, progress
class _FMMixin:
    """FM (Rendle 2010), the AFM paper's baseline, on the same core: uniform pooling (every pair weight 1,
    computed in O(k·nnz) by the sum-of-squares identity) with the projection p fixed at 1, so the pair term is
    exactly sum_{i<j} <v_i, v_j> x_i x_j. The attention network is unused; it is kept at its smallest shape
    (attention_dim 1) because the core's parameter set always has one."""

    attention = False
    attention_dim = 1
    attention_l2 = 0.0
    _learn_projection = False

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        learning_rate=0.05,
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        n_threads=0,
        random_state=None,
        verbose=0,
        patience=None,
        early_stopping_metric=None,
    ):
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.l2 = l2
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.init_std = init_std
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.patience = patience
        self.early_stopping_metric = early_stopping_metric


class FMRegressor(_FMMixin, AFMRegressor):
    """Factorization Machine for regression (squared loss): y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j.

    The AFM paper's baseline, trained by the same core with the same optimizer, mini-batching, dropout (on
    the pooled pair-wise vector, as the authors' FM code) and early stopping. Parameters and attributes are
    those of AFMRegressor without the attention ones (attention_dim, attention_l2, attention). A fitted FM is
    the usual warm start of an AFM: ``AFMRegressor(...).fit(X, y, init=fm)``.

    Defaults as AFM's except learning_rate 0.05 (AFM: 0.1), from the Frappe runs in docs/accuracy.md.

    FMRegressor is a subclass of AFMRegressor (FM is AFM with uniform pooling and p = 1); `p_` stays all
    ones and `W_`, `b_`, `h_` are unused placeholders of attention_dim 1.
    """


class FMClassifier(_FMMixin, AFMClassifier):
    """Factorization Machine for binary classification (logistic loss); see FMRegressor and AFMClassifier."""


def _declared_classes(found, classes, where: str):
    """The two labels of `classes` (partial_fit's argument), checked against the labels found in y."""
    declared = np.unique(np.asarray(classes))
    if declared.ndim != 1 or declared.shape[0] != 2:
        raise ValueError(f"classes must hold exactly two labels, got {declared}")
    unknown = np.setdiff1d(found, declared)
    if unknown.size:
        raise ValueError(f"{where}y contains labels not in classes: {unknown[:5]}")
    return declared


def _warm_start_params(init, n_features: int, embedding_dim: int) -> dict:
    """w0, w, V of the warm-start model `init` (a fitted estimator or a dict), checked against the shapes."""
    if isinstance(init, dict):
        missing = {"w0", "w", "V"} - set(init)
        if missing:
            raise ValueError(f"init dict is missing {sorted(missing)}; it needs 'w0', 'w' and 'V'")
        source = {name: np.asarray(init[name], dtype=np.float32) for name in ("w0", "w", "V")}
        what = "init"
    elif hasattr(init, "get_model_params"):
        if not hasattr(init, "_params_"):
            raise ValueError(f"init must be a fitted model; this {type(init).__name__} is not fitted")
        source = init.get_model_params()
        what = f"init ({type(init).__name__})"
    else:
        raise TypeError(f"init must be a fitted FM/AFM estimator or a dict of w0, w, V; got {type(init).__name__}")
    w0 = np.atleast_1d(source["w0"]).reshape(-1)
    w, V = source["w"], source["V"]
    if V.ndim != 2 or w.ndim != 1 or w0.shape != (1,) or w.shape[0] != V.shape[0]:
        raise ValueError(f"{what}: w0, w, V have inconsistent shapes {w0.shape}, {w.shape}, {V.shape}")
    if V.shape[0] != n_features:
        raise ValueError(f"{what} has {V.shape[0]} features but X has {n_features}; warm start needs the same "
                         "feature ids")
    if V.shape[1] != embedding_dim:
        raise ValueError(f"{what} has embedding_dim {V.shape[1]} but this model has embedding_dim {embedding_dim}")
    if not all(np.all(np.isfinite(a)) for a in (w0, w, V)):
        raise ValueError(f"{what} contains NaN or infinity")
    return {"w0": w0, "w": w, "V": V}


def _identity(labels):
    return labels


@contextlib.contextmanager
def _epoch_progress(verbose, n_rows: int, epoch: int):
    """A tqdm bar over the rows of one epoch, as the core's progress callback (None when verbose is 0 or
    tqdm is missing). verbose=1 shows it only on a terminal (tqdm's own check); verbose>=2 always."""
    bar = None
    if verbose:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # optional: without tqdm, only the per-epoch lines
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=n_rows, desc=f"epoch {epoch}", unit="rows", unit_scale=True, leave=False,
                       disable=None if verbose < 2 else False, mininterval=0.5, dynamic_ncols=True)
    if bar is None or bar.disable:
        if bar is not None:
            bar.close()
        yield None
        return
    done = 0

    def progress(rows_done):
        nonlocal done
        bar.update(rows_done - done)
        done = rows_done

    try:
        yield progress
    finally:
        bar.close()
