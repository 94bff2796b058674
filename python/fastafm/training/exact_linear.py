"""The linear stage of pretrain="linear+fm" solved exactly, for rows in memory with validation rows.

The model w0 + w.x is fitted by a truncated Newton method to the row-weighted mean loss plus (l2 / 2) ||w||^2 (w0 is not
penalised), for each l2 of L2_PATH from strong to weak, each solve starting from the previous one; the l2 kept
is the one whose model scores best on the validation rows. This is the regression a user would fit beside the
model (scikit-learn's LogisticRegression with C = 1 / (l2 x the weight sum), its C chosen on the same rows), so
the fit that starts from it and keeps it when it validates better never ends worse than that regression on
the validation rows. The SGD stage (an FM with V = 0) stays for fits without validation rows and for rows of
more than MAX_NNZ non-zeros. A cache's rows are read into memory for it (one process; not a Dask worker's shard).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from .. import _core
from . import cache_holdout
from .callbacks import better
from .evaluation import evaluate
from .cache_rows import CacheRows
from .rows import InMemoryRows

#: the penalties tried, strong to weak (per unit of the mean loss; a half-decade apart)
L2_PATH = tuple(float(v) for v in 10.0 ** np.arange(-2.0, -7.01, -0.5))
#: stop the path after this many penalties in a row that do not improve the validation score
PATIENCE = 1
#: Newton iterations per penalty, and CG iterations per Newton step (each a product with X and one with X^T).
#: Bounded: at the weak penalties of a nearly separable log (Frappe as clicks) the unbounded solve took 20x
#: the model's fit; with these bounds the path's validation scores agreed to 5 digits at 0.4x its CPU seconds.
MAX_ITER = 20
CG_MAX_ITER = 25
#: the stop: the Newton decrement -g.p, about twice how far the mean loss is from its minimum. 1e-6 (the mean
#: loss within ~5e-7 of its minimum) moved the path's validation log losses by at most 4e-5 on the six tuning sets
#: and kept the same penalty on each, at 0.2-0.6x the CPU seconds of 1e-16 (bench/linear_fallback_cost.py).
DECREMENT_TOL = 1e-6


#: the most non-zeros solved exactly: the solver keeps X, X^T and X^T squared in float64 and the C++ rows
#: (float32 values): about 40 bytes a non-zero
MAX_NNZ = 50_000_000


def applies(rows, evaluation) -> bool:
    """Whether the exact stage runs: rows in memory, or one process's cache (read into memory for it), of at
    most MAX_NNZ non-zeros, and validation rows to choose the penalty on."""
    return isinstance(rows, (InMemoryRows, CacheRows)) and evaluation is not None and rows.nnz <= MAX_NNZ


@dataclass
class LinearStage:
    """What the linear stage hands on: w0 and w (float32, the model's dtypes) and one history record per l2."""
    params: dict
    history: list = field(default_factory=list)
    l2: float = float("nan")


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a.b without BLAS: OpenBLAS's threads spin on a busy machine, and a dot of 10^5 elements then took 60x
    its single-thread time (measured here under load)."""
    return float(np.multiply(a, b).sum())


def loss_terms(loss: str, z: np.ndarray, t: np.ndarray) -> tuple:
    """(per-row loss, its first and second derivatives in z) of the core's losses: "logistic" with targets in
    [-1, 1] (+-1 for classes, 2r - 1 for rates: the cross-entropy of s(z) against (1 + t) / 2), "squared":
    (z - t)^2 / 2."""
    if loss == "logistic":
        c = 0.5 * (1.0 + t)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # s(z) without overflow
        return np.logaddexp(0.0, z) - c * z, p - c, p * (1.0 - p)
    if loss == "squared":
        r = z - t
        return 0.5 * r * r, r, np.ones_like(z)
    raise ValueError(f"the exact linear stage has no loss {loss!r}")


class Problem:
    """sum_i s_i loss(w0 + x_i.w, t_i) / sum_i s_i + l2 / 2 ||w||^2 over theta = (w0, w), with its gradient and
    Hessian-vector products (truncated Newton: a few Newton steps per penalty where L-BFGS needed hundreds of
    iterations on rare ids at weak penalties)."""

    def __init__(self, X, t: np.ndarray, weights, loss: str, n_threads: int = 1) -> None:
        """X: CSR rows (its values are used as float32, the model's rows; the sums are float64)."""
        X = scipy.sparse.csr_matrix(X)
        values = X.data.astype(np.float32)
        self.rows = _core.LinearRows(X.indptr.astype(np.int64), X.indices.astype(np.int32), values,
                                     X.shape[1], n_threads)  # the Hessian products: one pass, n_threads
        X = scipy.sparse.csr_matrix((values.astype(np.float64), X.indices, X.indptr), shape=X.shape)
        self.X, self.XT = X, X.T.tocsr()  # row-major both ways, for the gradient's products
        self.X2T = self.XT.multiply(self.XT).tocsr()  # squared values: the Hessian's diagonal
        self.t, self.loss = t, loss
        s = np.ones(X.shape[0]) if weights is None else np.asarray(weights, np.float64)
        self.s = s / s.sum()
        self.l2 = 0.0
        self._curvature = self.s

    def value_and_grad(self, theta: np.ndarray) -> tuple:
        z = theta[0] + self.X @ theta[1:]
        values, slope, curve = loss_terms(self.loss, z, self.t)
        self._curvature = self.s * curve  # for the Hessian products at this theta (Newton-CG asks there)
        g = self.s * slope
        grad = np.empty_like(theta)
        grad[0] = g.sum()
        grad[1:] = self.XT @ g + self.l2 * theta[1:]
        return _dot(self.s, values) + 0.5 * self.l2 * _dot(theta[1:], theta[1:]), grad

    def hessp(self, v: np.ndarray) -> np.ndarray:
        """H v, H the Hessian at the last theta evaluated: X^T (c * (X v + v0)) in one pass over the rows
        (_core.LinearRows; SciPy's X @ then X.T @ took two, on one thread)."""
        out = np.empty_like(v)
        out[0] = self.rows.hessian_product(np.ascontiguousarray(v[1:]), float(v[0]), self._curvature, out[1:])
        out[1:] += self.l2 * v[1:]
        return out

    def diagonal(self) -> np.ndarray:
        """The Hessian's diagonal at the last theta evaluated (the preconditioner of the CG steps: on one-hot
        rows of rare ids the Hessian is nearly diagonal, and Jacobi-preconditioned CG needs few products)."""
        out = np.empty(self.X.shape[1] + 1)
        out[0] = self._curvature.sum()
        out[1:] = self.X2T @ self._curvature + self.l2
        return np.maximum(out, 1e-300)

    def lower(self, l2: float, *thetas: np.ndarray) -> np.ndarray:
        """Of `thetas`, the one with the lowest objective at penalty `l2`. The path starts each solve from the
        last solution or its extrapolation from the last two (the solutions move smoothly with log l2): the
        better of the two took 15-30% fewer Hessian products on the six tuning sets."""
        self.l2 = float(l2)
        return min(thetas, key=lambda theta: self.value_and_grad(theta)[0])

    def solve(self, l2: float, start: np.ndarray, tol: float = DECREMENT_TOL) -> np.ndarray:
        """The minimiser at penalty `l2`, from `start`: Newton steps, each solved by preconditioned conjugate
        gradients to a relative residual that shrinks as the gradient does (truncated Newton), then a
        backtracking line search; stops when the Newton decrement -g.p (twice the predicted loss gain) is
        below `tol`."""
        self.l2 = float(l2)
        theta = np.array(start, dtype=np.float64)
        value, grad = self.value_and_grad(theta)
        for _ in range(MAX_ITER):
            step = self._newton_step(grad)
            decrement = -_dot(grad, step)
            if not decrement > tol:  # also stops on a nan
                break
            t = 1.0
            while True:
                trial = theta + t * step
                trial_value, trial_grad = self.value_and_grad(trial)
                if trial_value <= value - 1e-4 * t * decrement or t < 1e-10:
                    break
                t *= 0.5
            theta, value, grad = trial, trial_value, trial_grad
        if not np.all(np.isfinite(theta)):
            raise FloatingPointError(f"the exact linear stage diverged at l2={l2:g}")
        return theta

    def _newton_step(self, grad: np.ndarray) -> np.ndarray:
        """p with H p ~ -grad by Jacobi-preconditioned CG (H at the last theta evaluated) to a relative residual
        of min(0.5, sqrt(|grad|)), in C++ (_core.LinearRows.conjugate_gradient: as a NumPy loop its per-call
        overhead outweighed the products on logs of a few thousand rows; tests/test_linear_rows_kernel.py has
        that loop as the reference)."""
        inv_diag = 1.0 / self.diagonal()
        norm = np.sqrt(_dot(grad, grad))
        p = np.empty_like(grad)
        self.rows.conjugate_gradient(self._curvature, self.l2, inv_diag, np.ascontiguousarray(grad),
                                     min(0.5, np.sqrt(norm)) * norm, CG_MAX_ITER, p)
        return p


def fit(rows, objective, evaluation, metric: str, label_range, initial_bias: float, n_threads: int = 1) -> tuple:
    """(LinearStage, (best index or None, best score)) over L2_PATH for the in-memory `rows`
    (fastafm.training.rows.InMemoryRows) with the loss the `objective` trains (its core_loss), scored by
    `metric` on `evaluation` as the epochs are; the Hessian products on `n_threads` (0: all cores). A cache's
    rows (fastafm.training.cache_rows.CacheRows) are read into memory first: the same rows, so the same solution
    as the same rows in memory."""
    if isinstance(rows, CacheRows):
        rows = cache_holdout.in_memory(rows)
    problem = Problem(rows.csr, rows.targets.astype(np.float64), rows.weights, objective.core_loss, n_threads)
    n_features = problem.X.shape[1]
    theta = np.zeros(n_features + 1)
    theta[0] = initial_bias
    history: list = []
    best: tuple = (None, float("nan"))
    best_theta, since, previous = theta, 0, None
    for i, l2 in enumerate(L2_PATH):
        start = theta if previous is None else problem.lower(l2, theta, 2.0 * theta - previous)
        previous, theta = theta, problem.solve(l2, start)
        kept = theta.astype(np.float32).astype(np.float64)  # scored as the model that keeps it predicts

        def score(indptr, indices, values, kept=kept):
            part = scipy.sparse.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, n_features))
            return kept[0] + part @ kept[1:]

        record = {"l2": l2, **evaluate(objective, [evaluation], score, label_range)}
        history.append(record)
        value = record[f"eval_{metric}"]
        if better(metric, value, None if best[0] is None else best[1]):
            best, best_theta, since = (i, value), theta, 0
        else:
            since += 1
            if since >= PATIENCE:
                break
    params = {"w0": best_theta[:1].astype(np.float32), "w": best_theta[1:].astype(np.float32)}
    return LinearStage(params, history, L2_PATH[best[0]] if best[0] is not None else float("nan")), best
