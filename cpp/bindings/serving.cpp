// The serving loop's predictor (fastafm.serving.Predictor wraps it): the model's arrays checked and viewed once,
// held for the predictor's life, work memory kept between calls; a call checks only its rows (dtype, shape,
// CSR structure, id bounds, finite values) and writes the float64 raw outputs, the offset added.
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "afm/common.hpp"
#include "afm/predict.hpp"
#include "arrays.hpp"
#include "bindings.hpp"

namespace afm::binding {

using namespace pybind11::literals;

namespace {

class ServingPredictor {
public:
    ServingPredictor(const py::dict& params, bool attention, int n_threads) : n_threads_(n_threads) {
        if (n_threads < 0) throw py::value_error("n_threads must be >= 0");
        afm::ModelView m = model_view(params, "params", false, viewed_);
        model_fields(params, m, "params", viewed_);
        check_field_pooling(m, attention, "params");
        predictor_ = std::make_unique<afm::Predictor>(m, attention);
    }

    int64_t n_features() const { return predictor_->model().n_features; }

    // The kept predictor's calls with rows for more than one thread: on the team, alone (waits for a running call).
    long long team_calls() {
        std::lock_guard<std::mutex> lock(mutex_);
        return predictor_->team_calls();
    }
    long long solo_calls() {
        std::lock_guard<std::mutex> lock(mutex_);
        return predictor_->solo_calls();
    }

    // Rows given as CSR arrays; indptr int32 or int64.
    py::array_t<double> csr(const py::array& indptr, const py::array& indices, const py::array& values, double offset,
                            const py::object& out) {
        if (indptr.ndim() != 1 || !(indptr.flags() & py::array::c_style))
            throw py::value_error("indptr must be a 1-D C-contiguous array");
        if (indptr.shape(0) < 2) throw py::value_error("indptr must have at least two elements (one row)");
        const int64_t n_rows = indptr.shape(0) - 1;
        const int64_t* ip;
        if (py::isinstance<py::array_t<int64_t>>(indptr)) {
            ip = static_cast<const int64_t*>(indptr.data());
        } else if (py::isinstance<py::array_t<int32_t>>(indptr)) {  // widened into this call's own buffer
            const auto* p32 = static_cast<const int32_t*>(indptr.data());
            std::vector<int64_t> ip64(static_cast<size_t>(n_rows + 1));
            for (int64_t r = 0; r <= n_rows; ++r) ip64[static_cast<size_t>(r)] = p32[r];
            return run(ip64.data(), n_rows, indices, values, offset, out);
        } else {
            throw py::type_error("indptr must have dtype int32 or int64, got " + std::string(py::str(indptr.dtype())));
        }
        return run(ip, n_rows, indices, values, offset, out);
    }

    // One row: its feature ids and values.
    py::array_t<double> row(const py::array& indices, const py::array& values, double offset, const py::object& out) {
        if (indices.ndim() != 1) throw py::value_error("indices must be 1-D (one row), got shape " + shape_str(indices));
        const int64_t ip[2] = {0, indices.shape(0)};  // this call's own (calls of other threads run meanwhile)
        return run(ip, 1, indices, values, offset, out);
    }

private:
    py::array_t<double> run(const int64_t* ip, int64_t n_rows, const py::array& indices, const py::array& values,
                            double offset, const py::object& out) {
        const afm::ModelView& m = predictor_->model();
        afm::CsrView X;
        X.n_rows = n_rows;
        X.indptr = ip;
        X.indices = checked<afm::feature_t>(indices, "indices", {-1});
        const int64_t nnz = indices.shape(0);
        X.values = checked<float>(values, "values", {nnz});
        if (ip[0] != 0) throw py::value_error("indptr[0] must be 0");
        for (int64_t r = 0; r < n_rows; ++r)
            if (ip[r + 1] < ip[r]) throw py::value_error("indptr must be non-decreasing (row " + std::to_string(r) + ")");
        if (ip[n_rows] != nnz)
            throw py::value_error("indptr[-1] = " + std::to_string(ip[n_rows]) + " but there are " +
                                  std::to_string(nnz) + " indices");
        for (int64_t j = 0; j < nnz; ++j) {
            const int64_t f = X.indices[j];
            if (f < 0 || f >= m.n_features)
                throw py::value_error("feature id " + std::to_string(f) + " is out of range [0, " +
                                      std::to_string(m.n_features) + "): the model has " +
                                      std::to_string(m.n_features) + " features");
            if (!std::isfinite(X.values[j]))
                throw py::value_error("values must be finite: value " + std::to_string(j) + " is " +
                                      std::to_string(X.values[j]));
        }
        py::array_t<double> result;
        if (out.is_none()) {
            result = py::array_t<double>(n_rows);
        } else {
            if (!py::isinstance<py::array_t<double>>(out))
                throw py::type_error("out must be a float64 array of shape (" + std::to_string(n_rows) + ",)");
            result = py::reinterpret_borrow<py::array_t<double>>(out);
            checked<double>(result, "out", {n_rows}, true);
        }
        double* o = result.mutable_data();
        {
            py::gil_scoped_release nogil;
            std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
            if (lock.owns_lock()) {  // the kept work memory
                if (y_.size() < static_cast<size_t>(n_rows)) y_.resize(static_cast<size_t>(n_rows));
                predictor_->run(X, y_.data(), n_threads_);
                finish(y_.data(), n_rows, offset, o);
            } else {  // another thread is using it: fresh memory (the same outputs)
                std::vector<float> y(static_cast<size_t>(n_rows));
                afm::predict(m, X, predictor_->attention(), y.data(), n_threads_);
                finish(y.data(), n_rows, offset, o);
            }
        }
        return result;
    }

    // float64 outputs as the estimators make them: float32 widened, the offset added only when it is not 0
    // (adding 0.0 would turn -0.0 into +0.0).
    static void finish(const float* y, int64_t n, double offset, double* o) {
        if (offset != 0.0)
            for (int64_t r = 0; r < n; ++r) o[r] = static_cast<double>(y[r]) + offset;
        else
            for (int64_t r = 0; r < n; ++r) o[r] = static_cast<double>(y[r]);
    }

    Viewed viewed_;  // the model's arrays, referenced for the predictor's life
    std::unique_ptr<afm::Predictor> predictor_;
    int n_threads_;
    std::mutex mutex_;
    std::vector<float> y_;  // the kept call's float32 outputs (under mutex_)
};

}  // namespace

void bind_serving(py::module_& mod) {
    py::class_<ServingPredictor>(mod, "Predictor",
                                 "A model's predictor for serving loops: its arrays checked and held once, work "
                                 "memory kept between calls. Use fastafm's estimator.predictor().")
        .def(py::init<const py::dict&, bool, int>(), "params"_a, "attention"_a, "n_threads"_a = 1)
        .def_property_readonly("n_features", &ServingPredictor::n_features)
        .def_property_readonly("team_calls", &ServingPredictor::team_calls,
                               "Calls with rows for more than one thread that ran on the thread team.")
        .def_property_readonly("solo_calls", &ServingPredictor::solo_calls,
                               "Calls with rows for more than one thread that ran on the calling thread alone "
                               "(the team's cores were judged busy elsewhere; the outputs are the same).")
        .def("csr", &ServingPredictor::csr, "indptr"_a, "indices"_a, "values"_a, "offset"_a = 0.0,
             "out"_a = py::none(),
             "Raw outputs (float64, plus offset when it is not 0) of CSR rows: indptr int32/int64, indices int32, "
             "values float32 (finite).")
        .def("row", &ServingPredictor::row, "indices"_a, "values"_a, "offset"_a = 0.0, "out"_a = py::none(),
             "The raw output of one row (float64 array of one element): indices int32, values float32.");
}

}  // namespace afm::binding
