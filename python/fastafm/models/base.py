"""What every estimator shares once fitted: the fitted state and its attributes, prediction, the attention
of a row's pairs, model files; and the guard that keeps two threads from fitting one estimator at once.
Fitting is fastafm.models.fitting; the public classes are in fastafm.models.estimators."""
from __future__ import annotations

import functools
import threading
import warnings

import numpy as np

from .. import _core
from .._compat import BaseEstimator, fitted_state
from ..data.limits import row_blocks
from ..data.validation import as_csr, check_kernel_memory, check_memory, csr_arrays
from ..training.state import TrainingState, init_state
from ..training.weights import check_sample_weight
from ..rawlog.pipeline import encode_rows
from ..rawlog.reader import is_raw_rows
from . import registry as _registry
from .hyperparams import core_settings, resolve_learning_rate, validate
from .persistence import save_model

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
    """What the estimators share once fitted: attributes, prediction, interpretation, model files."""

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
        (fastafm.models.hyperparams.AUTO_LEARNING_RATES; the FM of pretrain="fm" uses the FM's), divided by the
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


    def _score_inputs(self, X, sample_weight):
        """(CSR X, float64 weights or None) for score: the weights checked as fit checks them (finite, >= 0,
        not all 0), so that score refuses what fit refuses (scikit-learn's score takes negative weights)."""
        X = self._predict_rows(X, self._fitted_state())
        w = check_sample_weight(sample_weight, X.shape[0])
        return X, None if w is None else np.broadcast_to(np.asarray(sample_weight, np.float64), w.shape)

    def _raw_output(self, X) -> np.ndarray:
        """The model's output y(x), float64 of shape (n_rows,): a classifier's logit (its decision_function; with
        negative_sampling_rate r < 1 the logit plus log(r), the population's: fastafm.models.calibration), a
        regressor's prediction (or, with loss="logistic", the logit of its rate)."""
        out = self._decision(self._fitted_state(), X)
        offset = self._logit_offset()
        return out + offset if offset else out

    def _logit_offset(self) -> float:
        """What the raw output adds to the core's (the classifiers' sampling correction)."""
        return 0.0

    def _decision(self, state: TrainingState, X) -> np.ndarray:
        return self._scores(state, *csr_arrays(self._predict_rows(X, state)))

    def _scores(self, state: TrainingState, indptr, indices, values) -> np.ndarray:
        """The model's float64 outputs of checked CSR arrays (what the evaluation rows are scored with)."""
        params, attention, threads = state.core_params(), state.spec.attention, self._threads()
        blocks = row_blocks(indptr)  # Ctrl-C is seen between blocks (data.limits.PREDICT_BLOCK_WORK)
        if len(blocks) == 1:
            out = _core.predict(params, indptr, indices, values, attention, threads)
        else:
            out = np.concatenate([_core.predict(params, indptr[a:b + 1] - indptr[a], indices[indptr[a]:indptr[b]],
                                                values[indptr[a]:indptr[b]], attention, threads) for a, b in blocks])
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
        weights = _core.pair_attention(state.core_params(), *csr_arrays(X), pair_indptr, state.spec.attention,
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

    def explain(self, X, feature_names=None, fields=None, field_names=None, dense=None, pairs=True):
        """Exact additive explanations of the raw output y(x) (a classifier's decision_function, a regressor's
        predict), in SHAP's layout (fastafm.explain.Explanation):
        `.values` (n_rows, n_features), `.base_values` (n_rows,), `.data`, `.feature_names`, whose rows sum to
        that output (w0 the base value; each pair's term split half-half between its two features),
        plus every row's pair terms (`.pairs`, `.pair_values`, `.pair_weights`) and `.field_pairs(fields)`.
        feature_names / fields / field_names: e.g. a FieldEncoder's feature_names_, fields_, field_names_.
        `.to_shap()` gives a shap.Explanation when shap is installed; fastafm.plot.waterfall draws one row.
        dense: values as an array (True), a CSR matrix (False), or dense up to 2**24 cells (None); pairs=False
        (FM only): the feature values without the pair terms, in O(k) a non-zero (docs/explain.md)."""
        from ..explain import explain

        state = self._fitted_state()
        return explain(state, self._predict_rows(X, state), self._threads(), self._logit_offset(), feature_names,
                       fields, field_names, dense, pairs)

    def predictor(self, kind=None, n_threads=None):
        """A callable for serving loops (fastafm.serving.Predictor, docs/serving.md): the model checked once and
        held by the core with its work memory, each call checking only its rows. `predictor(X)` (CSR, float32
        values, int32 indices), `.csr(indptr, indices, values)` and `.row(indices, values)` (one row) equal, to
        the last bit, `decision_function` (kind "decision", a classifier's default), `predict_proba(X)[:, 1]`
        ("proba") or `predict` ("predict", a regressor's default and only kind). n_threads: None takes the
        estimator's; a call of few rows runs on the calling thread alone. After a fit or partial_fit of this
        estimator the predictor refuses to run (RuntimeError): make a new one."""
        from ..serving import Predictor

        state = self._fitted_state()
        threads = self.n_threads if n_threads is None else n_threads
        return Predictor(self, state, self._serving_outputs(state), kind, self._logit_offset(), threads)

    def _serving_outputs(self, state: TrainingState) -> dict:
        """{kind: transform of the float64 raw outputs (None: the raw outputs)}, the default kind first."""
        raise NotImplementedError

    def save(self, path) -> None:
        """Write the fitted model to `path` (see fastafm.models.persistence for the format)."""
        save_model(self, path)

    # ------------------------------------------------------------------ internals
    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        return tags

    def _validated(self, kind) -> dict:
        """The hyperparameters, checked against the table (fastafm.models.hyperparams)."""
        values = {name: getattr(self, name) for name in kind.signature.names}
        validate(values, kind.signature.names)
        return values

    def _new_state(self, kind, values: dict, n_features: int, labels: dict, row_nnz: float) -> TrainingState:
        fields = kind.fields(values, n_features)
        state = init_state(kind.spec(values, n_features, fields), self.optimizer, self.init_std, self.random_state)
        state.fields = fields
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
        validate({"n_threads": self.n_threads}, ("n_threads",))
        return int(self.n_threads)

    @property
    def encoding_(self):
        """The RawEncoding of the raw log (CSV, TSV, Parquet, DataFrame) this model was trained from through
        `fastafm.convert`, None otherwise. With it, predict and the other methods that take X also take raw
        rows in that format: a path, a glob, a list of paths or a DataFrame (docs/data.md)."""
        return self._state_attr(lambda s: s.encoding, "encoding_")

    def _predict_rows(self, X, state: TrainingState, name: str = "X"):
        if state.encoding is not None and is_raw_rows(X):
            X, _ = encode_rows(X, state.encoding)
        X = as_csr(X, n_features=state.spec.n_features, owner=type(self).__name__)
        check_kernel_memory(X, state.spec.embedding_dim, state.spec.attention_dim, self._threads(),
                            attention=state.spec.attention, name=name)
        return X

