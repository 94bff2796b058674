"""Data-parallel training of AFM models across the workers of a dask.distributed cluster.

    from dask.distributed import Client, LocalCluster
    from fastafm.dask import DaskAFMRegressor

    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    model = DaskAFMRegressor(embedding_dim=64, n_epochs=10, random_state=0).fit(X, y)  # dask collections
    pred = model.predict(X_test)          # a dask array / Series, computed on the workers
    local = model.to_local()              # the equivalent fitted AFMRegressor (save, pair_attention, ...)

How it trains (see docs/distributed.md for the design and its measured costs):

1. The partitions of X and y are assigned to the workers in order, in contiguous runs of about equal rows,
   and each worker loads its run into one resident shard (CSR rows and targets); the data never passes
   through the client. Cache files are not loaded: each worker streams its files in blocks of their
   `block_rows` rows through one reusable buffer (fastafm.CacheFile(path, block_rows=...) sets the block), so
   it holds one block, the model and its optimizer state, never its whole shard.
2. Every epoch, each worker shuffles its shard (cache files: the order of the blocks, then the rows within
   each block, as the single-process streaming fit). Then, in sync rounds, every worker runs the C++ core over its
   next `sync_rows` rows starting from the same model, and the workers' models are averaged (parameters and
   optimizer slots; rows of w and V over the workers that touched them, weighted by how often,
   everything else weighted by rows; fastafm.dask.merge). The average is computed on the first worker;
   every worker trains its own replica of the model in place and fetches only what the merge changed (the
   dense parameters and the rows of w and V touched in the round): the client only schedules tasks and
   reads a few numbers per epoch.
3. Everything else is the one-process pipeline: the workers' rows are the row sources of fastafm.training,
   each trained through a core Trainer; the epochs run in the training engine with the same callbacks
   (fastafm.training.session), so early stopping, eval_set forms (weights included), history, divergence
   rollback and best-epoch restore are the in-memory estimators'. After every epoch each worker scores its
   share of the evaluation rows (an eval_set, streamed from cache files, or validation_fraction of its own
   rows held out) with its replica; the client combines the objective's sums into the metrics, and keeps the
   best epoch's merged model (a future on the first worker) to restore. `partial_fit` runs one epoch,
   continuing the model, optimizer and shuffling.
4. `predict` maps the fitted model over the partitions of its input (map_blocks / map_partitions).

The result is deterministic for a fixed random_state, the same partitioning and the same number of workers.
Needs the optional dependencies: pip install fastafm[dask].
"""
from __future__ import annotations

import copy

try:  # the optional dependencies, checked here to name the extra that brings them
    import dask.array
    import distributed

    del dask, distributed
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test without dask on sys.path
    raise ImportError(
        "fastafm.dask needs the optional dependencies dask and distributed: pip install fastafm[dask]"
    ) from exc

from .._compat import BaseEstimator, ClassifierMixin, RegressorMixin, check_fitted, fitted_state
from ..models import registry as _registry
from ..models.atomic import atomic_refit
from ..models.estimators import AFMClassifier, AFMRegressor, FwFMClassifier, FwFMRegressor
from ..models.hyperparams import SIGNATURES, core_settings, store, validate
from ..rawlog.reader import is_raw_rows
from ..training import session
from ..training.callbacks import check_metric
from ..training.state import init_state
from . import driver
from .inputs import get_client, map_predict
from .raw import RawLog

__all__ = ["DaskAFMClassifier", "DaskAFMRegressor", "DaskFwFMClassifier", "DaskFwFMRegressor"]

_DASK_ONLY = ("sync_rows", "combine", "client")


class _DaskBase(BaseEstimator):
    """Shared code of the Dask estimators; see DaskAFMRegressor for the parameters."""

    _local_class: type = AFMRegressor
    _signature = "dask"  # its hyperparameters in fastafm.models.hyperparams.SIGNATURES
    #: Send the whole model to every worker each round instead of the touched rows (the behaviour before the
    #: rows were tracked; the same values, more bytes): for the tests and bench/dask_scaling.py's comparison.
    _full_sync = False

    def __sklearn_clone__(self):
        """sklearn.base.clone: an unfitted copy sharing the same client (a Client cannot be deep-copied)."""
        params = self.get_params(deep=False)
        client = params.pop("client")
        return type(self)(**copy.deepcopy(params), client=client)

    # ------------------------------------------------------------------ public API
    @atomic_refit
    def fit(self, X, y=None, sample_weight=None, eval_set=None):
        """Train for at most `n_epochs` epochs (fewer with early stopping). Returns self.

        X, y: dask collections: X a dask array (numpy or scipy.sparse chunks) or a dask DataFrame of numeric
        columns (one dense feature each), y a dask array or Series with the same partitions as X. Or X a list
        of cache files (paths or fastafm.CacheFile, written by fastafm.convert; each file is one partition,
        read by the worker it is assigned to, so the paths must be valid on the workers) and y None. Or X a
        fastafm.dask.RawLog (raw CSV/TSV/Parquet files or a dask DataFrame of raw columns, with the schema):
        converted on the workers first (fastafm.dask.convert), then trained on as its caches; y None.
        sample_weight: a dask array or Series of one weight per row, partitioned like X (each row's loss times
        its weight, docs/model.md); with cache files None, their weights sections are used.

        eval_set: (X_eval, y_eval) or (X_eval, y_eval, sample_weight_eval), or a list of one such tuple, evaluated after every epoch (history_) and
        watched by early stopping as in the in-memory estimators. X_eval, y_eval: data in the client (NumPy,
        SciPy; sent once to the first worker), dask collections (each worker loads its share of the
        partitions), or X_eval a list of cache files and y_eval None (each worker streams its share of the
        files at every evaluation, never holding them whole). Without an eval_set, early stopping holds out `validation_fraction` of the training rows
        (docs/distributed.md: which ones).
        """
        kind, local_values = self._checked()
        objective = kind.objective
        metric = check_metric(self.early_stopping_metric, objective.metrics, type(self).__name__)
        client = get_client(self.client)
        if isinstance(X, RawLog):  # converted on the workers first
            if y is not None:
                raise ValueError("y must be None with a RawLog: the label is one of its columns (label=)")
            X = X.caches(client)
        data = driver.load(client, X, y, kind.loss, type(self).__name__, sample_weight=sample_weight)
        state = self._new_state(kind, local_values, data)
        driver.labels(client, data, state, kind.loss, None, getattr(self, "class_weight", None))
        stopping = session.early_stopping_on(self.early_stopping, sum(data.n_local), eval_set is not None)
        parts = None
        if eval_set is not None:
            parts = driver.eval_parts(client, session.eval_set_parts(eval_set), data, state, kind.loss,
                                      type(self).__name__, objective)
        elif stopping:
            parts = driver.hold_out(client, data, float(self.validation_fraction), self.random_state,
                                    objective.classifier)
        driver.start_from_the_average(client, data, state, objective)
        best = self._train(client, kind, local_values, state, data, int(self.n_epochs), parts, stopping, metric)
        self._fitted(kind, local_values, state, data)
        session.record_results(self, state.history, parts is not None, best, metric, stopping)
        return self

    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """One more epoch over (X, y) (the same inputs as `fit`), continuing from the current parameters,
        optimizer state, shuffling and dropout streams; on an unfitted model, one epoch from a fresh one.
        `classes` (classifier, optional): the two labels, for a first batch that may hold only one of them.
        Never stops early and never evaluates."""
        kind, local_values = self._checked()
        client = get_client(self.client)
        fitted = hasattr(self, "_local_")
        data = driver.load(client, X, y, kind.loss, type(self).__name__, self.n_features_in_ if fitted else None,
                           sample_weight)
        if fitted:
            state = fitted_state(self._local_)
        else:
            state = self._new_state(kind, local_values, data)
        driver.labels(client, data, state, kind.loss, classes, getattr(self, "class_weight", None), partial=True)
        if not fitted:
            driver.start_from_the_average(client, data, state, kind.objective)
        self._train(client, kind, local_values, state, data, 1, None, False, "")
        self._fitted(kind, local_values, state, data)
        return self

    def to_local(self):
        """The fitted model as an in-memory AFMRegressor / AFMClassifier (a copy): save, pair_attention,
        predict on NumPy/SciPy data, partial_fit ... all work on it."""
        self._check_fitted()
        return copy.deepcopy(self._local_)

    def predict(self, X):
        """Predictions for a dask array (-> dask array) or dask DataFrame (-> dask Series), lazily."""
        return self._map(X, "predict")

    # ------------------------------------------------------------------ internals
    def _new_state(self, kind, values: dict, data):
        """A fresh training state for the loaded data (FwFM: with the field of every feature; a raw log's
        caches: with their encoding, and their fields for FwFM's fields=None)."""
        if data.fields is not None and kind.takes_fields(values) and values.get("fields") is None:
            values = {**values, "fields": data.fields}
        fields = kind.fields(values, data.n_features)
        state = init_state(kind.spec(values, data.n_features, fields), self.optimizer, self.init_std,
                           self.random_state)
        state.fields = fields
        state.row_nnz = data.row_nnz
        state.encoding = data.encoding
        return state

    def _checked(self):
        """(the Kind of the local model, its hyperparameters), validated against the table."""
        kind = _registry.kind(self._local_class)
        names = SIGNATURES[self._signature].names
        values = {name: getattr(self, name) for name in names}
        validate(values, names)
        return kind, {name: values[name] for name in names if name not in _DASK_ONLY}

    def _train(self, client, kind, values, state, data, n_epochs: int, parts, stopping: bool, metric: str):
        """`n_epochs` epochs of sync rounds (DaskEpochs) in the training engine with the callbacks of a fit;
        the merged model (the best epoch's with early stopping) ends in `state`. Returns (best epoch, score)."""
        spec = state.spec
        settings = [core_settings(kind.values(values), spec.loss, spec.attention, spec.learn_projection,
                                  n_threads=int(self.n_threads) or int(data.nthreads[a]), family=kind.family,
                                  row_nnz=state.row_nnz)
                    for a in data.workers]
        with driver.DaskEpochs(client, data, state, settings, self, self._full_sync) as epochs:
            evaluate = None if parts is None else (lambda: epochs.evaluate(parts, kind.objective))
            best = session.run(epochs, n_epochs, evaluate, stopping, metric, self)
            epochs.fetch()
            self.sync_stats_ = epochs.sync_stats()
        return best

    def _fitted(self, kind, local_values, state, data) -> None:
        self.n_features_in_ = data.n_features
        self.n_workers_ = len(data.workers)
        self._local_ = kind.build(local_values, state)
        self.learning_rate_ = self._local_.learning_rate_  # "auto" resolved for the optimizer
        if state.classes is not None:
            self.classes_ = state.classes
        if state.label_range is not None:
            self.label_range_ = state.label_range
        self.history_ = state.history
        self.n_epochs_done_ = state.n_epochs_done

    def _check_fitted(self):
        check_fitted(self, "_local_")

    def _map(self, X, method: str):
        self._check_fitted()
        if fitted_state(self._local_).encoding is not None and is_raw_rows(X):
            # raw rows of the log the model was trained on: encoded and predicted here, as the local model does
            return getattr(self._local_, method)(X)
        return map_predict(self._local_, X, method, type(self).__name__)


class _DaskAFMBase(_DaskBase):
    """The Dask AFM estimators' hyperparameters (AFMRegressor's, without pretrain and loss, and the Dask ones)."""

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
        sync_rows=16384,
        combine="average",
        client=None,
        field_aware=None,
        fields=None,
    ):
        store(self, locals())


class _DaskFwFMBase(_DaskBase):
    """The Dask FwFM estimators' hyperparameters (FwFMRegressor's, and the Dask ones)."""

    _signature = "dask_fwfm"

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
        fields=None,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        sync_rows=16384,
        combine="average",
        client=None,
    ):
        store(self, locals())


class DaskAFMRegressor(RegressorMixin, _DaskAFMBase):
    """AFMRegressor trained data-parallel on a dask.distributed cluster.

    Parameters
    ----------
    embedding_dim, attention_dim, dropout, attention_l2, l2, learning_rate, optimizer, batch_size, n_epochs,
    init_std, attention, random_state, verbose, early_stopping, validation_fraction, n_iter_no_change, tol,
    early_stopping_metric
        As in fastafm.AFMRegressor ("auto" early stopping: on with an eval_set or at least 1,000 training
        rows). Without an eval_set, each worker holds out validation_fraction of its rows: a seeded split of
        an in-memory shard (stratified for the classifier), and from cache files each row with probability
        validation_fraction, drawn per block from (seed, file index, block index); the held-out rows are
        read into the worker's memory once. There is no `pretrain` (train an FM first and use its w, V via
        to_local() if needed).
    n_threads : int, default 0
        Threads of the core in each worker's task; 0 uses the worker's thread count (threads_per_worker).
    sync_rows : int, default 16384
        Rows each worker trains between two synchronisations (the largest worker's share; the others scale
        theirs so that all finish an epoch in the same number of rounds). Smaller: closer to single-process
        training, more rounds; see docs/distributed.md for the measured trade-off.
    client : dask.distributed.Client or None
        The cluster to train on; None uses the current client (distributed.get_client()).

    Attributes
    ----------
    n_features_in_, history_ (one dict per epoch: train_loss, seconds, eval_* with evaluation rows),
    n_epochs_done_, label_range_, learning_rate_ (the learning rate used: `learning_rate`, or "auto" resolved
    for the optimizer)
    best_epoch_, best_score_, validation_score_, do_early_stopping_ : as in AFMRegressor
    n_workers_ : workers that trained
    sync_stats_ : dict, what synchronisation cost in the last fit/partial_fit: rounds, rows_per_round,
        state_bytes (parameters + optimizer slots), bytes_up_per_round (all workers' updates),
        bytes_down_per_round (the merges' deltas to the other workers), bytes_down_full_per_round (what
        sending the whole model would cost), bytes_initial (the model to the other workers once per fit),
        wall_seconds, compute_seconds_per_worker, merge_seconds, sync_share (share of the wall time not
        spent in the slowest worker's core)
    """

    _local_class = AFMRegressor


class DaskAFMClassifier(ClassifierMixin, _DaskAFMBase):
    """AFMClassifier trained data-parallel on a dask.distributed cluster; see DaskAFMRegressor. Labels may be
    any two values; `classes_[1]` is the positive class. `class_weight` (None, "balanced": n_rows / (2
    count(c)) counted over every worker's rows, or a dict) multiplies each row's sample weight, as in
    AFMClassifier; `negative_sampling_rate` corrects the predictions of downsampled logs, as there."""

    _local_class = AFMClassifier
    _signature = "dask_classifier"

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
        class_weight=None,
        negative_sampling_rate=1.0,
        sync_rows=16384,
        combine="average",
        client=None,
        field_aware=None,
        fields=None,
    ):
        store(self, locals())

    def decision_function(self, X):
        """Raw model output, the logit of classes_[1], as a dask array / Series, lazily."""
        return self._map(X, "decision_function")

    def predict_proba(self, X):
        """Class probabilities, (n_rows, 2) as a dask array, or a dask DataFrame with one column per class."""
        return self._map(X, "predict_proba")


class DaskFwFMRegressor(RegressorMixin, _DaskFwFMBase):
    """FwFMRegressor (FM with one weight per field pair) trained data-parallel on a dask.distributed cluster.

    Parameters: FwFMRegressor's (`fields`: the field of every feature, as there), and `n_threads`,
    `sync_rows`, `combine`, `client` as in DaskAFMRegressor; training, early stopping, the merge (the field-pair
    weights R are a dense parameter, averaged by rows) and prediction work as there. `to_local()` gives the
    fitted FwFMRegressor (field_weights_, save, ONNX ...).
    """

    _local_class = FwFMRegressor


class DaskFwFMClassifier(ClassifierMixin, _DaskFwFMBase):
    """FwFMClassifier trained data-parallel on a dask.distributed cluster; see DaskFwFMRegressor. Labels may be
    any two values; `classes_[1]` is the positive class; `class_weight` as in DaskAFMClassifier."""

    _local_class = FwFMClassifier
    _signature = "dask_fwfm_classifier"

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
        fields=None,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        class_weight=None,
        sync_rows=16384,
        combine="average",
        client=None,
    ):
        store(self, locals())

    def decision_function(self, X):
        """Raw model output, the logit of classes_[1], as a dask array / Series, lazily."""
        return self._map(X, "decision_function")

    def predict_proba(self, X):
        """Class probabilities, (n_rows, 2) as a dask array, or a dask DataFrame with one column per class."""
        return self._map(X, "predict_proba")
