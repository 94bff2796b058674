// The exact linear stage's costly product (python/fastafm/training/exact_linear.py, docs/accuracy.md "The linear
// fallback"): for CSR rows X, a vector v with a bias v0 and per-row curvatures c, the Hessian-vector product of
// a row-weighted loss, X^T (c * (X v + v0)), and its bias entry sum_i c_i (X v + v0)_i. Its conjugate gradient
// steps call it hundreds of times a fit; SciPy needs two passes (X, then X^T) on one thread, this one pass on
// n_threads: each row's dot, then its scatter.
#pragma once
#include <cstdint>

#include "afm/common.hpp"

namespace afm {

// out (n_cols) = X^T (c * (X v + v0)); returns sum_i c_i (X v + v0)_i. Accumulates in double. Threads split the
// rows, each scattering into its own buffer of n_cols doubles, summed in thread order (the same bits for the same
// thread count); fewer threads run where those buffers would pass kHessianBufferBytes.
double csr_hessian_product(const CsrView& X, int64_t n_cols, const double* v, double v0, const double* c,
                           double* out, int n_threads);

// A truncated Newton step of the exact linear stage: p with H p ~ -grad by conjugate gradients preconditioned with
// `inv_diag` (the inverse of H's diagonal), H the Hessian of theta = (w0, w) at per-row curvatures c plus l2 on w:
// H (v0, v) = (sum(u), X^T u + l2 v), u = c * (X v + v0). Stops after max_iter products, when the residual's
// norm is at most `tol`, or at a direction of non-positive curvature. Vectors of n_cols + 1 (the bias first);
// `p` is written whole. Returns the products taken. (The Python loop it replaces spent more time in NumPy's
// per-call overhead than in the products on logs of a few thousand rows.)
int conjugate_gradient(const CsrView& X, int64_t n_cols, const double* c, double l2, const double* inv_diag,
                       const double* grad, double tol, int max_iter, double* p, int n_threads);

// The most bytes of per-thread scatter buffers one product allocates (beyond `out`).
constexpr int64_t kHessianBufferBytes = int64_t(64) << 20;

// The threads csr_hessian_product runs for these sizes and the requested count (0: all cores).
int hessian_threads(int64_t n_rows, int64_t n_cols, int requested);

}  // namespace afm
