"""The exact linear stage's C++ Hessian-vector product (_core.LinearRows.hessian_product, cpp/src/sparse_linear.cpp)
against a float64 NumPy reference, per element: X^T (c * (X v + v0)) and its bias entry sum(c * (X v + v0)), on
empty rows, rows of 1, 2 and many non-zeros, ids repeated within a row, one and several threads (the per-thread
buffers and their sum), bit-identical for a fixed thread count; and its checks of bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from fastafm import _core


def reference(X, v, v0, c):
    """float64: X^T (c * (X v + v0)), sum(c * (X v + v0)); X's values as the kernel reads them (float32)."""
    X = scipy.sparse.csr_matrix((X.data.astype(np.float32).astype(np.float64), X.indices, X.indptr), shape=X.shape)
    u = c * (X @ v + v0)
    return X.T @ u, u.sum()


def rows_of(rng, row_nnz, n_features, repeat=False):
    """CSR rows with the given non-zeros each (ids drawn with replacement when `repeat`: a row may name an id
    twice, as an unsummed libFM row can)."""
    indices = [rng.choice(n_features, k, replace=repeat or k > n_features) for k in row_nnz]
    indptr = np.concatenate([[0], np.cumsum(row_nnz)]).astype(np.int64)
    flat = np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32)
    values = rng.normal(size=flat.shape[0]).astype(np.float32)
    return scipy.sparse.csr_matrix((values, flat, indptr), shape=(len(row_nnz), n_features))


def linear_rows(X, n_threads):
    return _core.LinearRows(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32),
                            X.shape[1], n_threads)


SHAPES = {
    "edge rows": [0, 1, 2, 0, 7, 1, 2, 0],
    "many non-zeros": [300, 1, 0, 129],
    "one row": [5],
    "no rows": [],
    "many rows": [0, 1, 2, 3, 16, 17] * 3000,  # 18,000 rows: several threads (each takes >= 4,096 rows)
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("repeat", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_the_hessian_product_equals_the_float64_reference(shape, repeat, n_threads):
    rng = np.random.default_rng([len(SHAPES[shape]), repeat, n_threads])
    n_features = 37 if shape != "many non-zeros" else 333
    X = rows_of(rng, SHAPES[shape], n_features, repeat)
    v, c, v0 = rng.normal(size=n_features), rng.random(X.shape[0]), float(rng.normal())
    out = np.full(n_features, np.nan)  # every entry written
    bias = linear_rows(X, n_threads).hessian_product(v, v0, c, out)
    expected, expected_bias = reference(X, v, v0, c)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert bias == pytest.approx(expected_bias, rel=1e-12, abs=1e-12)


def test_the_same_thread_count_gives_the_same_bits():
    rng = np.random.default_rng(4)
    X = rows_of(rng, rng.integers(0, 30, 20_000), 500, repeat=True)
    v, c = rng.normal(size=500), rng.random(X.shape[0])
    for n_threads in (1, 2, 4):
        rows = linear_rows(X, n_threads)
        first, second = np.empty(500), np.empty(500)
        assert rows.hessian_product(v, 0.3, c, first) == rows.hessian_product(v, 0.3, c, second)
        np.testing.assert_array_equal(first, second)


def test_bad_input_is_refused_with_the_argument_named():
    rng = np.random.default_rng(5)
    X = rows_of(rng, [2, 3, 1], 10)
    rows = linear_rows(X, 1)
    v, c, out = np.zeros(10), np.ones(3), np.zeros(10)
    with pytest.raises(ValueError, match="v has shape"):
        rows.hessian_product(np.zeros(9), 0.0, c, out)
    with pytest.raises(ValueError, match="c has shape"):
        rows.hessian_product(v, 0.0, np.ones(4), out)
    with pytest.raises(TypeError, match="out must have dtype"):
        rows.hessian_product(v, 0.0, c, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="out must be writable"):
        frozen = np.zeros(10)
        frozen.setflags(write=False)
        rows.hessian_product(v, 0.0, c, frozen)
    with pytest.raises(ValueError, match="share memory|alias"):
        rows.hessian_product(v, 0.0, c, v)
    with pytest.raises(ValueError, match="out of range"):
        _core.LinearRows(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32), 5, 1)
    with pytest.raises(ValueError, match="n_threads"):
        _core.LinearRows(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32), 10, -1)
    with pytest.raises(TypeError, match="indptr must have dtype"):
        _core.LinearRows(X.indptr.astype(np.int32), X.indices.astype(np.int32), X.data.astype(np.float32), 10, 1)


def cg_reference(problem, grad, inv_diag, tol, max_iter):
    """Jacobi-preconditioned CG in NumPy float64 on the problem's hessp (the Newton step's first version)."""
    p, r = np.zeros_like(grad), -grad
    z = inv_diag * r
    d, rz, products = z.copy(), r @ z, 0
    while products < max_iter:
        hd = problem.hessp(d)
        products += 1
        curvature = d @ hd
        if curvature <= 0:
            break
        alpha = rz / curvature
        p, r = p + alpha * d, r - alpha * hd
        if np.sqrt(r @ r) <= tol:
            break
        z = inv_diag * r
        rz_next = r @ z
        d, rz = z + (rz_next / rz) * d, rz_next
    return p, products


@pytest.mark.parametrize("loss", ["logistic", "squared"])
@pytest.mark.parametrize("max_iter, relative_tol", [(0, 0.1), (1, 0.1), (3, 0.0), (25, 1e-3), (200, 1e-10)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_the_conjugate_gradient_step_equals_the_numpy_loop(loss, max_iter, relative_tol, n_threads):
    from fastafm.training import exact_linear

    rng = np.random.default_rng([max_iter, n_threads, loss == "logistic"])
    X = rows_of(rng, rng.integers(0, 9, 9000), 60, repeat=True)  # empty rows, repeats, 2 threads' worth of rows
    z = X @ rng.normal(size=60)
    t = np.where(rng.random(X.shape[0]) < 1 / (1 + np.exp(-z)), 1.0, -1.0) if loss == "logistic" else z
    problem = exact_linear.Problem(X, t, rng.random(X.shape[0]) + 0.5, loss, n_threads)
    problem.l2 = 1e-3
    _, grad = problem.value_and_grad(rng.normal(size=61) * 0.3)
    inv_diag = 1.0 / problem.diagonal()
    tol = relative_tol * np.sqrt(grad @ grad)
    p = np.full(61, np.nan)  # written whole
    products = problem.rows.conjugate_gradient(problem._curvature, problem.l2, inv_diag, grad, tol, max_iter, p)
    expected, expected_products = cg_reference(problem, grad, inv_diag, tol, max_iter)
    assert products == expected_products
    np.testing.assert_allclose(p, expected, rtol=1e-9, atol=1e-12)
    if max_iter == 200:  # solved: H p = -grad
        np.testing.assert_allclose(problem.hessp(p), -grad, atol=1e-8 * np.abs(grad).max())


def test_the_conjugate_gradient_checks_its_arguments():
    rng = np.random.default_rng(6)
    X = rows_of(rng, [2, 3, 1], 10)
    rows = linear_rows(X, 1)
    c, d, g, p = np.ones(3), np.ones(11), np.ones(11), np.zeros(11)
    with pytest.raises(ValueError, match="inv_diag has shape"):
        rows.conjugate_gradient(c, 0.1, np.ones(10), g, 1e-3, 5, p)
    with pytest.raises(ValueError, match="p has shape"):
        rows.conjugate_gradient(c, 0.1, d, g, 1e-3, 5, np.zeros(10))
    with pytest.raises(ValueError, match="max_iter"):
        rows.conjugate_gradient(c, 0.1, d, g, 1e-3, -1, p)
    with pytest.raises(ValueError, match="l2"):
        rows.conjugate_gradient(c, float("nan"), d, g, 1e-3, 5, p)
    with pytest.raises(ValueError, match="share memory|alias"):
        rows.conjugate_gradient(c, 0.1, d, p, 1e-3, 5, p)
