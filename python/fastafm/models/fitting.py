"""Fitting in one process: fit and partial_fit of every estimator, over rows in memory or a streamed cache.

A fit builds a fastafm.training.state.TrainingState and runs the training engine on it (LocalEpochs; the
session's callbacks: evaluation, history, early stopping); every epoch is one call into the compiled core,
which runs every mini-batch in C++ with the GIL released. The loss-specific parts (targets, metrics) come
from the estimator's objective (fastafm.objectives).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data.cache import as_cache
from ..data.validation import as_csr
from ..training import exact_linear, session
from ..training.linear_mix import keep_the_best_mix
from ..training.cache_rows import CacheRows
from ..training.callbacks import check_metric
from ..training.engine import LocalEpochs
from ..training.evaluation import CacheEval, InMemoryEval, evaluate
from ..training.rows import InMemoryRows
from ..training.state import TrainingState, init_state
from ..training.weights import cache_class_weights, check_sample_weight, class_row_weights, combine
from . import registry as _registry
from .atomic import atomic_refit
from .base import _Base, _exclusive
from .hyperparams import core_settings, pretrain_learning_rate, validate
from .warm_start import PRETRAIN_STAGES, warm_start_params


class _Fitting(_Base):
    """fit and partial_fit; `_objective` (fastafm.objectives) is set by the regression/classification classes."""

    _objective: Any = None
    _metrics: tuple = ()  # eval metrics (the eval_ keys of history_), lower is better except auc

    @_exclusive
    @atomic_refit
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
        values, encoding = _raw_log_facts(kind, self._validated(kind), X)
        metric = check_metric(self.early_stopping_metric, self._objective.metrics, type(self).__name__)
        rows, n_features, labels = self._rows(X, y, fitting=True, sample_weight=sample_weight)
        row_nnz = rows.mean_nnz  # of all the rows given, before a hold-out (the Dask estimators' too)
        evaluation = self._prepare_eval_set(eval_set, n_features, labels.get("classes"))
        if kind.spec(values, n_features).attention:  # refused before an FM is pretrained on them
            rows.check_pairs()
            if evaluation is not None:
                evaluation.check_pairs()
        stopping = session.early_stopping_on(self.early_stopping, rows.n_rows, evaluation is not None)
        values = kind.settle_field_aware(values, stopping)
        if stopping and evaluation is None:
            rows, evaluation = self._hold_out(rows, kind, labels)
        init_params = None if init is None else warm_start_params(init, n_features, int(self.embedding_dim))
        target_sums = rows.target_sums()  # one pass (a cache: its labels section) for the FM's and the AFM's w0
        pretrain_history, linear = None, None
        if init is None and values.get("pretrain") in PRETRAIN_STAGES:
            if values["pretrain"] == "linear+fm":
                linear = self._linear_stage(kind, values, rows, n_features, labels, evaluation, stopping, metric,
                                            row_nnz, target_sums)
            fm_state, _ = self._pretrain_fm(kind, values, rows, n_features, labels, evaluation, stopping, metric,
                                            row_nnz, target_sums, start=None if linear is None else linear[0].params)
            init_params = warm_start_params(fm_state.params, n_features, int(self.embedding_dim))
            pretrain_history = fm_state.history
            del fm_state  # its arrays live on in init_params only until they are copied below
        state = self._new_state(kind, values, n_features, labels, row_nnz)
        state.encoding = encoding
        self._start_from_the_average(state, target_sums)
        if init_params is not None:
            for name, arr in init_params.items():
                np.copyto(state.params[name], arr)
            del init_params
        if pretrain_history is not None and self.verbose:
            print(f"training {type(self).__name__} from the pretrained FM", flush=True)
        best = self._train_new(state, self._settings(kind, state), rows, evaluation, stopping, metric)
        if linear is None and stopping and best[0] is not None and values.get("linear_fallback") and \
                exact_linear.applies(rows, evaluation):  # best[0] None: no validation score (n_epochs=0)
            linear = _exact_linear(self._objective, self.verbose, rows, labels, evaluation, metric,
                                   target_sums, self._threads())
        best, share = keep_the_best_mix(state, linear if stopping else None, best, metric, evaluation,
                                        self._objective, lambda *arrays: self._scores(state, *arrays), self.verbose)
        if "pretrain" in values:
            self.pretrain_history_ = pretrain_history
        if "linear_fallback" in values:
            self.linear_history_ = None if linear is None else linear[0].history
            self.linear_share_ = share
        session.record_results(self, state.history, evaluation is not None, best, metric, stopping)
        return self

    def _hold_out(self, rows, kind, labels):
        """(the rows left to train on, the held-out rows to evaluate): a seeded split of `validation_fraction`
        of the training rows, stratified by class for a classifier; from a cache the same rows as from the same
        rows in memory (drawn from its labels section: fastafm.training.cache_rows)."""
        rng = session.split_generator(self.random_state)
        fraction = float(self.validation_fraction)
        stratify = self._objective.classifier
        if isinstance(rows, CacheRows):
            rows, held = rows.hold_out_split(fraction, rng, stratify)
        else:
            rows, held = rows.hold_out(fraction, rng, stratify=stratify)
        if "label_range" in labels:  # the range of the rows trained on
            labels["label_range"] = rows.target_range()
        return rows, held

    def _start_from_the_average(self, state: TrainingState, target_sums) -> None:
        """w0 of a new model: the objective's output at the mean target of `target_sums` (sum w*y, sum w)."""
        total, weight = target_sums
        if weight > 0:
            state.params["w0"][0] = self._objective.initial_bias(total / weight)

    def _linear_stage(self, kind, values, rows, n_features, labels, evaluation, stopping, metric, row_nnz,
                      target_sums) -> tuple:
        """The linear model of pretrain="linear+fm": (an object with its params and history, (best, score)):
        solved exactly where fastafm.training.exact_linear applies, else the SGD stage (`_pretrain_fm`, V = 0)."""
        if exact_linear.applies(rows, evaluation):
            return _exact_linear(self._objective, self.verbose, rows, labels, evaluation, metric, target_sums,
                                 self._threads())
        return self._pretrain_fm(kind, values, rows, n_features, labels, evaluation, stopping, metric, row_nnz,
                                 target_sums, stage="linear")

    def _pretrain_fm(self, kind, values, rows, n_features, labels, evaluation, stopping, metric,
                     row_nnz, target_sums, start=None, stage="fm") -> tuple:
        """(the training state, its (best epoch, best score)) of an FM fitted on `rows` (the paper's warm start
        of AFM): this estimator's embedding_dim, dropout, l2, optimizer, batch size, epochs, seed and early
        stopping on the same evaluation rows; the learning rate "auto" (the FM's own), or a given one scaled by
        the ratio of the FM's and the AFM's defaults for the optimizer. `start`: w0 and w to start from (the
        linear stage's) instead of the average. stage="linear": the same FM with V = 0 throughout (its gradient
        is 0 there), which is the linear model w0 + w.x trained by the same optimizer (pretrain="linear+fm")."""
        fm = _registry.sibling(kind, "fm")
        fm_values = {name: values[name] for name in fm.signature.names}
        fm_values["learning_rate"] = pretrain_learning_rate(values["learning_rate"], self.optimizer)
        init_std = 0.0 if stage == "linear" else self.init_std
        state = init_state(fm.spec(fm_values, n_features), self.optimizer, init_std, self.random_state)
        if start is None:
            self._start_from_the_average(state, target_sums)
        else:
            for name in ("w0", "w"):
                np.copyto(state.params[name], start[name])
        state.classes, state.label_range = labels.get("classes"), labels.get("label_range")
        state.row_nnz = row_nnz
        if self.verbose:
            what = "the linear model" if stage == "linear" else fm.name
            print(f"pretraining {what} (the warm start of {type(self).__name__})", flush=True)
        settings = core_settings(fm.values(fm_values), state.spec.loss, state.spec.attention,
                                 state.spec.learn_projection, family=fm.family, row_nnz=row_nnz)
        try:
            best = self._train_new(state, settings, rows, evaluation, stopping, metric, prefix=f"{stage} ")
        except FloatingPointError as exc:
            raise FloatingPointError(f"pretraining the {stage} stage (pretrain={values['pretrain']!r}): {exc}; "
                                     f"{type(self).__name__} was not trained (pretrain=None skips it)") from exc
        return state, best

    def _train_new(self, state, settings, rows, evaluation, stopping, metric, prefix=""):
        """`n_epochs` epochs of the engine on `state` with evaluation, history and (stopping) early stopping;
        returns (best epoch, best score) of `metric` ((None, nan) without an evaluation)."""
        if isinstance(evaluation, InMemoryEval):  # the scratch predict needs for its longest row, checked once
            self._predict_rows(evaluation.X, state, "eval_set X")

        def scores() -> dict:
            return evaluate(self._objective, [evaluation], lambda *arrays: self._scores(state, *arrays), state.label_range)

        return session.run(LocalEpochs(state, rows, settings, self.verbose), int(self.n_epochs),
                           None if evaluation is None else scores, stopping, metric, self, prefix)

    @_exclusive
    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """One more epoch over (X, y), continuing from the current parameters and optimizer state
        (initialising them first if the model is not fitted yet). `classes` (classifier only, optional): the
        two labels, for a first batch that may hold only one of them. X may be a CacheFile (y None): one
        epoch streamed from it. `sample_weight`: as for fit (a class_weight dict applies too; "balanced"
        is refused, one batch's class counts are not the data's)."""
        kind = _registry.kind(type(self))
        if not hasattr(self, "training_state_"):
            values, encoding = _raw_log_facts(kind, kind.settle_field_aware(self._validated(kind), False), X)
            rows, n_features, labels = self._rows(X, y, fitting=True, classes=classes, sample_weight=sample_weight,
                                                  partial=True)
            self._start_from_the_average(self._new_state(kind, values, n_features, labels, rows.mean_nnz),
                                         rows.target_sums())
            self.training_state_.encoding = encoding
        else:
            if kind.classifier:
                validate({"class_weight": self.class_weight}, ("class_weight",))
            rows, _, _ = self._rows(X, y, fitting=False, classes=classes, sample_weight=sample_weight, partial=True)
        state = self.training_state_
        state.edits += 1  # before training: a predictor made before this call refuses the changed arrays
        session.run(LocalEpochs(state, rows, self._settings(kind, state), self.verbose), 1, None, False, "", self)
        return self

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
            fitted = None if fitting or not self._objective.classifier else self.classes_
            y_enc, labels = self._objective.fit_targets(y, X.shape[0], fitting, classes, fitted, type(self).__name__)
            weights = check_sample_weight(sample_weight, X.shape[0])
            if hasattr(self._objective, "check_weights"):  # rate targets: every row stands for > 0 rows
                self._objective.check_weights(weights)
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
        fitted = None if fitting or not self._objective.classifier else self.classes_
        encode, labels = self._objective.cache_targets(cache, fitting, classes, fitted, type(self).__name__)
        class_weights = None
        if getattr(self, "class_weight", None) is not None:
            found = labels["classes"] if fitting else self.classes_
            class_weights = cache_class_weights(self.class_weight, cache, found, partial)
        rows = CacheRows([cache], encode, class_weights=class_weights)
        rows.check_weight()
        return rows, cache.n_features, labels

    def _prepare_eval_set(self, eval_set, n_features, classes=None):
        """The eval_set as evaluation rows: in memory (CSR-able X, its y and optional weights), or a CacheFile
        streamed at every evaluation (y None; its weights are in the file)."""
        if eval_set is None:
            return None
        X, y, w = session.eval_set_parts(eval_set)
        cache = as_cache(X)
        if cache is not None:
            if y is not None or w is not None:
                raise ValueError("eval_set: y and sample_weight must be None when X is a CacheFile: its labels and "
                                 "weights are in the file")
            if cache.n_features > n_features:
                raise ValueError(f"eval_set {cache.path} has {cache.n_features} features, but {type(self).__name__} "
                                 f"is expecting {n_features} features as input")
            encode, _ = self._objective.cache_targets(cache, False, None, classes, type(self).__name__)
            return CacheEval([cache], encode, n_features)
        X_eval = as_csr(X, name="eval_set X", n_features=n_features, owner=type(self).__name__)
        # regression targets, or labels of the fitted classes (strings too; an unknown label cannot be scored)
        y_eval = self._objective.eval_targets(y, X_eval.shape[0], classes)
        w_eval = None if w is None else check_sample_weight(w, X_eval.shape[0], name="eval_set sample_weight")
        return InMemoryEval(X_eval, y_eval, w_eval)


def _raw_log_facts(kind, values: dict, X) -> tuple:
    """(hyperparameter values, encoding): for a raw log's cache (fastafm.rawlog), its encoding, which the model
    keeps for predicting raw rows (None for any other X, a libFFM file's cache too); for FwFM and field-aware AFM
    with fields=None, the field of every feature of a cache that carries them (a raw log's, a libFFM file's, or
    one converted with fields=)."""
    cache = as_cache(X)
    if cache is None or not cache.has_fields:
        return values, None
    if kind.takes_fields(values) and values.get("fields") is None:
        values = {**values, "fields": cache.read_fields()}
    return values, cache.read_encoding()


def _exact_linear(objective, verbose, rows, labels, evaluation, metric, target_sums, n_threads: int) -> tuple:
    """The linear model w0 + w.x solved exactly, its L2 chosen on the evaluation rows: (its LinearStage,
    (best index, best score)) (fastafm.training.exact_linear)."""
    total, weight = target_sums
    if verbose:
        print("fitting the linear model exactly (its L2 chosen on the validation rows)", flush=True)
    return exact_linear.fit(rows, objective, evaluation, metric, labels.get("label_range"),
                            objective.initial_bias(total / weight), n_threads)
