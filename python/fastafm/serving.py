"""The serving loop's predictor: `model.predictor()` of every fitted estimator (docs/serving.md).

A `Predictor` checks the model once and keeps it: the core holds views of the parameter arrays and its work
memory (packed attention weights, block scratch) between calls, so a call checks only its rows' dtypes, shapes,
ids and values and runs the kernels (on the calling thread, without an OpenMP region, when the rows are few).
Its outputs equal the estimator's to the last bit: `decision_function` (classifiers, kind "decision"),
`predict_proba(X)[:, 1]` (kind "proba"), `predict` (kind "predict": a regressor's values, a classifier's labels).

It serves the model as it was when `predictor()` was called: after a `fit` or `partial_fit` of the estimator a
call raises RuntimeError (make a new predictor). One predictor may be shared by threads (calls release the GIL;
a call that finds the kept memory in use by another runs on fresh memory), but not with a fit of its model.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
import scipy.sparse as sp

from . import _core
from .data import limits

_F32 = np.dtype(np.float32)
_I32 = np.dtype(np.int32)


class Predictor:
    """A fitted model's outputs for a serving loop (make it with `estimator.predictor(kind, n_threads)`).

    Call forms (every id in [0, n_features), values finite; wrong dtypes are a TypeError, not converted):

    * `predictor(X)`: X a SciPy CSR matrix or array of n_features columns, float32 values, int32 indices
      (int32 or int64 indptr): float64 outputs, shape (n_rows,).
    * `predictor.csr(indptr, indices, values)`: the same from the three CSR arrays.
    * `predictor.row(indices, values)`: one row, int32 ids and float32 values (1-D, equal length): its output as
      a scalar.

    `out=` (predictor(X) and csr, kinds whose output is the raw one): a float64 array of shape (n_rows,) to
    write into instead of a new array.
    """

    def __init__(self, estimator, state: Any, outputs: Dict[str, Optional[Callable]], kind: Optional[str], offset: float,
                 n_threads: int):
        kinds = tuple(outputs)
        kind = kinds[0] if kind is None else kind
        if kind not in outputs:
            raise ValueError(f"kind must be one of {', '.join(map(repr, kinds))} for {type(estimator).__name__}, "
                             f"got {kind!r}")
        if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 0:
            raise ValueError(f"n_threads must be an integer >= 0 (0: all cores), got {n_threads!r}")
        self.kind = kind
        self.n_threads = int(n_threads)
        self.n_features_in_ = int(state.spec.n_features)
        self._estimator = estimator
        self._state = state
        self._edits = (state.n_epochs_done, state.edits)
        self._offset = float(offset)
        self._transform = outputs[kind]
        self._core = _core.Predictor(state.core_params(), state.spec.attention, self.n_threads)
        self._attention = bool(state.spec.attention)

    def _check_current(self) -> None:
        state = self._state
        edits = (state.n_epochs_done, state.edits)
        if edits != self._edits or getattr(self._estimator, "training_state_", None) is not state:
            raise RuntimeError(f"the {type(self._estimator).__name__} was fitted again (fit or partial_fit) after "
                               "this predictor was made; call its predictor() again to serve the new model")

    def _check_pairs(self, indptr) -> None:
        """AFM's attention is O(pairs) a row: rows over fastafm.data.limits' pair limit are refused, as by
        predict (an O(1) test when all the rows' non-zeros together are under it). Malformed arrays are left to
        the core's checks."""
        if self._attention and isinstance(indptr, np.ndarray) and indptr.ndim == 1 and indptr.size \
                and indptr.dtype.kind in "iu":
            limits.check_rows(indptr)

    def _finish(self, raw: np.ndarray, out) -> np.ndarray:
        if self._transform is None:
            return raw
        if out is not None:
            raise ValueError(f"out= is for the raw outputs; kind {self.kind!r} makes a new array")
        return self._transform(raw)

    def __call__(self, X, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_current()
        if not (sp.issparse(X) and X.format == "csr"):
            raise TypeError(f"X must be a SciPy CSR matrix or array (scipy.sparse.csr_matrix), got "
                            f"{type(X).__name__}; one row: predictor.row(indices, values)")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the model is expecting {self.n_features_in_} "
                             "features as input")
        if X.data.dtype != _F32 or X.indices.dtype != _I32:
            raise TypeError(f"X must hold float32 values and int32 indices (convert once, outside the serving loop: "
                            f"X.astype(np.float32)), got {X.data.dtype} values and {X.indices.dtype} indices")
        self._check_pairs(X.indptr)
        return self._finish(self._core.csr(X.indptr, X.indices, X.data, self._offset, out), out)

    def csr(self, indptr, indices, values, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The outputs of CSR rows given as arrays: indptr int32/int64 (n_rows + 1), indices int32, values
        float32 (nnz)."""
        self._check_current()
        self._check_pairs(indptr)
        return self._finish(self._core.csr(indptr, indices, values, self._offset, out), out)

    def row(self, indices, values):
        """The output of one row: its feature ids (int32, 1-D) and values (float32, the same length)."""
        self._check_current()
        if self._attention and limits.pairs(len(indices)) > limits.max_pairs_per_row():
            limits.check_rows(np.array([0, len(indices)]), "predictor.row:")
        return self._finish(self._core.row(indices, values, self._offset, None), None)[0]

    @property
    def team_calls(self) -> int:
        """Calls whose rows were enough for more than one thread that ran on the thread team (n_threads > 1)."""
        return int(self._core.team_calls)

    @property
    def solo_calls(self) -> int:
        """Such calls that ran on the calling thread alone: the predictor judged the team's cores busy with other
        jobs (its threads got too little CPU time) and probes the team again later; the outputs are the same."""
        return int(self._core.solo_calls)

    def __repr__(self) -> str:
        return (f"<fastafm Predictor of a {type(self._estimator).__name__}: kind={self.kind!r}, "
                f"n_features={self.n_features_in_}, n_threads={self.n_threads}>")
