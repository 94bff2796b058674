"""scikit-learn style estimators: AFMRegressor (squared loss) and AFMClassifier (logistic loss).

The estimator owns the parameters and the Adagrad accumulators as float32 NumPy arrays; each epoch is one
call into the compiled core (`_core.train_epoch`), which runs every mini-batch in C++ with the GIL released.
"""
from __future__ import annotations

import time

import numpy as np

from . import _core, metrics, reference
from ._compat import BaseEstimator, ClassifierMixin, RegressorMixin
from ._validation import as_csr, as_targets, check_float, check_int, csr_arrays

PARAM_NAMES = reference.PARAM_NAMES  # ("w0", "w", "V", "W", "b", "h", "p")


def _as_generator(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, (int, np.integer, np.random.Generator)):
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

    def partial_fit(self, X, y):
        """One more epoch over (X, y), continuing from the current parameters and optimizer state
        (initialising them first if the model is not fitted yet)."""
        if not hasattr(self, "_params_"):
            self._check_hyperparameters()
            X = as_csr(X)
            y_enc = self._encode_targets(y, X.shape[0], fitting=True)
            self._initialize(X.shape[1])
        else:
            X = as_csr(X, n_features=self.n_features_in_)
            y_enc = self._encode_targets(y, X.shape[0], fitting=False)
        self._train(X, y_enc, 1, None)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Raw model output y(x) (the logit for the classifier), float64 of shape (n_rows,)."""
        self._check_fitted()
        X = as_csr(X, n_features=self.n_features_in_)
        out = _core.predict(self._params_, *csr_arrays(X), bool(self.attention), int(self.n_threads))
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
        X = as_csr(X, n_features=self.n_features_in_)
        nnz = np.diff(X.indptr)
        counts = nnz * (nnz - 1) // 2
        pair_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
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

    def _check_hyperparameters(self):
        check_int(self.embedding_dim, "embedding_dim", 1)
        check_int(self.attention_dim, "attention_dim", 1)
        check_float(self.dropout, "dropout", 0.0, 1.0)
        check_float(self.attention_l2, "attention_l2", 0.0)
        check_float(self.l2, "l2", 0.0)
        check_float(self.learning_rate, "learning_rate", 0.0, low_open=True)
        if self.optimizer not in ("adagrad", "sgd"):
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {self.optimizer!r}")
        check_int(self.batch_size, "batch_size", 1)
        check_int(self.n_epochs, "n_epochs", 0)
        check_float(self.init_std, "init_std", 0.0)
        if not isinstance(self.attention, (bool, np.bool_)):
            raise TypeError(f"attention must be True or False, got {self.attention!r}")
        check_int(self.n_threads, "n_threads", 0)
        check_int(self.verbose, "verbose", 0)

    def _initialize(self, n_features: int):
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
        X_eval = as_csr(eval_set[0], name="eval_set X", n_features=n_features)
        y_eval = as_targets(eval_set[1], X_eval.shape[0], name="eval_set y")
        return X_eval, y_eval

    def _train(self, X, y_enc, n_epochs, evaluation):
        cfg = self._config()
        n = X.shape[0]
        arrays = csr_arrays(X)
        for _ in range(n_epochs):
            cfg.epoch = self.n_epochs_done_
            order = self._rng_.permutation(n).astype(np.int64)
            start = time.perf_counter()
            res = _core.train_epoch(self._params_, self._accum_, *arrays, y_enc, order, cfg)
            record = {"epoch": self.n_epochs_done_ + 1, "train_loss": res["loss_sum"] / n,
                      "seconds": time.perf_counter() - start}
            self.n_epochs_done_ += 1
            if not np.isfinite(record["train_loss"]) or not all(
                np.isfinite(np.sum(a)) for a in self._params_.values()
            ):
                raise FloatingPointError(
                    f"training diverged in epoch {record['epoch']} (non-finite loss or parameters); "
                    f"try a smaller learning_rate (now {self.learning_rate})"
                )
            if evaluation is not None:
                record.update(self._evaluate(*evaluation))
            self.history_.append(record)
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

    def _encode_targets(self, y, n_rows, fitting):
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

    def _encode_targets(self, y, n_rows, fitting):
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {arr.shape}")
        if arr.shape[0] != n_rows:
            raise ValueError(f"y has {arr.shape[0]} values but X has {n_rows} rows")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError("y contains NaN or infinity")
        if fitting:
            classes = np.unique(arr)
            if classes.shape[0] != 2:
                raise ValueError(f"AFMClassifier needs exactly two classes in y, got {classes.shape[0]}: {classes[:5]}")
            self.classes_ = classes
        else:
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
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def _evaluate(self, X_eval, y_eval):
        z = self.decision_function(X_eval)
        y01 = (np.asarray(y_eval) == self.classes_[1]).astype(np.float64)
        proba = self.predict_proba(X_eval)[:, 1]
        return {"eval_logloss": metrics.log_loss(y01, proba), "eval_auc": metrics.roc_auc(y01, z)}
