// The exact linear stage's rows from Python (afm/sparse_linear.hpp): LinearRows checks a CSR matrix once and
// holds it, so that the hundreds of Hessian-vector products of a fit check only their vectors.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "afm/sparse_linear.hpp"
#include "arrays.hpp"
#include "bindings.hpp"

namespace afm::binding {

using namespace pybind11::literals;

namespace {

struct LinearRows {
    Viewed viewed;  // holds indptr, indices and values for the object's life
    afm::CsrView X;
    int64_t n_features = 0;
    int n_threads = 0;
};

}  // namespace

void bind_linear(py::module_& mod) {
    py::class_<LinearRows>(mod, "LinearRows",
                           "CSR rows (indptr int64, indices int32, values float32) checked once, for the exact "
                           "linear stage's Hessian-vector products.")
        .def(py::init([](const py::array& indptr, const py::array& indices, const py::array& values,
                         int64_t n_features, int n_threads) {
                 if (n_features < 0) throw py::value_error("n_features must be >= 0");
                 if (n_threads < 0) throw py::value_error("n_threads must be >= 0");
                 auto rows = std::make_unique<LinearRows>();
                 rows->X = csr_view(indptr, indices, values, n_features, rows->viewed);
                 rows->n_features = n_features;
                 rows->n_threads = n_threads;
                 return rows;
             }),
             "indptr"_a, "indices"_a, "values"_a, "n_features"_a, "n_threads"_a = 0)
        .def_property_readonly("n_rows", [](const LinearRows& r) { return r.X.n_rows; })
        .def_property_readonly("n_features", [](const LinearRows& r) { return r.n_features; })
        .def(
            "hessian_product",
            [](const LinearRows& r, const py::array& v, double v0, const py::array& c, const py::array& out) {
                const double* pv = checked<double>(v, "v", {r.n_features});
                const double* pc = checked<double>(c, "c", {r.X.n_rows});
                double* po = checked<double>(out, "out", {r.n_features}, true);
                Viewed viewed;
                viewed.add(v, "v", false);
                viewed.add(c, "c", false);
                viewed.add(out, "out", true);
                viewed.check_no_aliasing(&r.viewed);
                py::gil_scoped_release nogil;
                return afm::csr_hessian_product(r.X, r.n_features, pv, v0, pc, po, r.n_threads);
            },
            "v"_a, "v0"_a, "c"_a, "out"_a,
            "out[:] = X^T (c * (X v + v0)) (float64); returns sum(c * (X v + v0)), the bias entry.")
        .def(
            "conjugate_gradient",
            [](const LinearRows& r, const py::array& c, double l2, const py::array& inv_diag, const py::array& grad,
               double tol, int max_iter, const py::array& p) {
                const int64_t n = r.n_features + 1;
                const double* pc = checked<double>(c, "c", {r.X.n_rows});
                const double* pd = checked<double>(inv_diag, "inv_diag", {n});
                const double* pg = checked<double>(grad, "grad", {n});
                double* pp = checked<double>(p, "p", {n}, true);
                if (max_iter < 0) throw py::value_error("max_iter must be >= 0");
                if (!(l2 >= 0.0) || !std::isfinite(l2)) throw py::value_error("l2 must be finite and >= 0");
                Viewed viewed;
                viewed.add(c, "c", false);
                viewed.add(inv_diag, "inv_diag", false);
                viewed.add(grad, "grad", false);
                viewed.add(p, "p", true);
                viewed.check_no_aliasing(&r.viewed);
                py::gil_scoped_release nogil;
                return afm::conjugate_gradient(r.X, r.n_features, pc, l2, pd, pg, tol, max_iter, pp, r.n_threads);
            },
            "c"_a, "l2"_a, "inv_diag"_a, "grad"_a, "tol"_a, "max_iter"_a, "p"_a,
            "p[:] ~ -H^-1 grad by preconditioned conjugate gradients, H (v0, v) = (sum(u), X^T u + l2 v) with "
            "u = c * (X v + v0), the bias first; stops after max_iter products, at residual norm <= tol or at "
            "non-positive curvature. Returns the products taken.");
}

}  // namespace afm::binding
